"""Distillation losses, one module each, chosen by name from the registry `LOSSES`.

Every loss has the signature `fn(outputs, batch, bank, **params) -> float32 [B]` (per example;
the trainer averages over the global batch with tf.nn.compute_average_loss), where

  outputs.embedding       float32 [B, D]  L2-normalized student embedding
  outputs.species_logits  float32 [B, S] or None: logit_scale * embedding @ text.T; None in
                          training, where the head is computed in chunks (losses/common.py)
  batch['teacher_embedding']     float32 [B, D]  L2-normalized
  batch['topk_species_indices']  int32 [B, K]    the teacher's top-k species rows
  batch['topk_species_logits']   float32 [B, K]  the teacher's (scaled) logits for them
  batch['teacher_logsumexp']     float32 [B]     logsumexp of ALL the teacher's species logits
                                                 (teacher cache format 2; normalizer='full')
  batch['labels']                int32 [B, 7]    true rows, kingdom..species

The label bank is the student's zero-shot head: frozen teacher text embeddings, so taxa can be
added later without retraining. Its logit_scale is the teacher's (also frozen).

Teacher distribution: with normalizer='full' (default with teacher cache format 2) the exact
probabilities of its top K, exp(l_k - teacher_logsumexp), and soft_label adds a K+1-th "other"
bin holding the rest of the mass (temperature 1 only: the cached logsumexp is the normalizer at
T = 1). normalizer='topk' is the older target: the softmax over the K logits / T, the top-k
renormalized (at 454k species that drops the tail mass, and T > 1 flattens what remains).
"""
from bioclip_lite_tf.losses.common import (LabelBankTensors, StudentOutputs,  # noqa: F401
                                           bank_logsumexp, log1mexp, logits_at,
                                           rank_log_probs, rank_probs, species_logits,
                                           taxon_logsumexp, teacher_probs, teacher_topk_probs)
from bioclip_lite_tf.losses.contrastive import contrastive  # noqa: F401
from bioclip_lite_tf.losses.embedding import embedding_distillation  # noqa: F401
from bioclip_lite_tf.losses.hierarchical import hierarchical  # noqa: F401
from bioclip_lite_tf.losses.registry import LOSSES, total_loss  # noqa: F401
from bioclip_lite_tf.losses.soft_label import soft_label_distillation  # noqa: F401
