"""Learning-rate schedules."""
from __future__ import annotations

import math

from bioclip_lite_tf.keras import keras, tf


@keras.utils.register_keras_serializable(package="bioclip_lite")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup to `peak` over warmup_steps, then cosine decay to 0 at total_steps."""

  def __init__(self, peak: float, warmup_steps: int, total_steps: int):
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.total_steps = int(total_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
    progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
    cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
    return tf.where(step < self.warmup_steps, warm, cosine)

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps}
