"""Embedding distillation: cosine distance to the teacher's image embedding."""
from __future__ import annotations

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import LabelBankTensors, StudentOutputs


def embedding_distillation(outputs: StudentOutputs, batch, bank: LabelBankTensors) -> tf.Tensor:
  """1 - cos(student, teacher) per example; both embeddings are unit vectors. [B]."""
  del bank
  teacher = tf.math.l2_normalize(batch["teacher_embedding"], axis=-1)
  return 1.0 - tf.reduce_sum(outputs.embedding * teacher, axis=-1)
