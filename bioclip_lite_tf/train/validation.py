"""Validation metrics: student vs teacher (and vs the true labels) top-1 agreement at every rank.

Rank-level predictions are argmaxes of species probabilities summed up the label bank's parent
links, for the student (softmax over all species) and for the teacher (softmax over its top-k
logits, zero elsewhere), exactly as the device package computes them.
"""
from __future__ import annotations

from typing import Dict, Iterable

import numpy as np

from bioclip_lite_tf import losses
from bioclip_lite_tf.keras import keras, tf

from formats.ranks import RANKS


def teacher_rank_predictions(topk_indices: np.ndarray, topk_logits: np.ndarray,
                             ancestors: np.ndarray, logsumexp=None) -> np.ndarray:
  """int [N, K], float [N, K], int [7, S] -> int64 [N, 7] teacher top-1 row per rank.

  logsumexp float [N] (teacher cache format 2): the full normalizer, p_k = exp(l_k - lse)
  (the K+1-th, "other", mass is spread over species outside the top-k and never beats a top-k
  taxon it is not known to belong to). Without it, the top-k softmax.
  """
  if logsumexp is not None:
    p = np.exp(np.minimum(topk_logits - np.asarray(logsumexp)[:, None], 0.0))
  else:
    z = topk_logits - topk_logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
  out = np.zeros((len(topk_indices), ancestors.shape[0]), np.int64)
  for r in range(ancestors.shape[0]):
    rows = ancestors[r][topk_indices]                       # [N, K]
    # Mass of the taxon of entry k = sum of p_j over entries j in the same taxon ([N, K, K]:
    # K is small). Ties go to the entry with the higher teacher logit (argmax takes the first).
    same = rows[:, :, None] == rows[:, None, :]
    mass = np.einsum("nkj,nj->nk", same, p)
    out[:, r] = rows[np.arange(len(rows)), np.argmax(mass, axis=1)]
  return out


def make_student_predictor(model: keras.Model, bank: losses.LabelBankTensors):
  """Returns a tf.function images float32 [B,R,R,3] -> (int32 [B,7] rank predictions, emb)."""
  @tf.function(reduce_retracing=True)  # the last, smaller batch must not retrace
  def predict(images):
    emb = model(images, training=False)
    probs = tf.nn.softmax(losses.species_logits(emb, bank), axis=-1)
    preds = []
    for r in range(len(RANKS)):
      if r == len(RANKS) - 1:
        rank_p = probs
      else:
        rank_p = losses.rank_probs(probs, bank.ancestors[r], bank.rank_sizes[r])
      preds.append(tf.argmax(rank_p, axis=-1, output_type=tf.int32))
    return tf.stack(preds, axis=1), emb
  return predict


def evaluate(model: keras.Model, dataset: Iterable, bank: losses.LabelBankTensors,
             ancestors: np.ndarray) -> Dict:
  """Runs the model over a finite dataset of batches (see data.make_dataset, training=False).

  Returns {n, embedding_cosine_mean, top1_agreement{rank}, student_vs_truth{rank},
  teacher_vs_truth{rank}, chance_species}.
  """
  predict = make_student_predictor(model, bank)
  student, teacher, truth, cosines = [], [], [], []
  for batch in dataset:
    preds, emb = predict(batch["image"])
    student.append(preds.numpy())
    teacher.append(teacher_rank_predictions(batch["topk_species_indices"].numpy(),
                                            batch["topk_species_logits"].numpy(), ancestors,
                                            batch["teacher_logsumexp"].numpy()
                                            if "teacher_logsumexp" in batch else None))
    truth.append(batch["labels"].numpy())
    cosines.append(np.sum(emb.numpy() * batch["teacher_embedding"].numpy(), axis=1))
  if not student:
    return {"n": 0}
  student, teacher, truth = (np.concatenate(a) for a in (student, teacher, truth))
  cos = np.concatenate(cosines)

  def per_rank(a, b):
    return {r: float(np.mean(a[:, i] == b[:, i])) for i, r in enumerate(RANKS)}

  # Chance: always answering the teacher's most frequent species.
  counts = np.bincount(teacher[:, -1])
  return {
      "n": int(len(student)),
      "embedding_cosine_mean": float(cos.mean()),
      "top1_agreement": per_rank(student, teacher),
      "student_vs_truth": per_rank(student, truth),
      "teacher_vs_truth": per_rank(teacher, truth),
      "majority_baseline_species": float(counts.max() / counts.sum()),
  }
