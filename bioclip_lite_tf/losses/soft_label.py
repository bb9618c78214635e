"""Soft-label distillation: KL from the teacher's top-k species distribution at temperature T."""
from __future__ import annotations

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import LabelBankTensors, StudentOutputs


def soft_label_distillation(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                            temperature: float = 2.0) -> tf.Tensor:
  """T^2 * KL(teacher || student) over species at temperature T. [B].

  Teacher: softmax of its top-k logits / T (zero elsewhere). Student: softmax over all S
  species of its logits / T. KL = sum_k p_k (log p_k - log q_{idx_k}); the T^2 factor keeps
  gradient magnitudes comparable across temperatures (Hinton et al. 2015).
  """
  del bank
  t = float(temperature)
  teacher_log_p = tf.nn.log_softmax(batch["topk_species_logits"] / t, axis=-1)
  student_log_q = tf.nn.log_softmax(outputs.species_logits / t, axis=-1)
  student_at_topk = tf.gather(student_log_q, batch["topk_species_indices"], batch_dims=1)
  kl = tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_at_topk), axis=-1)
  return (t * t) * kl
