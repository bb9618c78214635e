"""The student: MobileNetV3 Small/Large with a projection head into the teacher's embedding space.

Public contract (the export stage codes against it):

- `build_student(config, embed_dim)` -> the CORE model. Input `image`: float32 [N, R, R, 3], RGB
  0..255, already squashed to R x R. Inside: `clip_normalization` (one Mul + one Add; the
  layer keeps that name whatever it normalizes with, see `input_normalization`), the
  MobileNetV3 body with tf_keras.applications' layer names, `global_pool`, `Conv_2`, `projection`
  (Dense to D = embed_dim) and `embedding` (L2Normalize). Output float32 [N, D], unit rows.
- `with_preprocessing(core, resolution)` -> model taking uint8 [N, H, W, 3] photos of any size,
  squash-resized (`squash_resize`: bicubic, antialias, clip) in layer `squash_resize`.
- `STUDENTS` is the registry of architectures, chosen by `config.name`.

Layer names follow tf_keras.applications.MobileNetV3Small/Large (`Conv`, `Conv/BatchNorm`,
`expanded_conv_3/expand`, ..., `Conv_1`, `Conv_2`), so ImageNet weights load by name. Activations
are the weightless layers of bioclip_lite_tf.model.layers, which tfmot can prune around and quantize.

`fold_batch_norm=True` builds the same network with every BatchNormalization folded into the
preceding convolution (which then has a bias). The QAT phase trains that form, so the weights that
are quantized are the weights the exported graph runs: converters fold BN themselves, and folding
after quantization would move weights off their 8-bit grid.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

from bioclip_lite_tf.model import layers as bl_layers
from bioclip_lite_tf.keras import keras, tf

BN_EPSILON = 1e-3  # tf_keras.applications' MobileNetV3 value; the ImageNet statistics assume it.
# Moving-average momentum of BatchNorm statistics (config model.bn_momentum). From scratch the
# activations start ~1e-6 in scale while the moving variance starts at 1: at 0.99 the inference
# statistics need ~1000 steps to catch up, so short runs (demo, tests) use 0.9.
BN_MOMENTUM = 0.99


class ModelConfigError(ValueError):
  """A model configuration that cannot be built (unknown name, bad size, missing weights)."""


def make_divisible(value: float, divisor: int = 8) -> int:
  """Channel rounding of the MobileNet papers: nearest multiple of 8, never more than 10% down."""
  rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


@dataclasses.dataclass(frozen=True)
class Block:
  """One inverted-residual block: expansion ratio, output channels (before width multiplier),
  depthwise kernel, stride, squeeze-excite on/off, activation ('relu' | 'hard_swish')."""
  expansion: float
  filters: int
  kernel: int
  stride: int
  squeeze_excite: bool
  activation: str


@dataclasses.dataclass(frozen=True)
class Architecture:
  blocks: Tuple[Block, ...]
  last_point_channels: int  # Conv_2 width (not scaled by the width multiplier unless alpha > 1)
  keras_name: str           # "small" | "large", as in the ImageNet weight file names


def _b(e, f, k, s, se, act):
  return Block(e, f, k, s, se, act)


# The two stacks of tf_keras.applications.mobilenet_v3 (Howard et al. 2019, tables 1 and 2).
STUDENTS: Dict[str, Architecture] = {
    "mobilenet_v3_small": Architecture(
        blocks=(
            _b(1, 16, 3, 2, True, "relu"),
            _b(72 / 16, 24, 3, 2, False, "relu"),
            _b(88 / 24, 24, 3, 1, False, "relu"),
            _b(4, 40, 5, 2, True, "hard_swish"),
            _b(6, 40, 5, 1, True, "hard_swish"),
            _b(6, 40, 5, 1, True, "hard_swish"),
            _b(3, 48, 5, 1, True, "hard_swish"),
            _b(3, 48, 5, 1, True, "hard_swish"),
            _b(6, 96, 5, 2, True, "hard_swish"),
            _b(6, 96, 5, 1, True, "hard_swish"),
            _b(6, 96, 5, 1, True, "hard_swish"),
        ),
        last_point_channels=1024, keras_name="small"),
    "mobilenet_v3_large": Architecture(
        blocks=(
            _b(1, 16, 3, 1, False, "relu"),
            _b(4, 24, 3, 2, False, "relu"),
            _b(3, 24, 3, 1, False, "relu"),
            _b(3, 40, 5, 2, True, "relu"),
            _b(3, 40, 5, 1, True, "relu"),
            _b(3, 40, 5, 1, True, "relu"),
            _b(6, 80, 3, 2, False, "hard_swish"),
            _b(2.5, 80, 3, 1, False, "hard_swish"),
            _b(2.3, 80, 3, 1, False, "hard_swish"),
            _b(2.3, 80, 3, 1, False, "hard_swish"),
            _b(6, 112, 3, 1, True, "hard_swish"),
            _b(6, 112, 3, 1, True, "hard_swish"),
            _b(6, 160, 5, 2, True, "hard_swish"),
            _b(6, 160, 5, 1, True, "hard_swish"),
            _b(6, 160, 5, 1, True, "hard_swish"),
        ),
        last_point_channels=1280, keras_name="large"),
}

INPUT_NAME = "image"
NORMALIZATION_NAME = "clip_normalization"
PROJECTION_NAME = "projection"
EMBEDDING_NAME = "embedding"
PREPROCESSING_NAME = "squash_resize"


def input_normalization(config) -> Tuple[Tuple[float, ...], Tuple[float, ...], str]:
  """(mean, std, name) of the in-graph input normalization for a model config.

  The ImageNet weights expect x / 127.5 - 1 (tf_keras.applications' own preprocessing), so
  init='imagenet' normalizes to [-1, 1]; a student trained from scratch (init='none') uses
  BioCLIP's CLIP mean/std. Either way normalization is inside the model: the export takes RGB
  0..255 and the manifest records which one (export/exporter.py).
  """
  if config_value(config, "init", "imagenet") == "imagenet":
    return bl_layers.IMAGENET_MEAN, bl_layers.IMAGENET_STD, "imagenet [-1, 1] (x / 127.5 - 1)"
  return bl_layers.CLIP_MEAN, bl_layers.CLIP_STD, "clip"


def _activation(kind: str, name: str) -> keras.layers.Layer:
  if kind == "relu":
    return keras.layers.ReLU(name=name + "/relu")
  if kind == "hard_swish":
    return bl_layers.HardSwish(name=name + "/hard_swish")
  raise ModelConfigError(f"unknown activation {kind!r} in block definition (relu | hard_swish)")


class _Builder:
  """Emits conv (+ BN) layers under the applications' names, folded or not."""

  def __init__(self, fold_batch_norm: bool, bn_momentum: float = BN_MOMENTUM):
    self.fold = fold_batch_norm
    self.bn_momentum = float(bn_momentum)

  def conv(self, x, filters, kernel, name, strides=1, padding="same", use_bias=False):
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                            use_bias=use_bias or self.fold, name=name)(x)
    return x if self.fold else self._bn(x, name)

  def depthwise(self, x, kernel, strides, padding, name):
    x = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=padding,
                                     use_bias=self.fold, name=name)(x)
    return x if self.fold else self._bn(x, name)

  def _bn(self, x, name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=self.bn_momentum,
                                           name=name + "/BatchNorm")(x)


def _correct_pad(size: int, kernel: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
  # tf_keras.applications.imagenet_utils.correct_pad for a known (square) input size.
  adjust = (1 - size % 2, 1 - size % 2)
  correct = (kernel // 2, kernel // 2)
  return ((correct[0] - adjust[0], correct[0]), (correct[1] - adjust[1], correct[1]))


def _squeeze_excite(b: _Builder, x, filters: int, prefix: str):
  s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=prefix + "squeeze_excite/AvgPool")(x)
  s = keras.layers.Conv2D(make_divisible(filters * 0.25), 1, padding="same",
                          name=prefix + "squeeze_excite/Conv")(s)
  s = keras.layers.ReLU(name=prefix + "squeeze_excite/Relu")(s)
  s = keras.layers.Conv2D(filters, 1, padding="same", name=prefix + "squeeze_excite/Conv_1")(s)
  s = bl_layers.HardSigmoid(name=prefix + "squeeze_excite/hard_sigmoid")(s)
  return keras.layers.Multiply(name=prefix + "squeeze_excite/Mul")([x, s])


def _inverted_residual(b: _Builder, x, block: Block, filters: int, block_id: int):
  in_channels = x.shape[-1]
  shortcut = x
  prefix = "expanded_conv/" if block_id == 0 else f"expanded_conv_{block_id}/"
  expanded = make_divisible(in_channels * block.expansion)
  if block_id:
    x = b.conv(x, expanded, 1, prefix + "expand")
    x = _activation(block.activation, prefix + "expand")(x)
  if block.stride == 2:
    x = keras.layers.ZeroPadding2D(_correct_pad(x.shape[1], block.kernel),
                                   name=prefix + "depthwise/pad")(x)
  x = b.depthwise(x, block.kernel, block.stride, "same" if block.stride == 1 else "valid",
                  prefix + "depthwise")
  x = _activation(block.activation, prefix + "depthwise")(x)
  if block.squeeze_excite:
    x = _squeeze_excite(b, x, expanded, prefix)
  x = b.conv(x, filters, 1, prefix + "project")
  if block.stride == 1 and in_channels == filters:
    x = keras.layers.Add(name=prefix + "Add")([shortcut, x])
  return x


def build_student(config, embed_dim: int, fold_batch_norm: bool = False,
                  normalization=None) -> keras.Model:
  """Builds the core student (no weights loaded; see `initialize`).

  Args:
    config: the `model` section of a training config (name, alpha, resolution, dropout,
      bn_momentum; dict-like or attribute access).
    embed_dim: D, the teacher's embedding width (read from the dataset, never assumed).
    fold_batch_norm: build the BN-folded form used by QAT and export.
    normalization: (mean, std) of the input normalization; None: `input_normalization(config)`
      (ImageNet's [-1, 1] for init='imagenet', CLIP's otherwise).
  Returns:
    keras.Model `student_core`: float32 [N, R, R, 3] RGB 0..255 -> float32 [N, D] unit rows.
  """
  name = config_value(config, "name")
  if name not in STUDENTS:
    raise ModelConfigError(f"unknown student model {name!r}; known: {sorted(STUDENTS)}")
  arch = STUDENTS[name]
  alpha = float(config_value(config, "alpha"))
  resolution = int(config_value(config, "resolution"))
  dropout = float(config_value(config, "dropout", 0.0))
  if alpha <= 0:
    raise ModelConfigError(f"model.alpha must be > 0, got {alpha}")
  if resolution < 32:
    raise ModelConfigError(f"model.resolution must be >= 32 (5 stride-2 stages), got {resolution}")
  if int(embed_dim) <= 0:
    raise ModelConfigError(f"embed_dim must be positive, got {embed_dim}")

  b = _Builder(fold_batch_norm, float(config_value(config, "bn_momentum", BN_MOMENTUM)))
  inputs = keras.Input((resolution, resolution, 3), dtype=tf.float32, name=INPUT_NAME)
  mean, std = normalization or input_normalization(config)[:2]
  x = bl_layers.PixelNormalization(mean, std, name=NORMALIZATION_NAME)(inputs)
  x = b.conv(x, 16, 3, "Conv", strides=2)
  x = bl_layers.HardSwish(name="Conv/hard_swish")(x)
  for block_id, block in enumerate(arch.blocks):
    x = _inverted_residual(b, x, block, make_divisible(block.filters * alpha), block_id)
  x = b.conv(x, make_divisible(x.shape[-1] * 6), 1, "Conv_1")
  x = bl_layers.HardSwish(name="Conv_1/hard_swish")(x)
  x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
  last_point = arch.last_point_channels
  if alpha > 1.0:
    last_point = make_divisible(last_point * alpha)
  x = keras.layers.Conv2D(last_point, 1, padding="same", use_bias=True, name="Conv_2")(x)
  x = bl_layers.HardSwish(name="Conv_2/hard_swish")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  if dropout > 0:
    x = keras.layers.Dropout(dropout, name="dropout")(x)
  x = keras.layers.Dense(int(embed_dim), name=PROJECTION_NAME)(x)
  # float32 whatever the global dtype policy (mixed precision): the embedding the losses use.
  outputs = bl_layers.L2Normalize(name=EMBEDDING_NAME, dtype="float32")(x)
  return keras.Model(inputs, outputs, name="student_core")


def with_preprocessing(core: keras.Model, resolution: int) -> keras.Model:
  """Wraps a core student so it takes uint8 [N, H, W, 3] RGB photos of any size.

  Returns keras.Model `student`: uint8 [N, H, W, 3] -> float32 [N, D] (unit rows). The resize is
  `bioclip_lite_tf.model.layers.squash_resize`, the same function the training input pipeline uses.
  """
  photos = keras.Input((None, None, 3), dtype=tf.uint8, name="photo")
  x = bl_layers.SquashResize(resolution, name=PREPROCESSING_NAME)(photos)
  return keras.Model(photos, core(x), name="student")


def config_value(config, key, default=None):
  """config[key] for dicts, config.key for ConfigDicts and other objects."""
  if isinstance(config, dict):
    return config.get(key, default)
  return getattr(config, key, default)
