"""BatchNorm folding: the BN-free twin of a trained core student, with equal outputs.

QAT trains the folded form, so the weights that are quantized are the weights the exported graph
runs (converters fold BN themselves, and folding after quantization would move weights off their
8-bit grid).
"""
from __future__ import annotations

import numpy as np

from bioclip_lite_tf.keras import keras
from bioclip_lite_tf.model.mobilenet_v3 import NORMALIZATION_NAME, build_student



def fold_batch_norms(model: keras.Model, config, embed_dim: int) -> keras.Model:
  """Returns the BN-folded twin of a core student with equal outputs (inference mode).

  Conv kernel [k, k, Cin, Cout] is scaled per Cout (depthwise [k, k, C, 1] per C) by
  gamma / sqrt(var + eps); the bias becomes beta - mean * gamma / sqrt(var + eps) (+ the scaled
  old bias). Zeros stay zeros, so a pruned model keeps its sparsity.
  """
  source = {layer.name: layer for layer in model.layers}
  norm = source.get(NORMALIZATION_NAME)
  folded = build_student(config, embed_dim, fold_batch_norm=True,
                         normalization=(norm.mean, norm.std) if norm is not None else None)
  for layer in folded.layers:
    if not layer.weights:
      continue
    if layer.name not in source:
      raise ValueError(f"fold_batch_norms: layer {layer.name!r} missing from the source model")
    src = source[layer.name]
    bn = source.get(layer.name + "/BatchNorm")
    if bn is None:
      layer.set_weights(src.get_weights())
      continue
    gamma, beta, mean, var = [w.astype(np.float64) for w in bn.get_weights()]
    scale = gamma / np.sqrt(var + bn.epsilon)
    weights = src.get_weights()
    kernel = weights[0].astype(np.float64)
    old_bias = weights[1].astype(np.float64) if len(weights) > 1 else 0.0
    if isinstance(src, keras.layers.DepthwiseConv2D):
      kernel = kernel * scale[None, None, :, None]
    else:
      kernel = kernel * scale[None, None, None, :]
    bias = beta + (old_bias - mean) * scale
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
  return folded
