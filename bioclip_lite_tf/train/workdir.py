"""The training workdir: where each phase's model and done marker live, and how to load them.

  WORKDIR/config.json              the resolved config, embed_dim, dataset dir
  WORKDIR/<phase>/ckpt/            tf.train checkpoints (model, optimizer, step, phase)
  WORKDIR/<phase>/model.h5         the phase's final model (float/prune: plain core, qat: QAT)
  WORKDIR/<phase>/phase.done.json  written last: the phase is complete (metrics, timing)
  WORKDIR/tensorboard/<phase>/     scalars
  WORKDIR/summary.json             metrics per phase

This module defines no flags, so the exporter and the evaluator load models through it too.
"""
from __future__ import annotations

import os
from typing import Any

from formats import atomic
from formats.fs import GFileSystem
from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.optimize import quantization

PHASES = ("float", "prune", "qat")
MODEL_FILE = "model.h5"
DONE_FILE = "phase.done.json"
GFILE = GFileSystem(tf.io.gfile)


def phase_dir(workdir: str, phase: str) -> str:
  return os.path.join(workdir, phase)


def model_path(workdir: str, phase: str) -> str:
  return os.path.join(phase_dir(workdir, phase), MODEL_FILE)


def done_path(workdir: str, phase: str) -> str:
  return os.path.join(phase_dir(workdir, phase), DONE_FILE)


def phase_done(workdir: str, phase: str) -> bool:
  return tf.io.gfile.exists(done_path(workdir, phase))


def load_phase_model(workdir: str, phase: str) -> keras.Model:
  """Loads WORKDIR/<phase>/model.h5 (phase in float, prune, qat), ready for inference.

  float, prune: the plain core student (BatchNorm layers; prune's kernels are sparse).
  qat: the BN-folded student whose Conv2D/DepthwiseConv2D/Dense layers are QuantizeWrapperV2
  with per-tensor fake-quantized weights (`quantization.quantized_weights(model)` gives them).
  All: input float32 [N, R, R, 3] RGB 0..255, output float32 [N, D] L2-normalized.
  Raises FileNotFoundError naming the file and the command that makes it.
  """
  if phase not in PHASES:
    raise ValueError(f"unknown phase {phase!r}; phases: {PHASES}")
  path = model_path(workdir, phase)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: phase {phase!r} has not finished in "
                            f"{workdir} (run python -m bioclip_lite_tf.train --phases={phase})")
  with quantization.quantize_scope():
    return keras.models.load_model(path, compile=False)


def save_model(model: keras.Model, path: str) -> None:
  """Saves an .h5 model atomically (Keras writes a unique temp name, which is then renamed)."""
  tmp = f"{path}{atomic.TMP_MARK}{os.getpid()}.h5"
  model.save(tmp, include_optimizer=False, save_format="h5")
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_json(path: str, obj: Any) -> None:
  atomic.write_json(path, obj, GFILE)


def read_json(path: str) -> Any:
  return atomic.read_json(path, GFILE)
