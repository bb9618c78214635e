"""Soft-label distillation: KL from the teacher's species distribution to the student's."""
from __future__ import annotations

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import (LabelBankTensors, StudentOutputs, bank_logsumexp,
                                           log1mexp, logits_at, teacher_probs)


def soft_label_distillation(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                            temperature: float = 2.0, normalizer: str = "topk") -> tf.Tensor:
  """T^2 * KL(teacher || student) over species at temperature T. [B].

  normalizer 'full' (teacher cache format 2, T = 1): K + 1 bins. Teacher
  p_k = exp(l_k - teacher_logsumexp) for its top K, p_other = 1 - sum_k p_k (the teacher's
  mass outside its top K, known exactly from the cached normalizer). Student q over the whole
  bank (chunked logsumexp), q_other = 1 - sum_k q_{idx_k}. KL = sum over the K + 1 bins of
  p log(p / q); it is the exact KL between the two full distributions coarsened to those bins.

  normalizer 'topk': teacher = softmax of its top-k logits / T (zero elsewhere, the top-k
  renormalized); student = softmax over all S species of its logits / T;
  KL = sum_k p_k (log p_k - log q_{idx_k}). The T^2 factor keeps gradient magnitudes comparable
  across temperatures (Hinton et al. 2015).
  """
  t = float(temperature)
  p = teacher_probs(batch, t, normalizer)                                    # [B, K]
  student_at_topk = (logits_at(outputs, bank, batch["topk_species_indices"]) / t
                     - bank_logsumexp(outputs, bank, t)[:, None])            # log q_k
  kl = tf.reduce_sum(tf.math.xlogy(p, p) - p * student_at_topk, axis=-1)
  if normalizer == "full":
    p_other = tf.clip_by_value(1.0 - tf.reduce_sum(p, axis=-1), 0.0, 1.0)
    log_q_other = log1mexp(tf.reduce_logsumexp(student_at_topk, axis=-1))
    kl += tf.math.xlogy(p_other, p_other) - p_other * log_q_other
  return (t * t) * kl
