"""TF.js's 8-bit weight grid, in numpy (exactly as the converter computes it) and in TF (for QAT).

The TF.js converter's `--quantize_uint8` stores each weight tensor as uint8 with one affine
(min, scale) per tensor, range nudged so that 0.0 is exactly representable (TFLite's nudging),
and dequantizes on load: w = q * scale + min (tensorflowjs/quantization.py). A conversion is
lossless only if every weight already lies on the grid TF.js will compute from that tensor: QAT
trains through `fake_quant_per_tensor`, and the exporter stores such tensors as uint8.

`per_tensor_grid(w)` -> (min, scale) exactly as TF.js computes it (float64 arithmetic),
`quantize_to_levels(w)` -> its levels, `tfjs_round_trip(w)` -> what TF.js holds after loading.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from bioclip_lite_tf.keras import tf

NUM_BITS = 8
_QMAX = 2 ** NUM_BITS - 1



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
