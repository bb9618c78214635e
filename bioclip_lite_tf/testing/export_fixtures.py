"""A tiny QAT model with the student's contract, for the exporter's own tests.

It mirrors what the real student (bioclip_lite_tf.model, trained by bioclip_lite_tf.train)
produces, at toy size:
input float32 [N, R, R, 3] RGB 0..255 (already squashed), CLIP normalization inside, a
MobileNet-style Conv2D / DepthwiseConv2D / BatchNorm / hard-swish stack, a Dense projection and
an L2-normalized float32 [N, D] output, made quantization-aware with tfmot using a PER-TENSOR
asymmetric 8-bit weight quantizer (the scheme TF.js uint8 storage reproduces exactly).

It lets the export path be tested on its own, on the real code path (real tfmot wrappers, real
converters, real runtimes), with random or briefly trained weights.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow_model_optimization as tfmot

from formats import atomic
from formats import label_bank as label_bank_format
from formats.ranks import RANKS
from formats.taxonomy import make_rank_table
from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.model.mobilenet_v3 import NORMALIZATION_NAME

_Q = tfmot.quantization.keras
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@keras.saving.register_keras_serializable(package="bioclip_lite_export_testing")
class ClipNormalize(keras.layers.Layer):
  """float32 [..., 3] RGB 0..255 -> (x / 255 - mean) / std, per channel."""

  # what the exporter records as the model's own input normalization (export manifest)
  mean, std = tuple(CLIP_MEAN), tuple(CLIP_STD)

  def call(self, inputs):
    mean = tf.constant(CLIP_MEAN, inputs.dtype)
    std = tf.constant(CLIP_STD, inputs.dtype)
    return (inputs / 255.0 - mean) / std


@keras.saving.register_keras_serializable(package="bioclip_lite_export_testing")
class HardSwish(keras.layers.Layer):
  """x * relu6(x + 3) / 6, as one layer (tfmot cannot wrap the TFOpLambda form)."""

  def call(self, inputs):
    return inputs * tf.nn.relu6(inputs + 3.0) / 6.0


@keras.saving.register_keras_serializable(package="bioclip_lite_export_testing")
class L2Normalize(keras.layers.Layer):
  """Unit L2 norm over the last axis."""

  def call(self, inputs):
    return tf.math.l2_normalize(inputs, axis=-1)


@keras.saving.register_keras_serializable(package="bioclip_lite_export_testing")
class PerTensorWeightConfig(_Q.QuantizeConfig):
  """Per-tensor asymmetric 8-bit fake-quant of the named weights, no activation quantizers but
  an 8-bit output quantizer (as tfmot's default scheme has)."""

  def __init__(self, weight_attrs: Sequence[str], quantize_output: bool = True):
    self.weight_attrs = list(weight_attrs)
    self.quantize_output = quantize_output

  def _weight_quantizer(self):
    return _Q.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                            narrow_range=False)

  def get_weights_and_quantizers(self, layer):
    return [(getattr(layer, a), self._weight_quantizer()) for a in self.weight_attrs]

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    for attr, weight in zip(self.weight_attrs, quantize_weights):
      setattr(layer, attr, weight)

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    if not self.quantize_output:
      return []
    return [_Q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                 narrow_range=False)]

  def get_config(self):
    return {"weight_attrs": self.weight_attrs, "quantize_output": self.quantize_output}


def tiny_float_model(resolution: int = 32, embed_dim: int = 24, width: int = 16) -> keras.Model:
  """float32 [N, R, R, 3] 0..255 -> float32 [N, embed_dim] L2-normalized."""
  inputs = keras.Input((resolution, resolution, 3), name="image")
  x = ClipNormalize(name=NORMALIZATION_NAME)(inputs)
  x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
  x = keras.layers.BatchNormalization(name="stem_bn")(x)
  x = HardSwish(name="stem_hswish")(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
  x = keras.layers.BatchNormalization(name="dw_bn")(x)
  x = keras.layers.ReLU(name="dw_relu")(x)
  x = keras.layers.Conv2D(width * 2, 1, use_bias=False, name="expand")(x)
  x = keras.layers.BatchNormalization(name="expand_bn")(x)
  x = HardSwish(name="expand_hswish")(x)
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  x = keras.layers.Dense(embed_dim, name="projection")(x)
  outputs = L2Normalize(name="embedding")(x)
  return keras.Model(inputs, outputs, name="tiny_student")


def quantize_per_tensor(model: keras.Model) -> keras.Model:
  """tfmot QAT model with per-tensor weight quantizers on conv / depthwise / dense kernels."""
  def annotate(layer):
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      return _Q.quantize_annotate_layer(layer, PerTensorWeightConfig(["depthwise_kernel"]))
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      return _Q.quantize_annotate_layer(layer, PerTensorWeightConfig(["kernel"]))
    return layer

  with _Q.quantize_scope({"PerTensorWeightConfig": PerTensorWeightConfig}):
    annotated = keras.models.clone_model(model, clone_function=annotate)
    return _Q.quantize_apply(annotated)


def train_briefly(model: keras.Model, images: np.ndarray, targets: np.ndarray, steps: int = 5,
                  batch_size: int = 8, seed: int = 0) -> None:
  """A few steps of cosine distillation so weights, BN statistics and quantizer ranges move."""
  tf.random.set_seed(seed)
  model.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=lambda y, p: -tf.reduce_sum(y * p, axis=-1))
  data = tf.data.Dataset.from_tensor_slices((images, targets)).repeat().batch(batch_size)
  model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)


def unit_rows(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def write_label_bank(directory: str, embed_dim: int, branching=(1, 2, 2, 2, 2, 2, 3),
                     seed: int = 0, logit_scale: float = 100.0, teacher_id: str = "test-teacher",
                     real_weights: bool = False) -> dict:
  """Writes a small label_bank/ (docs/FORMATS.md section 1) plus ../teacher.json.

  branching[i] children per taxon at rank i (kingdom count first). Embeddings are random unit
  rows. Returns {rank: number of taxa}.
  """
  import os
  rng = np.random.RandomState(seed)
  names_prev = [""]
  tables, embeddings = [], {}
  for depth, rank in enumerate(RANKS):
    names, parents, commons = [], [], []
    for p_index, p_name in enumerate(names_prev):
      for c in range(branching[depth]):
        word = f"{rank[:3].capitalize()}{p_index}x{c}" if rank != "species" else f"sp{p_index}x{c}"
        names.append(f"{p_name} {word}".strip())
        parents.append(-1 if depth == 0 else p_index)
        commons.append(f"common {rank} {len(names)}" if c % 2 == 0 else "")
    tables.append(make_rank_table(rank, names, parents, commons))
    embeddings[rank] = unit_rows(rng.randn(len(names), embed_dim))
    names_prev = names
  label_bank_format.write_label_bank(directory, tables, embed_dim,
                                     label_bank_format.in_memory_rows(embeddings))
  atomic.write_json(os.path.join(os.path.dirname(os.path.abspath(directory)), "teacher.json"),
                    {"id": teacher_id, "logit_scale": logit_scale, "embed_dim": embed_dim,
                     "real_weights": real_weights})
  return {t.rank: len(t) for t in tables}


def build_workspace(root: str, num_photos: int = 240, embed_dim: int = 512,
                    resolution: int = 32, alpha: float = 0.5, train_steps: int = 30,
                    log=print) -> dict:
  """A complete tiny run for export/evaluate tests, built once per root (reused if present).

  root/cache   a format-1 teacher cache (tfds_treeoflife.make_dummy_data: 8 real species,
               photos of photo_size 48, teacher embeddings leaning to the true species)
  root/tfds    the built tree_of_life_distill dataset (python -m tfds_treeoflife.build)
  root/train   config.json + qat/model.h5: the real student (bioclip_lite_tf.model /
               quantization, BN folded, per-tensor QAT) trained `train_steps` steps on the
               cosine to the teacher embedding; float/model.h5: the unfolded core student
               trained the same way; prune/model.h5: that core with the smaller half of each
               kernel zeroed (a magnitude mask, as the prune phase leaves it), so evaluate's
               compression steps have every phase
  Returns the paths. `root/.complete` marks a finished build.
  """
  import os
  import subprocess
  import sys

  paths = {"root": root, "cache": os.path.join(root, "cache"),
           "tfds": os.path.join(root, "tfds"), "train": os.path.join(root, "train")}
  if os.path.exists(os.path.join(root, ".complete")):
    return paths
  os.makedirs(root, exist_ok=True)
  from tfds_treeoflife import make_dummy_data
  make_dummy_data.write_cache(paths["cache"], num_photos=num_photos, embed_dim=embed_dim,
                              photo_size=48, png_every=0)
  log("workspace: cache written")
  proc = subprocess.run([sys.executable, "-m", "tfds_treeoflife.build",
                         f"--cache_dir={paths['cache']}", f"--data_dir={paths['tfds']}"],
                        capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"tfds build failed: {proc.stderr[-3000:]}")
  log("workspace: TFDS dataset built")

  from bioclip_lite_tf import data as data_lib, model as student_model
  from bioclip_lite_tf.configs import demo
  from bioclip_lite_tf.optimize import quantization
  config = demo.get_config("runlocal")
  config.model.resolution = resolution
  config.model.alpha = alpha
  core = student_model.build_student(config.model, embed_dim)
  folded = student_model.fold_batch_norms(core, config.model, embed_dim)
  qat = quantization.quantize(folded)
  dataset_dir = data_lib.find_dataset_dir(paths["tfds"])
  photos, targets = [], []
  for batch, labels in data_lib.iter_examples(dataset_dir, "train", resolution):
    photos.append(batch)
    targets.append(labels["teacher_embedding"])
  train_briefly(qat, np.concatenate(photos), np.concatenate(targets), steps=train_steps,
                batch_size=16)
  from bioclip_lite_tf.train import workdir as workdir_lib
  os.makedirs(os.path.join(paths["train"], "qat"), exist_ok=True)
  workdir_lib.save_model(qat, workdir_lib.model_path(paths["train"], "qat"))
  all_photos, all_targets = np.concatenate(photos), np.concatenate(targets)
  train_briefly(core, all_photos, all_targets, steps=train_steps, batch_size=16)
  os.makedirs(os.path.join(paths["train"], "float"), exist_ok=True)
  workdir_lib.save_model(core, workdir_lib.model_path(paths["train"], "float"))
  for layer in core.layers:
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and kernel.shape.rank and kernel.shape.num_elements() > 16:
      k = kernel.numpy()
      k[np.abs(k) < np.median(np.abs(k))] = 0.0
      kernel.assign(k)
  os.makedirs(os.path.join(paths["train"], "prune"), exist_ok=True)
  workdir_lib.save_model(core, workdir_lib.model_path(paths["train"], "prune"))
  atomic.write_json(os.path.join(paths["train"], "config.json"), config.to_dict())
  log("workspace: QAT student trained and saved")
  open(os.path.join(root, ".complete"), "w").close()
  return paths


def exported_workspace(root: str, num_representative: int = 50, log=print) -> dict:
  """build_workspace plus `root/export` (bioclip_lite_tf.export), built once per root."""
  import os
  from bioclip_lite_tf import export
  paths = build_workspace(root, log=log)
  paths["export"] = os.path.join(root, "export")
  if not os.path.isfile(os.path.join(paths["export"], "manifest.json")):
    export.export(paths["train"], paths["export"], paths["tfds"],
                  num_representative=num_representative)
    log("workspace: exported")
  return paths


def briefly_trained_student(resolution: int, alpha: float, embed_dim: int, photos: np.ndarray,
                            targets: np.ndarray, steps: int = 6, calibration_passes: int = 10,
                            seed: int = 0) -> keras.Model:
  """The REAL student (bioclip_lite_tf.model.build_student: MobileNetV3 Small with squeeze-
  excite, hard-swish and residual blocks), BN-folded and made quantization-aware with the
  shipped `tfjs_per_tensor` scheme, as training leaves it before export.

  photos: float32 [n, R, R, 3] 0..255; targets: unit float32 [n, D]. From scratch BatchNorm's
  moving variance (1) is far above the real activations', so every photo would embed to nearly
  one vector: training-mode passes set the BN statistics from the photos, `steps` steps distil
  the targets, and after folding and wrapping, training-mode passes set the quantizer ranges.
  Fresh all-zero conv biases (squeeze-excite, Conv_2) make a graph no trained model has (the
  converter then fuses hard-sigmoid's +3 as a rank-0 bias, which wasm cannot run), so they get
  small random values, as bench/latency_bench.py gives them.
  Returns the QAT keras.Model, input float32 [N, R, R, 3], output float32 [N, D] unit rows.
  """
  from bioclip_lite_tf import model as student_model
  from bioclip_lite_tf.configs import demo
  from bioclip_lite_tf.optimize import quantization
  keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  config = demo.get_config("runlocal")
  config.model.resolution = int(resolution)
  config.model.alpha = float(alpha)
  core = student_model.build_student(config.model, embed_dim)
  for layer in core.layers:
    weights = layer.get_weights()
    if len(weights) == 2 and weights[1].ndim == 1 and not weights[1].any():
      layer.set_weights([weights[0], rng.normal(0, 0.01, weights[1].shape).astype(np.float32)])
  batch = photos[:32]
  for _ in range(calibration_passes):
    core(batch, training=True)
  train_briefly(core, photos, targets, steps=steps, batch_size=min(16, len(photos)), seed=seed)
  folded = student_model.fold_batch_norms(core, config.model, embed_dim)
  qat = quantization.quantize(folded)
  for _ in range(calibration_passes):
    qat(batch, training=True)
  return qat
