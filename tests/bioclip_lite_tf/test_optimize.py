"""Pruning and QAT: target sparsity reached and kept, per-tensor uint8 grids that TF.js
reproduces, sparsity surviving save/load, and both quantization schemes applying to the student."""
import importlib.util
import os

import numpy as np

from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.optimize import pruning, quantization, tfjs_grid
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude
from bioclip_lite_tf.config import ConfigDict
from bioclip_lite_tf.keras import keras, tf

MODEL = {"name": "mobilenet_v3_small", "alpha": 0.35, "resolution": 32, "dropout": 0.0}
EMBED_DIM = 24


def _load_tfjs_quantization():
  """tensorflowjs/quantization.py, the converter's own code, loaded alone: importing the
  tensorflowjs package pulls tensorflow_decision_forests, which needs IPython."""
  spec = importlib.util.find_spec("tensorflowjs")
  path = os.path.join(spec.submodule_search_locations[0], "quantization.py")
  module_spec = importlib.util.spec_from_file_location("_tfjs_quantization", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module


tfjs_quantization = _load_tfjs_quantization()


def _random_tensors(seed=0, n=60):
  rng = np.random.default_rng(seed)
  for i in range(n):
    shape = (3, 3, int(rng.integers(1, 24)), int(rng.integers(1, 24)))
    w = (rng.standard_normal(shape) * 10 ** rng.uniform(-3, 0)).astype(np.float32)
    if i % 3 == 0:
      w[rng.random(shape) < 0.5] = 0.0            # pruned
    if i % 7 == 1:
      w = np.abs(w)                               # one-signed
    yield w


def test_per_tensor_grid_is_the_tfjs_converters_grid():
  for w in _random_tensors():
    q, meta = tfjs_quantization.quantize_weights(w, np.uint8)
    lo, scale = tfjs_grid.per_tensor_grid(w)
    assert (lo, scale) == (meta["min"], meta["scale"])
    levels, lo2, scale2 = tfjs_grid.quantize_to_levels(w)
    np.testing.assert_array_equal(levels, q)
    np.testing.assert_array_equal(tfjs_grid.tfjs_round_trip(w),
                                  tfjs_quantization.dequantize_weights(q, meta))


def test_fake_quant_levels_are_what_tfjs_stores():
  for w in _random_tensors(seed=1):
    fq = tfjs_grid.fake_quant_per_tensor(tf.constant(w)).numpy()
    assert len(np.unique(fq)) <= 256
    q, meta = tfjs_quantization.quantize_weights(fq, np.uint8)
    back = tfjs_quantization.dequantize_weights(q, meta)
    # TF.js stores the fake-quantized tensor with the very levels the original tensor's grid
    # gives, so its grid is the same grid ...
    np.testing.assert_array_equal(q, tfjs_grid.quantize_to_levels(w)[0])
    # ... and the values agree up to float rounding (TF computes q * scale + min in float32,
    # the converter in float64): a ten-thousandth of a grid step. The exporter recovers the
    # exact grid from the values (export.tfjs.find_uint8_grid) and stores the levels.
    _, scale = tfjs_grid.per_tensor_grid(w)
    assert np.abs(back.astype(np.float64) - fq).max() <= 1e-4 * scale
    # Exact zeros (pruned weights) stay exact zeros through TF.js.
    assert np.all(back[fq == 0] == 0)


def _pruned_folded_student(sparsity=0.5, seed=0):
  """A BN-folded student with the smallest half of every Conv2D/Dense kernel zeroed."""
  core = model_lib.build_student(MODEL, EMBED_DIM)
  folded = model_lib.fold_batch_norms(core, MODEL, EMBED_DIM)
  for name in pruning.prunable_layer_names(folded):
    layer = folded.get_layer(name)
    weights = layer.get_weights()
    k = weights[0]
    k[np.abs(k) <= np.quantile(np.abs(k), sparsity)] = 0.0
    layer.set_weights([k] + weights[1:])
  return folded


def _zeros(model_or_weights, names):
  if isinstance(model_or_weights, dict):
    return {n: model_or_weights[n] == 0 for n in names}
  return {n: model_or_weights.get_layer(n).get_weights()[0] == 0 for n in names}


def test_qat_keeps_sparsity_and_per_tensor_grids_while_training(tmp_path):
  folded = _pruned_folded_student()
  names = pruning.prunable_layer_names(folded)
  before = _zeros(folded, names)
  qat = quantization.quantize(folded, "tfjs_per_tensor")
  opt = keras.optimizers.Adam(1e-2)
  x = tf.random.uniform((4, 32, 32, 3), 0, 255, seed=1)
  target = tf.math.l2_normalize(tf.random.normal((4, EMBED_DIM), seed=2), axis=-1)
  for _ in range(3):  # real gradient steps: they move the underlying kernels' zeros
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(qat(x, training=True) - target))
    opt.apply_gradients(zip(tape.gradient(loss, qat.trainable_variables),
                            qat.trainable_variables))
  qw = quantization.quantized_weights(qat)
  for n in names:
    assert np.all(qw[n][before[n]] == 0), f"{n}: a pruned weight came back in QAT"
    assert np.mean(qw[n] == 0) >= 0.5
  for n, w in qw.items():
    assert len(np.unique(w)) <= 256, n
    back = tfjs_grid.tfjs_round_trip(w)
    _, scale = tfjs_grid.per_tensor_grid(w)
    assert np.abs(back.astype(np.float64) - w).max() <= 1e-4 * scale, f"{n} is off its grid"

  # Serialization round trip: same outputs, and the sparsity mask survives reload + training.
  path = str(tmp_path / "qat.h5")
  qat.save(path, include_optimizer=False)
  with quantization.quantize_scope():
    again = keras.models.load_model(path, compile=False)
  np.testing.assert_array_equal(again(x, training=False).numpy(), qat(x, training=False).numpy())
  opt2 = keras.optimizers.Adam(1e-2)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(again(x, training=True) - target))
  opt2.apply_gradients(zip(tape.gradient(loss, again.trainable_variables),
                           again.trainable_variables))
  qw2 = quantization.quantized_weights(again)
  for n in names:
    assert np.all(qw2[n][before[n]] == 0), f"{n}: mask lost in save/load"


def test_tfjs_scheme_wraps_only_weighted_layers_and_quantizes_no_activations():
  qat = quantization.quantize(_pruned_folded_student(), "tfjs_per_tensor")
  wrapped = [l for l in qat.layers if isinstance(l, quantization._qk.QuantizeWrapperV2)]
  assert wrapped and all(type(l.layer) in quantization.WEIGHT_ATTRS for l in wrapped)
  assert not any(type(l).__name__ == "QuantizeLayer" for l in qat.layers)
  assert all(not l._output_quantizers for l in wrapped)   # float activations, as in TF.js


def test_tflite_per_channel_scheme_accepts_the_custom_layers():
  folded = _pruned_folded_student()
  qat = quantization.quantize(folded, "tflite_per_channel")
  x = tf.random.uniform((2, 32, 32, 3), 0, 255, seed=3)
  out = qat(x, training=True).numpy()
  assert out.shape == (2, EMBED_DIM) and np.all(np.isfinite(out))
  custom = [l for l in qat.layers if isinstance(l, quantization._qk.QuantizeWrapperV2)
            and type(l.layer).__name__ in ("HardSwish", "HardSigmoid")]
  assert custom, "hard-swish/hard-sigmoid must carry their own QuantizeConfig"


def test_pruning_reaches_target_and_strip_keeps_it():
  core = model_lib.build_student(MODEL, EMBED_DIM)
  config = ConfigDict(prune=dict(target_sparsity=0.5, end_fraction=0.5, frequency=1,
                                 min_params=0))
  steps = 4
  pruned = pruning.make_prunable(core, config, steps)
  opt = keras.optimizers.Adam(1e-3)
  wrappers = [l for l in pruned.layers if isinstance(l, PruneLowMagnitude)]
  assert {l.layer.name for l in wrappers} == set(pruning.prunable_layer_names(core))
  x = tf.random.uniform((2, 32, 32, 3), 0, 255, seed=4)
  for step in range(steps):
    for w in wrappers:
      w.pruning_step.assign(step)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(pruned(x, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, pruned.trainable_variables),
                            pruned.trainable_variables))
  plain = pruning.strip_and_apply_masks(pruned)
  assert not any(isinstance(l, PruneLowMagnitude) for l in plain.layers)
  for name in pruning.prunable_layer_names(plain):
    k = plain.get_layer(name).get_weights()[0]
    # tfmot rounds the number of pruned weights per tensor; allow one weight of slack.
    assert np.sum(k == 0) >= int(0.5 * k.size) - 1, f"{name}: {np.mean(k == 0):.3f}"


def test_pruning_schedule_reaches_the_target_at_a_mask_update():
  for steps, frequency, end_fraction in [(60, 10, 0.7), (80, 5, 0.7), (6, 100, 0.7), (200, 7, 0.5)]:
    config = ConfigDict(prune=dict(target_sparsity=0.5, end_fraction=end_fraction,
                                   frequency=frequency))
    schedule = pruning.pruning_schedule(config, steps)
    updates = [s for s in range(steps) if bool(schedule(tf.constant(s, tf.int64))[0])]
    assert updates, (steps, frequency)
    final = float(schedule(tf.constant(updates[-1], tf.int64))[1])
    assert abs(final - 0.5) < 1e-6, (steps, frequency, updates[-1], final)
