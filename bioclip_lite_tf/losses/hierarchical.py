"""Hierarchical cross-entropy: the student's species distribution summed up the tree, at every
rank, against the teacher's and the true labels."""
from __future__ import annotations

from typing import Sequence

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import (NUM_RANKS, LabelBankTensors, StudentOutputs,
                                           rank_log_probs, teacher_topk_probs)


def hierarchical(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                 teacher_weight: float = 1.0, label_weight: float = 1.0,
                 rank_weights: Sequence[float] = ()) -> tf.Tensor:
  """Cross-entropy at every rank, of the student's species distribution summed up the tree. [B].

  For rank r, q_r = segment sums of softmax(species_logits) over the label bank's parent links.
  Teacher term: -sum_k p_k log q_r[ancestor_r(idx_k)] with p = softmax(top-k logits), which is
  the cross-entropy against the teacher's own rank distribution (its top-k mass summed the same
  way). Label term: -log q_r[true row at r]. Mean over ranks (weighted by rank_weights if set).
  """
  weights = list(rank_weights) or [1.0] * NUM_RANKS
  if len(weights) != NUM_RANKS:
    raise ValueError(f"hierarchical: rank_weights needs {NUM_RANKS} values, got {weights}")
  species_log_q = tf.nn.log_softmax(outputs.species_logits, axis=-1)
  teacher_p = teacher_topk_probs(batch)
  total = 0.0
  for r in range(NUM_RANKS):
    if r == NUM_RANKS - 1:
      log_q = species_log_q
    else:
      log_q = rank_log_probs(species_log_q, bank.ancestors[r], bank.rank_sizes[r])
    term = 0.0
    if teacher_weight:
      teacher_rows = tf.gather(bank.ancestors[r], batch["topk_species_indices"])   # [B, K]
      term += teacher_weight * -tf.reduce_sum(
          teacher_p * tf.gather(log_q, teacher_rows, batch_dims=1), axis=-1)
    if label_weight:
      term += label_weight * -tf.gather(log_q, batch["labels"][:, r:r + 1], batch_dims=1)[:, 0]
    total += weights[r] * term
  return total / float(sum(weights))
