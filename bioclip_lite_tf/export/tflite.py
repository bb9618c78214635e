"""TFLite int8 export, a runner, and an arena-size estimate.

Model: every op runs in int8 except the final L2 normalization; the input stays float32
[N, R, R, 3] RGB 0..255 and the output float32 [N, D] (unit rows), with one QUANTIZE at the
start and one DEQUANTIZE before the normalization. Float edges mean the app feeds the same
tensor it feeds TF.js and gets an embedding it compares with the label bank directly.

Why the normalization stays float: TFLite's int8 L2_NORMALIZATION has a fixed output step of
1/128, while the components of a unit 512-d vector are about 0.044, so every component would
carry ~5% rounding noise. Measured on a trained demo student: cosine to Keras 0.9987 and species
top-1 agreement 0.93 with it in int8, 0.99995 and 1.0 with it in float (the projection before
it stays int8 with a calibrated range). `float_l2_normalize=False` gives the strict all-int8
model.

Calibration: activation ranges come from a representative dataset of real photos (the
validation photos, squash-resized as in training). The converter starts from the plain
inference graph (weights already on their QAT grids, see export/plain_graph.py), so weights move from a
per-tensor grid to TFLite's per-channel symmetric int8 grid, which is at least as fine.
(Converting the tfmot QAT model directly fails: TFLite's int8 CONV_2D needs symmetric weights,
"affine_quantization->zero_point->data[i] != 0", and ours are asymmetric per-tensor for TF.js.)
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

import numpy as np

from bioclip_lite_tf.keras import keras, tf


def convert_int8(model: keras.Model, representative_images: Callable[[], Iterable[np.ndarray]],
                 float_l2_normalize: bool = True) -> bytes:
  """Integer TFLite flatbuffer of `model` (see the module docstring).

  model: Keras model, float32 [N, R, R, 3] 0..255 -> float32 [N, D].
  representative_images: a callable returning an iterable of float32 [1, R, R, 3] photos.
  Returns the .tflite bytes.
  """
  # Convert from a concrete function with a batch-1 signature: the representative data and the
  # on-device use are both one photo at a time, and a fixed shape lets XNNPACK plan ahead.
  resolution = model.inputs[0].shape[1:3]
  spec = tf.TensorSpec([1, resolution[0], resolution[1], model.inputs[0].shape[-1]], tf.float32)
  concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  dataset = lambda: ([np.asarray(x, np.float32)] for x in representative_images())  # noqa: E731
  converter.representative_dataset = dataset
  converter.inference_input_type = tf.float32
  converter.inference_output_type = tf.float32
  if not float_l2_normalize:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                         tf.lite.OpsSet.TFLITE_BUILTINS]
  # The quantization debugger's denylist is TFLite's supported way to keep chosen ops float.
  debugger = tf.lite.experimental.QuantizationDebugger(
      converter=converter, debug_dataset=dataset,
      debug_options=tf.lite.experimental.QuantizationDebugOptions(
          denylisted_ops=["L2_NORMALIZATION"]))
  return debugger.get_nondebug_quantized_model()


def interpreter(model_content: bytes, num_threads: Optional[int] = None
                ) -> tf.lite.Interpreter:
  """An allocated interpreter; TF 2.19 applies the XNNPACK delegate by default on CPU."""
  interp = tf.lite.Interpreter(model_content=model_content, num_threads=num_threads)
  interp.allocate_tensors()
  return interp


def run(model_content: bytes, images: np.ndarray, num_threads: Optional[int] = None
        ) -> np.ndarray:
  """Embeds images one by one. images float32 [N, R, R, 3] 0..255 -> float32 [N, D]."""
  interp = interpreter(model_content, num_threads)
  inp = interp.get_input_details()[0]
  out = interp.get_output_details()[0]
  rows = []
  for image in images:
    interp.set_tensor(inp["index"], np.asarray(image[None], np.float32))
    interp.invoke()
    rows.append(interp.get_tensor(out["index"])[0].copy())
  return np.stack(rows).astype(np.float32)


def arena_bytes(model_content: bytes) -> Dict[str, int]:
  """Activation memory of one inference, from the op graph.

  The Python API does not expose the interpreter's arena size, so it is computed the way
  TFLite's ArenaPlanner lays out its arena: each non-constant tensor lives from the op that
  writes it to the last op that reads it, and tensors are placed greedily by decreasing size at
  the lowest offset that does not overlap a live tensor. Returns `planned` (that arena's size)
  and `unshared` (the sum of all such tensors, the bound without reuse). Constant weights are
  not counted (they stay in the mapped flatbuffer).
  """
  interp = tf.lite.Interpreter(model_content=model_content)
  interp.allocate_tensors()
  ops = interp._get_ops_details()  # pylint: disable=protected-access
  details = {t["index"]: t for t in interp.get_tensor_details()}
  constant = set()
  for index in details:
    try:
      if interp._interpreter.TensorHasBuffer(index):  # pylint: disable=protected-access
        constant.add(index)
    except AttributeError:
      break
  first: Dict[int, int] = {}
  last: Dict[int, int] = {}
  for inp in interp.get_input_details():
    first[inp["index"]] = 0
  for step, op in enumerate(ops):
    for t in list(op["inputs"]) + list(op["outputs"]):
      if t < 0 or t in constant:
        continue
      first.setdefault(t, step)
      last[t] = step
  for out in interp.get_output_details():
    last[out["index"]] = len(ops)

  def nbytes(index):
    t = details[index]
    return int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize

  tensors = sorted((t for t in first if t in details), key=nbytes, reverse=True)
  placed: List[tuple] = []  # (offset, size, first, last)
  arena = 0
  for t in tensors:
    size, start, end = nbytes(t), first[t], last.get(t, first[t])
    offset = 0
    for o, s, f, l in sorted(placed):
      if l < start or f > end:
        continue
      if offset + size <= o:
        break
      offset = max(offset, o + s)
    placed.append((offset, size, start, end))
    arena = max(arena, offset + size)
  return {"planned": int(arena), "unshared": int(sum(nbytes(t) for t in tensors))}
