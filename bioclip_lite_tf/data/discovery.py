"""Finding a built `tree_of_life_distill` dataset and reading its small side files.

`--data_dir` may be the TFDS data root (`.../tree_of_life_distill/<config>/<version>/` is found
under it, newest version first), DATA_DIR/tree_of_life_distill, DATA_DIR/.../<config>, or the
dataset version directory itself (`info.data_dir`, the one holding teacher.json and label_bank/).
Works on any filesystem tf.io.gfile reads.
"""
from __future__ import annotations

import os
from typing import Dict

from formats import atomic
from formats.fs import GFileSystem
from bioclip_lite_tf.keras import tf

DATASET_NAME = "tree_of_life_distill"
TEACHER_FILE = "teacher.json"
GFILE = GFileSystem(tf.io.gfile)


class DataError(ValueError):
  """The dataset or its label bank is missing or does not fit (a usage error: exit 2)."""


class DatasetNotFoundError(DataError):
  """--data_dir does not hold a built tree_of_life_distill dataset."""


def _version_key(path: str):
  try:
    return tuple(int(p) for p in os.path.basename(path.rstrip("/")).split("."))
  except ValueError:
    return (-1,)


def find_dataset_dir(data_dir: str, builder_config: str = "", name: str = DATASET_NAME) -> str:
  """Returns the dataset version directory (the one with dataset_info.json) under data_dir.

  Several versions of one config: the highest. Several configs and builder_config empty: a
  DataError naming them (the caller picks one), never a silent choice.
  Raises DatasetNotFoundError naming what was looked for.
  """
  if not data_dir:
    raise DatasetNotFoundError("--data_dir is required: the TFDS data_dir holding a built "
                               f"{name} (python -m tfds_treeoflife.build ... --data_dir=DIR)")
  if not tf.io.gfile.isdir(data_dir):
    raise DatasetNotFoundError(f"--data_dir={data_dir!r} does not exist")
  if tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  patterns = [os.path.join(data_dir, name, builder_config or "*", "*", "dataset_info.json"),
              os.path.join(data_dir, builder_config or "*", "*", "dataset_info.json"),
              os.path.join(data_dir, "*", "dataset_info.json")]
  for pattern in patterns:
    found = sorted((os.path.dirname(p) for p in tf.io.gfile.glob(pattern)
                    if "incomplete" not in p), key=_version_key)
    if not found:
      continue
    configs = sorted({os.path.basename(os.path.dirname(f)) for f in found})
    if len(configs) > 1 and not builder_config:
      raise DataError(f"--data_dir={data_dir!r} holds several built configs {configs}; choose "
                      "one (training: --override=data.builder_config=NAME; export and evaluate: "
                      f"--data_dir={os.path.join(data_dir, name, 'NAME')})")
    return found[-1]
  raise DatasetNotFoundError(
      f"--data_dir={data_dir!r} holds no built {name} dataset (no {name}/<config>/<version>/"
      "dataset_info.json); build it with python -m tfds_treeoflife.build")


def read_teacher(dataset_dir: str) -> dict:
  """teacher.json of the dataset (id, logit_scale, embed_dim, real_weights, ...)."""
  path = os.path.join(dataset_dir, TEACHER_FILE)
  if not tf.io.gfile.exists(path):
    raise DatasetNotFoundError(f"{path}: missing; {dataset_dir} is not a complete "
                               f"{DATASET_NAME} build")
  return atomic.read_json(path, GFILE)


def split_sizes(dataset_dir: str) -> Dict[str, int]:
  """{split name: number of examples} from dataset_info.json."""
  info = atomic.read_json(os.path.join(dataset_dir, "dataset_info.json"), GFILE)
  out = {}
  for split in info.get("splits", []):
    lengths = split.get("shardLengths") or []
    out[split["name"]] = int(sum(int(x) for x in lengths)) if lengths else int(
        split.get("numExamples", 0) or 0)
  return out


def eval_split(dataset_dir: str, preferred: str = "validation") -> str:
  """The split to evaluate on: preferred if it has examples, else validation/test/train."""
  sizes = split_sizes(dataset_dir)
  if sizes.get(preferred):
    return preferred
  for name in ("validation", "test", "train"):
    if sizes.get(name):
      return name
  raise DatasetNotFoundError(f"{dataset_dir}: no non-empty split (have {sizes})")
