"""Turn a tfmot QAT student into the plain inference graph that the exporters convert.

Why this exists: the TF.js converter rejects tfmot's fake-quant ops, and the TFLite / TF.js
runtimes want an ordinary graph. The graph built here is the QAT model with

  * every `QuantizeWrapper` replaced by its inner layer, whose quantized weights are set to the
    fake-quantized values (so a per-tensor 8-bit weight lies exactly on its 256-level grid),
  * every `QuantizeLayer` replaced by an identity,
  * activation fake-quants dropped (activations stay float), and
  * every BatchNormalization replaced by a `ChannelAffine` layer `(x + offset) * scale`.

The last point is what keeps the export lossless. The TF.js converter folds an inference
BatchNorm into the preceding convolution (`fold_batch_norms`), and grappler's constant folding
pushes a `conv * scale` multiply into the kernel; either multiplies each output channel of an
on-grid kernel by a different factor, which takes it off its per-tensor grid, so uint8 storage
would no longer be exact. Writing the BN as an add followed by a multiply survives both passes
(verified: the kernels reach model.json unchanged and the add fuses into the conv as its bias),
and costs 2 * C float32 numbers per BN instead of 4 * C.

Numerically the result equals the QAT model evaluated with its activation fake-quants disabled
(the definition of "lossless" the exporters are tested against), up to float rounding.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from bioclip_lite_tf.keras import keras, tf

try:  # tfmot is needed to read a QAT model; importing it lazily keeps error messages clear.
  import tensorflow_model_optimization as tfmot
  from tensorflow_model_optimization.python.core.quantization.keras import (
      quantize_aware_activation, quantize_layer, quantize_wrapper)
except ImportError as e:  # pragma: no cover - the export extra always installs tfmot
  raise ImportError("bioclip_lite_tf.export.plain_graph needs tensorflow-model-optimization "
                    "(pip install -e .[export])") from e


@keras.saving.register_keras_serializable(package="bioclip_lite_export")
class ChannelAffine(keras.layers.Layer):
  """Per-channel `(x + offset) * scale` over the last axis: an inference BatchNorm.

  Input and output: float32 [..., C]. Weights: `offset` float32 [C], `scale` float32 [C].
  The add-then-multiply order is deliberate (see the module docstring): it keeps the TF.js
  converter and grappler from folding the scale into the preceding, on-grid kernel.
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")
    self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")
    super().build(input_shape)

  def call(self, inputs):
    return (inputs + self.offset) * self.scale

  def get_config(self):
    return super().get_config()


def batchnorm_as_affine(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                        variance: np.ndarray, epsilon: float):
  """Inference BN `gamma * (x - mean) / sqrt(var + eps) + beta` as `(x + offset) * scale`.

  All inputs float32 [C] (gamma may be None for `scale=False`, beta None for `center=False`).
  Returns (offset, scale), float32 [C]. A channel with scale 0 (gamma 0) outputs the constant
  beta; `(x + beta / s) * s` with a tiny s reproduces it to float rounding, so scale 0 is
  replaced by 1e-30 rather than dividing by zero.
  """
  mean = np.asarray(mean, np.float64)
  variance = np.asarray(variance, np.float64)
  gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, np.float64)
  beta = np.zeros_like(mean) if beta is None else np.asarray(beta, np.float64)
  scale = gamma / np.sqrt(variance + epsilon)
  scale = np.where(scale == 0.0, 1e-30, scale)
  shift = beta - mean * scale  # y = x * scale + shift
  offset = shift / scale
  return offset.astype(np.float32), scale.astype(np.float32)


@keras.saving.register_keras_serializable(package="bioclip_lite_export")
class ExportHardSwish(keras.layers.Layer):
  """x * min(max(x + 3, 0), 6) / 6 (float32, any shape), written so grappler cannot fuse it.

  Any form with Relu6 (the student's `x * (relu6(x + 3) * (1/6))`, or `x * relu6(x + 3) / 6`)
  matches grappler's oneDNN hard-swish pattern after a conv, and the TF.js converter then emits
  `_FusedConv2D` with a `_FusedHardSwish` activation, which the wasm backend rejects
  ("_fusedhardswish activation not yet supported for FusedConv2D"). With Maximum/Minimum the
  ops stay plain (AddV2, Maximum, Minimum, Mul), which every TF.js backend runs; the values
  equal relu6's (same clamp), up to float rounding of the final scaling.
  """

  def call(self, inputs):
    return inputs * tf.minimum(tf.maximum(inputs + 3.0, 0.0), 6.0) * (1.0 / 6.0)


@keras.saving.register_keras_serializable(package="bioclip_lite_export")
class ExportHardSigmoid(keras.layers.Layer):
  """min(max(x + 3, 0), 6) / 6 (float32, any shape); see ExportHardSwish."""

  def call(self, inputs):
    return tf.minimum(tf.maximum(inputs + 3.0, 0.0), 6.0) * (1.0 / 6.0)


# Weightless layers replaced in the export graph, by class name (student's and test models').
_EXPORT_REPLACEMENTS = {"HardSwish": ExportHardSwish, "HardSigmoid": ExportHardSigmoid}


@dataclasses.dataclass
class QuantizedWeight:
  """One weight tensor that the QAT model fake-quantizes.

  `per_tensor` tells whether its grid is one (scale, min) for the whole tensor, which is what
  TF.js uint8 storage can hold exactly; `levels` is the number of distinct values it takes.
  """
  layer: str
  weight: str
  shape: List[int]
  per_tensor: bool
  num_bits: Optional[int]
  levels: int


@dataclasses.dataclass
class PlainModel:
  """The plain inference model and what was done to build it."""
  model: keras.Model
  quantized_weights: List[QuantizedWeight]
  folded_batchnorms: List[str]


def _short_name(variable) -> str:
  return variable.name.split(":")[0].split("/")[-1]


def _plain_activation(inner_layer):
  act = getattr(inner_layer, "activation", None)
  if isinstance(act, quantize_aware_activation.NoOpActivation):
    return keras.activations.linear
  if isinstance(act, quantize_aware_activation.QuantizeAwareActivation):
    return act.activation
  return act


def _check_supported(model: keras.Model):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      raise ValueError(f"layer {layer.name!r} is a nested model; the exporter expects the flat "
                       "functional QAT model that tfmot.quantize_apply produces")
    if type(layer).__name__ == "PruneLowMagnitude":
      raise ValueError(f"layer {layer.name!r} is still wrapped for pruning; call "
                       "tfmot.sparsity.keras.strip_pruning before quantize-aware training")


def plain_inference_model(qat_model: keras.Model) -> PlainModel:
  """Builds the float graph with fake-quantized weights from a (tfmot) QAT model.

  qat_model: a functional tf_keras model, usually from `quantize_apply`; a model without any
  quantize wrappers also works (its weights are then copied unchanged).
  Returns a PlainModel whose `model` has the same inputs and outputs (shapes, dtypes) as
  qat_model; its outputs equal qat_model's with activation fake-quants disabled.
  """
  _check_supported(qat_model)
  source_of: Dict[int, keras.layers.Layer] = {}

  def clone_layer(layer):
    if isinstance(layer, quantize_wrapper.QuantizeWrapper):
      inner = layer.layer
      config = inner.get_config()
      if "activation" in config:
        config["activation"] = keras.activations.serialize(_plain_activation(inner))
      config["name"] = layer.name  # keep the wrapper's unique name: "quant_conv2d" etc.
      if isinstance(inner, keras.layers.BatchNormalization):
        new = ChannelAffine(name=layer.name)
      elif type(inner).__name__ in _EXPORT_REPLACEMENTS and not inner.weights:
        new = _EXPORT_REPLACEMENTS[type(inner).__name__](name=layer.name)
      else:
        new = inner.__class__.from_config(config)
    elif isinstance(layer, quantize_layer.QuantizeLayer):
      new = keras.layers.Activation("linear", name=layer.name)
    elif isinstance(layer, keras.layers.BatchNormalization):
      new = ChannelAffine(name=layer.name)
    elif type(layer).__name__ in _EXPORT_REPLACEMENTS and not layer.weights:
      new = _EXPORT_REPLACEMENTS[type(layer).__name__](name=layer.name)
    else:
      new = layer.__class__.from_config(layer.get_config())
    source_of[id(new)] = layer
    return new

  with tfmot.quantization.keras.quantize_scope():
    plain = keras.models.clone_model(qat_model, clone_function=clone_layer)

  quantized: List[QuantizedWeight] = []
  folded: List[str] = []
  for new in plain.layers:
    old = source_of.get(id(new))
    if old is None or not new.weights:
      continue
    if isinstance(old, quantize_wrapper.QuantizeWrapper):
      values = {}
      for variable in old.weights:
        values.setdefault(_short_name(variable), variable.numpy())
      for variable, quantizer, quantizer_vars in old._weight_vars:  # pylint: disable=protected-access
        fake_quantized = quantizer(variable, training=False, weights=quantizer_vars).numpy()
        values[_short_name(variable)] = fake_quantized
        min_var = quantizer_vars.get("min_var") if isinstance(quantizer_vars, dict) else None
        per_tensor = min_var is not None and len(min_var.shape) == 0
        quantized.append(QuantizedWeight(
            layer=old.name, weight=_short_name(variable), shape=list(variable.shape),
            per_tensor=per_tensor, num_bits=getattr(quantizer, "num_bits", None),
            levels=int(np.unique(fake_quantized).size)))
      bn_source = old.layer
    else:
      values = {_short_name(v): v.numpy() for v in old.weights}
      bn_source = old
    if isinstance(new, ChannelAffine):
      bn = bn_source
      offset, scale = batchnorm_as_affine(
          values.get("gamma"), values.get("beta"), values["moving_mean"],
          values["moving_variance"], bn.epsilon)
      new.set_weights([offset, scale])
      folded.append(old.name)
      continue
    try:
      new.set_weights([values[_short_name(v)] for v in new.weights])
    except KeyError as e:
      raise ValueError(f"layer {old.name!r}: no weight named {e} in the QAT model "
                       f"(has {sorted(values)})") from e
  return PlainModel(model=plain, quantized_weights=quantized, folded_batchnorms=folded)


def weights_only_reference(qat_model: keras.Model, images: np.ndarray,
                           batch_size: int = 32) -> np.ndarray:
  """Outputs of `plain_inference_model(qat_model)` (the parity reference), float32 [N, D]."""
  plain = plain_inference_model(qat_model).model
  return plain.predict(images, batch_size=batch_size, verbose=0)


def count_params(model: keras.Model) -> Dict[str, float]:
  """Parameter count and sparsity of the weights that matter for size.

  Counts the float weights of the plain model (kernels, biases, BN as affine). Sparsity is the
  share of exact zeros among kernel entries (what pruning produced).
  """
  total = 0
  kernel_total = 0
  kernel_zeros = 0
  for variable in model.weights:
    value = variable.numpy()
    total += value.size
    if "kernel" in _short_name(variable):
      kernel_total += value.size
      kernel_zeros += int(np.count_nonzero(value == 0))
  return {"params": int(total), "kernel_params": int(kernel_total),
          "sparsity": float(kernel_zeros / kernel_total) if kernel_total else 0.0}
