"""The two tfmot quantization schemes of QAT, and loading/reading quantized models.

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

The grid itself (numpy and TF) is in optimize/tfjs_grid.py.
"""
from __future__ import annotations

import contextlib
from typing import Dict

import numpy as np
import tensorflow_model_optimization as tfmot

from bioclip_lite_tf.model import layers as bl_layers
from bioclip_lite_tf.optimize.tfjs_grid import fake_quant_per_tensor
from bioclip_lite_tf.keras import keras, tf

_qk = tfmot.quantization.keras
_Quantizer = _qk.quantizers.Quantizer
_QuantizeConfig = _qk.QuantizeConfig

# tfmot internals used by the schemes (public tfmot API has no hook for a custom scheme's parts).
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantize_layout_transform, quantize_registry)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E402,E501
    default_8bit_prune_preserve_quantize_scheme as _pp_scheme)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_configs as _d8_configs)


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
    # Mixed precision: the kernel is an AutoCastVariable read as bfloat16. Quantize its float32
    # master value (the grid TF.js will compute) and hand the layer its compute dtype.
    compute_dtype = inputs.dtype
    inputs = tf.cast(getattr(inputs, "_variable", inputs), tf.float32)
    if self.preserve_sparsity:
      inputs = inputs * tf.cast(weights["sparsity_mask"], tf.float32)
    if training:
      weights["min_var"].assign(tf.minimum(tf.reduce_min(inputs), 0.0))
      weights["max_var"].assign(tf.maximum(tf.reduce_max(inputs), 0.0))
    return tf.cast(fake_quant_per_tensor(inputs), compute_dtype)

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
