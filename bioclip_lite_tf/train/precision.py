"""Mixed precision for training (config `model.mixed_precision`).

'auto' is 'mixed_bfloat16' when a GPU is visible and 'float32' otherwise; 'mixed_bfloat16' and
'float32' force one. Under mixed_bfloat16 the layers compute in bfloat16 with float32 variables
(no loss scaling: bfloat16 has float32's exponent range); the student's output embedding layer
is float32 (model/mobilenet_v3.py) and the losses and the species head run in float32.

Saved phase models (`<phase>/model.h5`) are always float32: `float32_copy` rebuilds the model
from its config with every layer's dtype policy set to float32 (wrapped layers too: tfmot's
PruneLowMagnitude and QuantizeWrapperV2 hold their layer's config) and copies the weights, so
export and evaluation never see a bfloat16 op.
"""
from __future__ import annotations

import contextlib
import json

from bioclip_lite_tf.keras import keras, tf

POLICIES = ("auto", "float32", "mixed_bfloat16")


def resolve(name: str) -> str:
  if name not in POLICIES:
    raise ValueError(f"model.mixed_precision={name!r}: use one of {POLICIES}")
  if name == "auto":
    return "mixed_bfloat16" if tf.config.list_physical_devices("GPU") else "float32"
  return name


@contextlib.contextmanager
def policy_scope(name: str):
  """Builds layers under the global Keras dtype policy `name`, then restores the previous one."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _to_float32(obj):
  if isinstance(obj, dict):
    if obj.get("class_name") in ("Policy", "DTypePolicy") and "config" in obj:
      return "float32"
    return {k: ("float32" if k == "dtype" and isinstance(v, str) and v.startswith("mixed_")
                else _to_float32(v)) for k, v in obj.items()}
  if isinstance(obj, list):
    return [_to_float32(v) for v in obj]
  return obj


def is_mixed(model: keras.Model) -> bool:
  return any(getattr(l, "dtype_policy", None) is not None and
             l.dtype_policy.compute_dtype != l.dtype_policy.variable_dtype
             for l in _all_layers(model))


def _all_layers(model):
  for layer in model.layers:
    yield layer
    inner = getattr(layer, "layer", None)
    if inner is not None:
      yield inner


def float32_copy(model: keras.Model, custom_objects=None) -> keras.Model:
  """The same model (same weights) with every layer computing in float32."""
  if not is_mixed(model):
    return model
  config = _to_float32(json.loads(model.to_json()))
  with policy_scope("float32"), keras.utils.custom_object_scope(custom_objects or {}):
    copy = keras.models.model_from_json(json.dumps(config))
  weights = model.get_weights()
  if [w.shape for w in copy.get_weights()] != [w.shape for w in weights]:
    raise ValueError("float32_copy: the rebuilt model's weights differ in shape or order")
  copy.set_weights(weights)
  # Guard: the copy computes what the mixed model computes (up to bfloat16 rounding).
  shape = [2] + [int(d) for d in model.input_shape[1:]]
  x = tf.random.stateless_uniform(shape, seed=[0, 1], maxval=255.0)
  gap = float(tf.reduce_max(tf.abs(tf.cast(model(x, training=False), tf.float32)
                                   - copy(x, training=False))))
  if not gap < 0.1:
    raise ValueError(f"float32_copy: the float32 copy's outputs differ by {gap} from the model's")
  return copy
