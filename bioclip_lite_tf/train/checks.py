"""Everything about flags, config and workdir that can be refused before training starts."""
from __future__ import annotations

import os

from bioclip_lite_tf import losses as losses_lib
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.optimize import quantization
from bioclip_lite_tf.train import workdir as workdir_lib
from bioclip_lite_tf.train.workdir import PHASES

_ARCH_KEYS = ("name", "alpha", "resolution")


class UsageError(ValueError):
  """Bad flags, config or workdir: reported before training, exit status 2."""


def check_config(config) -> None:
  """Everything that can be checked without data: raises UsageError / ModelConfigError."""
  if config.model.name not in model_lib.STUDENTS:
    raise UsageError(f"unknown model.name {config.model.name!r}; known: "
                     f"{sorted(model_lib.STUDENTS)}")
  for name in config.losses:
    if name not in losses_lib.LOSSES:
      raise UsageError(f"unknown loss {name!r} in config.losses; known: "
                       f"{sorted(losses_lib.LOSSES)}")
  for name in ("soft_label", "hierarchical"):
    params = config.losses.get(name, {})
    normalizer = params.get("normalizer", "topk")
    if normalizer not in ("full", "topk"):
      raise UsageError(f"losses.{name}.normalizer={normalizer!r}: use 'full' or 'topk'")
    if normalizer == "full" and float(params.get("temperature", 1.0)) != 1.0:
      raise UsageError(
          f"losses.{name}: normalizer='full' needs temperature 1 (got {params['temperature']}):"
          " the cached teacher_logsumexp is the teacher's normalizer at T = 1 only; set "
          f"losses.{name}.normalizer='topk' to train at another temperature")
  if int(config.get("steps_per_call", 1)) < 1:
    raise UsageError(f"steps_per_call must be >= 1, got {config.steps_per_call}")
  if config.qat.scheme not in quantization.SCHEMES:
    raise UsageError(f"unknown qat.scheme {config.qat.scheme!r}; known: "
                     f"{sorted(quantization.SCHEMES)}")
  if not 0.0 <= float(config.prune.target_sparsity) < 1.0:
    raise UsageError(f"prune.target_sparsity must be in [0, 1), got {config.prune.target_sparsity}")
  for phase in PHASES:
    if int(config.phases[phase].steps) <= 0:
      raise UsageError(f"phases.{phase}.steps must be positive")
  if int(config.batch_size) <= 0:
    raise UsageError("batch_size must be positive")
  if config.model.init == "imagenet":
    model_lib.find_imagenet_weights(config.model, config.model.imagenet_weights)
  elif config.model.init != "none":
    raise UsageError(f"unknown model.init {config.model.init!r}; use imagenet or none")


def check_workdir(workdir: str, config, embed_dim: int, dataset_dir: str) -> None:
  """A workdir made for another architecture or embedding width cannot be resumed."""
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    return
  previous = workdir_lib.read_json(path)
  if int(previous.get("embed_dim", embed_dim)) != embed_dim:
    raise UsageError(
        f"{workdir} holds checkpoints of a student with embedding width "
        f"{previous['embed_dim']}, but the dataset at {dataset_dir} has teacher embeddings of "
        f"width {embed_dim}; use a new --workdir for this dataset")
  old_model = previous.get("config", {}).get("model", {})
  for key in _ARCH_KEYS:
    if key in old_model and old_model[key] != config.model[key]:
      raise UsageError(f"{workdir} was trained with model.{key}={old_model[key]!r}, the config "
                       f"now says {config.model[key]!r}; use a new --workdir")
