"""Validation metrics at the end of each phase, computed by the shared implementation
(bioclip_lite_tf.metrics.MetricsAccumulator, the one evaluate uses): student vs teacher and vs
the true labels at every rank, hierarchical metrics and the student-teacher embedding cosine.

Training scores against the dataset's float32 label bank; evaluate scores against the export's
device label bank (int8/int4/float16 rows) when it ships the same species. That is the only
difference between the two on the same model and photos (bioclip_lite_tf/README.md,
"Training vs evaluate").
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from bioclip_lite_tf import losses
from bioclip_lite_tf import metrics as shared_metrics
from bioclip_lite_tf.keras import keras, tf


def make_embedder(model: keras.Model):
  """A tf.function images float32 [B,R,R,3] -> embeddings [B, D] (no retrace on a last batch)."""
  @tf.function(reduce_retracing=True)
  def embed(images):
    return model(images, training=False)
  return embed


def evaluate(model: keras.Model, dataset: Iterable, bank: losses.LabelBankTensors,
             ancestors: np.ndarray) -> Dict:
  """Runs the model over a finite dataset of batches (see data.make_dataset, training=False).

  Returns {n, embedding_cosine_mean, embedding_cosine_p5, top1_agreement{rank},
  top5_agreement{rank}, student_vs_truth{rank}, teacher_vs_truth{rank},
  majority_baseline_species, hierarchy{mistake_severity, hdist_at_1, hdist_at_5, precision,
  recall}}.
  """
  embed = make_embedder(model)
  text = np.asarray(bank.species_text_embeddings, np.float32)
  scale = float(bank.logit_scale)
  acc = shared_metrics.MetricsAccumulator(
      shared_metrics.RankAggregator.from_matrix(ancestors, bank.rank_sizes), scale)
  for batch in dataset:
    emb = embed(batch["image"]).numpy()
    acc.update(scale * (emb @ text.T), batch["labels"].numpy(),
               batch["topk_species_indices"].numpy(), batch["topk_species_logits"].numpy(),
               emb, batch["teacher_embedding"].numpy(),
               batch["teacher_logsumexp"].numpy() if "teacher_logsumexp" in batch else None)
  if not acc.n:
    return {"n": 0}
  res = acc.result()
  a, h = res["accuracy"], res["hierarchy"]
  return {
      "n": acc.n,
      "embedding_cosine_mean": res["embedding_cosine"]["mean"],
      "embedding_cosine_p5": res["embedding_cosine"]["p5"],
      "top1_agreement": a["student_vs_teacher"]["top1"],
      "top5_agreement": a["student_vs_teacher"]["top5"],
      "student_vs_truth": a["student_vs_truth"]["top1"],
      "teacher_vs_truth": a["teacher_vs_truth"]["top1"],
      "majority_baseline_species": a["majority_baseline_species"],
      "hierarchy": {k: h[k] for k in ("mistake_severity", "hdist_at_1", "hdist_at_5",
                                      "precision", "recall")},
  }
