"""8-bit weight grids shared by QAT (train) and export, and the two tfmot quantization schemes.

The TF.js converter's `--quantize_uint8` stores each weight tensor as uint8 with one affine
(min, scale) per tensor, range nudged so that 0.0 is exactly representable (TFLite's nudging),
and dequantizes on load: w = q * scale + min (tensorflowjs/quantization.py). A conversion is
lossless only if every weight already lies on the grid TF.js will compute from that tensor.

Schemes (`SCHEMES`, chosen by `config.qat.scheme`):

- `tfjs_per_tensor` (default; what the TF.js export ships): weight-only fake quantization, one
  per-tensor asymmetric 8-bit grid (num_bits=8, symmetric=False, narrow_range=False) computed
  from the current weights at every call, training or not, so the QAT model's forward pass is
  exactly the model TF.js will run (TF.js computes in float32; activations are not quantized).
  Pruned zeros are preserved with a stored mask (tfmot's prune-preserving idea, with the mask
  kept as a variable so it survives save/load and checkpoints).
- `tflite_per_channel`: tfmot's Default8BitPrunePreserveQuantizeScheme unchanged (per-channel
  weights, quantized activations) for a full-integer TFLite model; custom layers carry their own
  QuantizeConfig.

Helpers: `per_tensor_grid(w)` -> (min, scale) exactly as TF.js computes it, and
`snap_to_tfjs_grid(w)` -> w on that grid, bit-exactly reproduced by TF.js's uint8 round trip.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Tuple

import numpy as np
import tensorflow_model_optimization as tfmot

from bioclip_lite_tf import layers as bl_layers
from bioclip_lite_tf.keras import keras, tf

_qk = tfmot.quantization.keras
_Quantizer = _qk.quantizers.Quantizer
_QuantizeConfig = _qk.QuantizeConfig

NUM_BITS = 8
_QMAX = 2 ** NUM_BITS - 1

# tfmot internals used by the schemes (public tfmot API has no hook for a custom scheme's parts).
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantize_layout_transform, quantize_registry)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E402,E501
    default_8bit_prune_preserve_quantize_scheme as _pp_scheme)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_configs as _d8_configs)


# ---------------------------------------------------------------------------------------------
# Grids (numpy, float64 arithmetic exactly as tensorflowjs/quantization.py does it).

def per_tensor_grid(weights: np.ndarray) -> Tuple[float, float]:
  """The (min, scale) TF.js's uint8 quantization computes for this tensor.

  Args:
    weights: float32 array, any shape.
  Returns:
    (min, scale) as Python floats (float64): value of level q is q * scale + min, q in 0..255.
    When the range covers 0 the zero point is nudged to an integer (0.0 exact); a one-signed
    range is not nudged. A constant tensor gets scale 1.0 and min = that constant (all levels
    0), as TF.js does.
  """
  w = np.asarray(weights, dtype=np.float32)
  lo = w.min().astype(np.float64)
  hi = w.max().astype(np.float64)
  if lo == hi:
    return float(lo), 1.0
  scale = (hi - lo) / _QMAX
  if lo <= 0 <= hi:
    zero_point = np.round((0 - lo) / scale)
    lo = -zero_point * scale
  return float(lo), float(scale)


def quantize_to_levels(weights: np.ndarray) -> Tuple[np.ndarray, float, float]:
  """uint8 levels, min, scale for `weights` as TF.js stores them."""
  w = np.asarray(weights, dtype=np.float32)
  lo, scale = per_tensor_grid(w)
  if w.min() == w.max():
    return np.zeros(w.shape, np.uint8), float(w.min()), 1.0
  hi = _QMAX * scale + lo
  levels = np.round((w.clip(lo, hi) - lo) / scale).astype(np.uint8)
  return levels, lo, scale


def tfjs_round_trip(weights: np.ndarray) -> np.ndarray:
  """What TF.js holds after `--quantize_uint8` conversion and load: float32, same shape."""
  levels, lo, scale = quantize_to_levels(weights)
  return (levels * scale + lo).astype(np.float32)


def snap_to_tfjs_grid(weights: np.ndarray, max_iterations: int = 8) -> np.ndarray:
  """Returns float32 weights that TF.js's uint8 round trip reproduces bit for bit.

  One round trip puts the values on the grid; the grid TF.js then recomputes from those values
  can differ from the first in the last float64 bit, so iterate to the fixed point (1-2 rounds).
  """
  current = np.asarray(weights, dtype=np.float32)
  for _ in range(max_iterations):
    nxt = tfjs_round_trip(current)
    if np.array_equal(nxt.view(np.int32), current.view(np.int32)):
      return current
    current = nxt
  raise ArithmeticError("snap_to_tfjs_grid did not reach a fixed point; report this tensor")


def fake_quant_per_tensor(weights: tf.Tensor) -> tf.Tensor:
  """Fake quantization onto the per-tensor uint8 grid TF.js will compute for `weights` itself.

  Float32 in/out, same shape. Its levels equal TF.js's levels for the same tensor; the values
  agree to within 1 float32 ulp (TF computes in float32, TF.js's converter in float64).
  Gradient: straight-through for the weights; none for the range (it follows the weights).

  A tensor whose range spans 0 (every real kernel, and every pruned one) goes through
  tf.quantization.fake_quant_with_min_max_vars: its TFLite-style nudging is TF.js's. TF.js does
  not nudge a one-signed range, whereas TF's op would force 0 into it, so such a tensor (and a
  constant one) takes a plain affine rounding with TF.js's rules instead.
  """
  lo_data = tf.stop_gradient(tf.reduce_min(weights))
  hi_data = tf.stop_gradient(tf.reduce_max(weights))
  spans_zero = tf.logical_and(lo_data <= 0.0, hi_data >= 0.0)
  # An all-zero tensor (a fully pruned kernel) has lo == hi == 0; fake_quant needs lo < hi.
  hi_fq = tf.where(hi_data > lo_data, hi_data, lo_data + 1e-6)
  nudged = tf.quantization.fake_quant_with_min_max_vars(
      weights, lo_data, hi_fq, num_bits=NUM_BITS, narrow_range=False)
  scale = (hi_data - lo_data) / _QMAX
  safe_scale = tf.where(scale > 0, scale, 1.0)
  levels = tf.round((weights - lo_data) / safe_scale)   # half to even, like numpy's np.round
  affine = tf.where(scale > 0, levels * safe_scale + lo_data, weights)
  affine = weights + tf.stop_gradient(affine - weights)
  return tf.where(spans_zero, nudged, affine)


# ---------------------------------------------------------------------------------------------
# tfjs_per_tensor: quantizer, config, registry, scheme.

@keras.utils.register_keras_serializable(package="bioclip_lite")
class PerTensorPrunePreserveQuantizer(_Quantizer):
  """Per-tensor asymmetric 8-bit weight quantizer that keeps pruned zeros at zero.

  build() records a sparsity mask (1 where the weight is non-zero when quantization starts) as
  a non-trainable variable; __call__ returns fake_quant_per_tensor(weights * mask). `min` and
  `max` variables record the last range (for inspection and converters).
  """

  def __init__(self, preserve_sparsity: bool = True):
    self.preserve_sparsity = bool(preserve_sparsity)

  def build(self, tensor_shape, name, layer):
    kernel = getattr(layer.layer, name)
    result = {}
    if self.preserve_sparsity:
      result["sparsity_mask"] = layer.add_weight(
          name + "_sparsity_mask", shape=tensor_shape, trainable=False,
          initializer=lambda shape, dtype=None: tf.cast(tf.not_equal(kernel, 0.0), tf.float32))
    result["min_var"] = layer.add_weight(name + "_min", shape=(), trainable=False,
                                         initializer=keras.initializers.Constant(-6.0))
    result["max_var"] = layer.add_weight(name + "_max", shape=(), trainable=False,
                                         initializer=keras.initializers.Constant(6.0))
    return result

  def __call__(self, inputs, training, weights, **kwargs):
    if self.preserve_sparsity:
      inputs = inputs * weights["sparsity_mask"]
    if training:
      weights["min_var"].assign(tf.minimum(tf.reduce_min(inputs), 0.0))
      weights["max_var"].assign(tf.maximum(tf.reduce_max(inputs), 0.0))
    return fake_quant_per_tensor(inputs)

  def get_config(self):
    return {"preserve_sparsity": self.preserve_sparsity}

  def __eq__(self, other):
    return (isinstance(other, PerTensorPrunePreserveQuantizer)
            and other.preserve_sparsity == self.preserve_sparsity)

  def __ne__(self, other):
    return not self.__eq__(other)


@keras.utils.register_keras_serializable(package="bioclip_lite")
class WeightOnlyPerTensorQuantizeConfig(_QuantizeConfig):
  """Quantizes the named weights of a layer with PerTensorPrunePreserveQuantizer; nothing else."""

  def __init__(self, weight_attrs, preserve_sparsity: bool = True):
    self.weight_attrs = list(weight_attrs)
    self.preserve_sparsity = bool(preserve_sparsity)
    self.weight_quantizer = PerTensorPrunePreserveQuantizer(preserve_sparsity)

  def get_weights_and_quantizers(self, layer):
    return [(getattr(layer, a), self.weight_quantizer) for a in self.weight_attrs]

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    for attr, w in zip(self.weight_attrs, quantize_weights):
      setattr(layer, attr, w)

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {"weight_attrs": self.weight_attrs, "preserve_sparsity": self.preserve_sparsity}


WEIGHT_ATTRS = {
    keras.layers.Conv2D: "kernel",
    keras.layers.DepthwiseConv2D: "depthwise_kernel",
    keras.layers.Dense: "kernel",
}


class _WeightOnlyRegistry(quantize_registry.QuantizeRegistry):
  """Weighted layers get WeightOnlyPerTensorQuantizeConfig; all other layers stay float."""

  def __init__(self, preserve_sparsity: bool = True):
    self.preserve_sparsity = preserve_sparsity

  def supports(self, layer):
    return type(layer) in WEIGHT_ATTRS

  def get_quantize_config(self, layer):
    return WeightOnlyPerTensorQuantizeConfig([WEIGHT_ATTRS[type(layer)]], self.preserve_sparsity)


class _IdentityLayout(quantize_layout_transform.QuantizeLayoutTransform):
  """No graph rewrites: no input quantization, no BN patterns (BN is folded before QAT)."""

  def apply(self, model, layer_quantize_map):
    return model, layer_quantize_map


class TfjsPerTensorPrunePreserveScheme(_pp_scheme.Default8BitPrunePreserveQuantizeScheme):
  """tfmot's prune-preserving scheme with per-tensor uint8-grid weights and float activations."""

  def __init__(self, preserve_sparsity: bool = True):
    self.preserve_sparsity = preserve_sparsity

  def get_layout_transformer(self):
    return _IdentityLayout()

  def get_quantize_registry(self):
    return _WeightOnlyRegistry(self.preserve_sparsity)


# ---------------------------------------------------------------------------------------------
# tflite_per_channel: custom layers need their own QuantizeConfig under the default scheme.

OutputQuantizeConfig = _d8_configs.Default8BitOutputQuantizeConfig
NoOpQuantizeConfig = _d8_configs.NoOpQuantizeConfig

# Layers the default 8-bit registry does not know, with what they need for full-integer TFLite.
_TFLITE_CUSTOM_CONFIGS = {
    bl_layers.HardSwish: OutputQuantizeConfig,
    bl_layers.HardSigmoid: OutputQuantizeConfig,
    bl_layers.PixelNormalization: OutputQuantizeConfig,
    keras.layers.Multiply: OutputQuantizeConfig,
    bl_layers.L2Normalize: NoOpQuantizeConfig,
}


def annotate(model: keras.Model, scheme: str) -> keras.Model:
  """quantize_annotate for `scheme`: returns an annotated clone (weights shared by value)."""
  if scheme == "tfjs_per_tensor":
    def fn(layer):
      if type(layer) in WEIGHT_ATTRS:
        return _qk.quantize_annotate_layer(layer)
      return layer
  elif scheme == "tflite_per_channel":
    def fn(layer):
      custom = _TFLITE_CUSTOM_CONFIGS.get(type(layer))
      if custom is not None:
        return _qk.quantize_annotate_layer(layer, quantize_config=custom())
      if isinstance(layer, keras.layers.InputLayer):
        return layer
      return _qk.quantize_annotate_layer(layer)
  else:
    raise ValueError(f"unknown quantization scheme {scheme!r}; known: {sorted(SCHEMES)}")
  with quantize_scope():
    return keras.models.clone_model(model, clone_function=fn)


def quantize(model: keras.Model, scheme: str = "tfjs_per_tensor",
             preserve_sparsity: bool = True) -> keras.Model:
  """Float (BN-folded, pruning stripped) core -> QAT model with QuantizeWrapperV2 layers."""
  annotated = annotate(model, scheme)
  annotated.set_weights(model.get_weights())
  with quantize_scope():
    return _qk.quantize_apply(annotated, SCHEMES[scheme](preserve_sparsity))


def _tflite_scheme(preserve_sparsity: bool = True):
  del preserve_sparsity  # the stock scheme always preserves sparsity where tfmot supports it
  return _pp_scheme.Default8BitPrunePreserveQuantizeScheme()


SCHEMES = {
    "tfjs_per_tensor": TfjsPerTensorPrunePreserveScheme,
    "tflite_per_channel": _tflite_scheme,
}

CUSTOM_OBJECTS: Dict[str, object] = {
    **bl_layers.CUSTOM_OBJECTS,
    "PerTensorPrunePreserveQuantizer": PerTensorPrunePreserveQuantizer,
    "WeightOnlyPerTensorQuantizeConfig": WeightOnlyPerTensorQuantizeConfig,
    "Default8BitOutputQuantizeConfig": OutputQuantizeConfig,
    "NoOpQuantizeConfig": NoOpQuantizeConfig,
}


@contextlib.contextmanager
def quantize_scope():
  """tfmot's quantize_scope plus this package's layers and quantize configs (for loading)."""
  with _qk.quantize_scope(CUSTOM_OBJECTS):
    yield


def quantized_weights(qat_model: keras.Model) -> Dict[str, np.ndarray]:
  """{layer name: the weight tensor the QAT forward pass uses} for every quantized weight.

  For the tfjs scheme these are fake_quant_per_tensor(kernel * mask): on the per-tensor grid.
  """
  out = {}
  for layer in qat_model.layers:
    if not isinstance(layer, _qk.QuantizeWrapperV2):
      continue
    for weight, quantizer, qvars in layer._weight_vars:  # pylint: disable=protected-access
      value = quantizer(weight, training=False, weights=qvars)
      out[layer.layer.name] = value.numpy()
  return out
