"""Small custom layers of the student, each serializable and known to tfmot.

Why custom layers at all: tf_keras.applications builds hard-sigmoid as `x + 3.0` in a
TFOpLambda, which tfmot's quantize_model cannot handle, and its `Rescaling` layer is refused by
prune_low_magnitude (both verified with tfmot 0.8.1, see bioclip_lite_tf/README.md). These
layers are plain Layer subclasses with no weights; their quantization behaviour lives in
bioclip_lite_tf/optimize/quantization.py.

Every layer forwards **kwargs, keeps one attribute per constructor argument and has get_config,
so a saved model reloads under `bioclip_lite_tf.optimize.quantization.quantize_scope()` (or with
`CUSTOM_OBJECTS` as custom_objects).
"""
from __future__ import annotations

from typing import Sequence

from bioclip_lite_tf.keras import keras, tf

# BioCLIP's (OpenAI CLIP's) image normalization: applied to RGB in [0, 1].
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# What tf_keras.applications' MobileNetV3 ImageNet weights were trained on: x / 127.5 - 1 on RGB
# 0..255 (its Rescaling(1/127.5, offset=-1) preprocessing), i.e. mean 0.5, std 0.5 on [0, 1].
IMAGENET_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STD = (0.5, 0.5, 0.5)

_PACKAGE = "bioclip_lite"


def squash_resize(images: tf.Tensor, resolution: int) -> tf.Tensor:
  """Resizes whole photos to resolution x resolution, ignoring aspect ratio (the teacher's squash).

  Bicubic with antialiasing (like PIL's bicubic, which BioCLIP's preprocessing uses, when
  shrinking), then clipped to [0, 255] because bicubic overshoots and the teacher saw uint8.

  Args:
    images: uint8 or float [N, H, W, 3] (or [H, W, 3]) RGB, values 0..255, any H and W.
    resolution: output side length R.
  Returns:
    float32 [N, R, R, 3] (or [R, R, 3]) RGB, values 0..255.
  """
  images = tf.cast(images, tf.float32)
  resized = tf.image.resize(images, (resolution, resolution), method="bicubic", antialias=True)
  return tf.clip_by_value(resized, 0.0, 255.0)


@keras.utils.register_keras_serializable(package=_PACKAGE)
class SquashResize(keras.layers.Layer):
  """uint8 [N, H, W, 3] RGB photos of any size -> float32 [N, R, R, 3] 0..255 (see squash_resize)."""

  def __init__(self, resolution: int, **kwargs):
    super().__init__(**kwargs)
    self.resolution = int(resolution)

  def call(self, images):
    return squash_resize(images, self.resolution)

  def get_config(self):
    return {**super().get_config(), "resolution": self.resolution}


@keras.utils.register_keras_serializable(package=_PACKAGE)
class PixelNormalization(keras.layers.Layer):
  """RGB 0..255 -> (x / 255 - mean) / std, as one multiply and one add per channel.

  Input and output float32 [..., 3]. Written as x * (1 / (255 std)) + (-mean / std) so the
  exported graph holds exactly one Mul and one Add with constant operands.
  """

  def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
               **kwargs):
    super().__init__(**kwargs)
    self.mean = [float(m) for m in mean]
    self.std = [float(s) for s in std]

  def call(self, images):
    scale = tf.constant([1.0 / (255.0 * s) for s in self.std], dtype=images.dtype)
    offset = tf.constant([-m / s for m, s in zip(self.mean, self.std)], dtype=images.dtype)
    return images * scale + offset

  def get_config(self):
    return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.utils.register_keras_serializable(package=_PACKAGE)
class HardSigmoid(keras.layers.Layer):
  """relu6(x + 3) / 6, MobileNetV3's hard-sigmoid. Any shape, float32 in and out."""

  def call(self, x):
    return tf.nn.relu6(x + 3.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package=_PACKAGE)
class HardSwish(keras.layers.Layer):
  """x * relu6(x + 3) / 6, MobileNetV3's hard-swish. Any shape, float32 in and out."""

  def call(self, x):
    return x * (tf.nn.relu6(x + 3.0) * (1.0 / 6.0))


@keras.utils.register_keras_serializable(package=_PACKAGE)
class L2Normalize(keras.layers.Layer):
  """float32 [N, D] -> [N, D] with unit L2 norm per row (the embedding space of the teacher)."""

  def __init__(self, epsilon: float = 1e-12, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def call(self, x):
    return tf.math.l2_normalize(x, axis=-1, epsilon=self.epsilon)

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon}


CUSTOM_OBJECTS = {
    "SquashResize": SquashResize,
    "PixelNormalization": PixelNormalization,
    "HardSigmoid": HardSigmoid,
    "HardSwish": HardSwish,
    "L2Normalize": L2Normalize,
}
