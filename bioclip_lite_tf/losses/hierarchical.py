"""Hierarchical cross-entropy: the student's species distribution summed up the tree, at every
rank, against the teacher's and the true labels."""
from __future__ import annotations

from typing import Sequence

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import (NUM_RANKS, LabelBankTensors, StudentOutputs,
                                           bank_logsumexp, logits_at, taxon_logsumexp,
                                           teacher_probs)


def hierarchical(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                 teacher_weight: float = 1.0, label_weight: float = 1.0,
                 rank_weights: Sequence[float] = (), normalizer: str = "topk") -> tf.Tensor:
  """Cross-entropy at every rank, of the student's species distribution summed up the tree. [B].

  For rank r, q_r[t] = sum of softmax(species logits) over the species of taxon t. Teacher term:
  -sum_k p_k log q_r[ancestor_r(idx_k)], i.e. the cross-entropy against the teacher's top-k mass
  summed to rank r; p is the top-k softmax (normalizer 'topk') or the exact probabilities
  exp(l_k - teacher_logsumexp) (normalizer 'full': the teacher's mass outside its top K is left
  out of this term, not spread over the K). Label term: -log q_r[true row at r]. Mean over
  ranks (weighted by rank_weights if set).

  Memory: the per-taxon sums of every rank come from one fused chunked pass over the species
  (common.taxon_logsumexp / _head_tables): O(B x chunk + B x sum of the rank sizes above
  species), never [B x S] per rank.
  """
  weights = list(rank_weights) or [1.0] * NUM_RANKS
  if len(weights) != NUM_RANKS:
    raise ValueError(f"hierarchical: rank_weights needs {NUM_RANKS} values, got {weights}")
  topk = tf.convert_to_tensor(batch["topk_species_indices"], tf.int32)
  labels = tf.convert_to_tensor(batch["labels"], tf.int32)
  teacher_p = teacher_probs(batch, 1.0, normalizer)
  lse = bank_logsumexp(outputs, bank)[:, None]
  k = int(topk.shape[-1])
  total = 0.0
  for r in range(NUM_RANKS):
    if not weights[r]:
      continue
    if r == NUM_RANKS - 1:
      log_q = logits_at(outputs, bank, tf.concat([topk, labels[:, r:r + 1]], axis=1)) - lse
    else:
      taxa = tf.concat([tf.gather(bank.ancestors[r], topk), labels[:, r:r + 1]], axis=1)
      log_q = taxon_logsumexp(outputs, bank, r, taxa) - lse                  # [B, K + 1]
    term = 0.0
    if teacher_weight:
      term += teacher_weight * -tf.reduce_sum(teacher_p * log_q[:, :k], axis=-1)
    if label_weight:
      term += label_weight * -log_q[:, k]
    total += weights[r] * term
  return total / float(sum(weights))
