"""Magnitude pruning with tfmot: which layers, the schedule, wrapping and stripping, sparsity."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.optimize import quantization


def prunable_layer_names(model: keras.Model) -> List[str]:
  """Conv2D and Dense layers: the ones the pruning phase sparsifies (tfmot cannot prune depthwise)."""
  return [l.name for l in model.layers
          if type(l) in (keras.layers.Conv2D, keras.layers.Dense)]


def pruning_schedule(config, steps: int):
  """PolynomialDecay 0 -> target over end_fraction of the phase.

  tfmot updates masks only at multiples of `frequency`, so end_step is rounded down to one:
  otherwise the last update falls short of end_step and the target is never reached.
  """
  frequency = max(1, int(config.prune.frequency))
  end = max(1, int(steps * float(config.prune.end_fraction)))
  frequency = min(frequency, end)
  end = end // frequency * frequency
  return tfmot.sparsity.keras.PolynomialDecay(
      initial_sparsity=0.0, final_sparsity=float(config.prune.target_sparsity),
      begin_step=0, end_step=end, frequency=frequency)


def pruned_layer_names(model: keras.Model, min_params: int) -> List[str]:
  """Conv2D / Dense layers whose kernel has at least min_params weights."""
  names = []
  for name in prunable_layer_names(model):
    kernel = model.get_layer(name).kernel
    if int(np.prod(kernel.shape)) >= min_params:
      names.append(name)
  return names


def make_prunable(model: keras.Model, config, steps: int) -> keras.Model:
  """Wraps the chosen layers in tfmot PruneLowMagnitude (clone_model: tfmot refuses some layers
  when asked to prune a whole model)."""
  chosen = set(pruned_layer_names(model, int(config.prune.min_params)))
  schedule = pruning_schedule(config, steps)

  def wrap(layer):
    if layer.name in chosen:
      return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
    return layer.__class__.from_config(layer.get_config())

  with quantization.quantize_scope():
    clone = keras.models.clone_model(model, clone_function=wrap)
  # Wrapped layers own the same variables as the inner layers: copy weights by layer name.
  for layer in clone.layers:
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    src = model.get_layer(inner.name)
    if src.weights:
      inner.set_weights(src.get_weights())
  return clone


def prune_wrappers(model: keras.Model) -> List[PruneLowMagnitude]:
  return [l for l in model.layers if isinstance(l, PruneLowMagnitude)]


def strip_and_apply_masks(model: keras.Model) -> keras.Model:
  """Multiplies each pruned kernel by its final mask, then strip_pruning -> plain core."""
  for layer in prune_wrappers(model):
    for weight, mask, _ in layer.pruning_vars:
      weight.assign(weight * tf.cast(mask, weight.dtype))
  return tfmot.sparsity.keras.strip_pruning(model)


def sparsity_of(kernels: Dict[str, np.ndarray]) -> Dict:
  """Zeros over the given kernels: {zeros, params, sparsity, min_layer_sparsity, layers}."""
  zeros = sum(int(np.sum(k == 0)) for k in kernels.values())
  total = sum(int(k.size) for k in kernels.values())
  per_layer = [float(np.mean(k == 0)) for k in kernels.values()]
  return {"zeros": zeros, "params": total, "sparsity": zeros / max(total, 1),
          "min_layer_sparsity": min(per_layer) if per_layer else 0.0, "layers": len(kernels)}
