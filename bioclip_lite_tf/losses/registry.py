"""The loss registry: losses by name, and the weighted total the trainer minimises."""
from __future__ import annotations

from typing import Callable, Dict

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.losses.common import LabelBankTensors, StudentOutputs
from bioclip_lite_tf.losses.contrastive import contrastive
from bioclip_lite_tf.losses.embedding import embedding_distillation
from bioclip_lite_tf.losses.hierarchical import hierarchical
from bioclip_lite_tf.losses.soft_label import soft_label_distillation

LOSSES: Dict[str, Callable[..., tf.Tensor]] = {
    "embedding": embedding_distillation,
    "soft_label": soft_label_distillation,
    "hierarchical": hierarchical,
    "contrastive": contrastive,
}


def total_loss(outputs: StudentOutputs, batch, bank: LabelBankTensors, loss_config,
               global_batch_size: int) -> Dict[str, tf.Tensor]:
  """Weighted sum of the configured losses, each averaged over the global batch.

  loss_config: {name: {weight, **params}}; weight 0 skips a loss. Returns {'total': scalar,
  name: scalar (unweighted, averaged)} for logging.
  """
  out = {}
  total = 0.0
  for name, params in loss_config.items():
    if name not in LOSSES:
      raise ValueError(f"unknown loss {name!r} in config.losses; known: {sorted(LOSSES)}")
    params = dict(params)
    weight = float(params.pop("weight", 1.0))
    if weight == 0:
      continue
    per_example = LOSSES[name](outputs, batch, bank, **params)
    value = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
    out[name] = value
    total += weight * value
  out["total"] = total
  return out
