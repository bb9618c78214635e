"""Reading the built `tree_of_life_distill` dataset for export calibration and evaluation.

`--data_dir` may be the TFDS data root (`.../tree_of_life_distill/<config>/<version>/` is found
under it, newest version first) or the dataset version directory itself (`info.data_dir`, the
one holding teacher.json and label_bank/).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from bioclip_lite_tf.keras import tf

DATASET_NAME = "tree_of_life_distill"
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")


class DatasetNotFoundError(FileNotFoundError):
  """--data_dir does not hold a built tree_of_life_distill dataset."""


def _version_key(path: str):
  try:
    return tuple(int(p) for p in os.path.basename(path).split("."))
  except ValueError:
    return (-1,)


def find_dataset_dir(data_dir: str, config: str = "") -> str:
  """The dataset version directory (holding dataset_info.json and teacher.json) under data_dir."""
  data_dir = os.path.abspath(data_dir)
  if os.path.isfile(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  patterns = [os.path.join(data_dir, DATASET_NAME, config or "*", "*", "dataset_info.json"),
              os.path.join(data_dir, DATASET_NAME, "*", "dataset_info.json"),
              os.path.join(data_dir, "*", "dataset_info.json")]
  for pattern in patterns:
    found = sorted((os.path.dirname(p) for p in glob.glob(pattern)), key=_version_key)
    if found:
      # Prefer the "default" config when several exist and none was asked for.
      default = [f for f in found if os.path.basename(os.path.dirname(f)) == "default"]
      return (default or found)[-1]
  raise DatasetNotFoundError(
      f"--data_dir={data_dir}: no built {DATASET_NAME} dataset (no dataset_info.json under "
      f"{DATASET_NAME}/<config>/<version>/); build it with python -m tfds_treeoflife.build")


def read_teacher(dataset_dir: str) -> dict:
  """teacher.json of the dataset (id, logit_scale, embed_dim, real_weights, ...)."""
  path = os.path.join(dataset_dir, "teacher.json")
  if not os.path.isfile(path):
    raise DatasetNotFoundError(f"{path}: missing; {dataset_dir} is not a complete "
                               f"{DATASET_NAME} build")
  with open(path) as f:
    return json.load(f)


def split_sizes(dataset_dir: str) -> Dict[str, int]:
  """{split name: number of examples} from dataset_info.json."""
  with open(os.path.join(dataset_dir, "dataset_info.json")) as f:
    info = json.load(f)
  out = {}
  for split in info.get("splits", []):
    lengths = split.get("shardLengths") or []
    out[split["name"]] = int(sum(int(x) for x in lengths)) if lengths else int(
        split.get("numExamples", 0) or 0)
  return out


def eval_split(dataset_dir: str, preferred: str = "validation") -> str:
  sizes = split_sizes(dataset_dir)
  if sizes.get(preferred):
    return preferred
  for name in ("validation", "test", "train"):
    if sizes.get(name):
      return name
  raise DatasetNotFoundError(f"{dataset_dir}: no non-empty split (have {sizes})")


def load_split(dataset_dir: str, split: str) -> tf.data.Dataset:
  """The split as a tf.data.Dataset of feature dicts, in file order (deterministic)."""
  import tensorflow_datasets as tfds  # heavy; only the readers need it

  builder = tfds.builder_from_directory(dataset_dir)
  return builder.as_dataset(split=split, shuffle_files=False)


def squash(images: tf.Tensor, resolution: int) -> tf.Tensor:
  """uint8 [N, H, W, 3] -> float32 [N, R, R, 3] 0..255: the student's own squash resize."""
  from bioclip_lite_tf.layers import squash_resize  # the function training uses
  return squash_resize(images, resolution)


def iter_examples(dataset_dir: str, split: str, resolution: int, limit: Optional[int] = None,
                  batch_size: int = 32) -> Iterator[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
  """Batches of (photos float32 [B, R, R, 3] 0..255, labels) from a split.

  labels: `taxon` int32 [B, 7] (true row per rank), `topk_species_indices` int32 [B, K],
  `topk_species_logits` float32 [B, K], `teacher_embedding` float32 [B, D], `key` bytes [B].
  Photos of any size are squashed one by one (they differ in size), then batched.
  """
  ds = load_split(dataset_dir, split)
  if limit:
    ds = ds.take(limit)

  def prepare(ex):
    photo = squash(ex["image"][None], resolution)[0]
    labels = {"taxon": tf.stack([tf.cast(ex[r], tf.int32) for r in RANKS]),
              "topk_species_indices": tf.cast(ex["topk_species_indices"], tf.int32),
              "topk_species_logits": tf.cast(ex["topk_species_logits"], tf.float32),
              "teacher_embedding": tf.cast(ex["teacher_embedding"], tf.float32),
              "key": ex["key"]}
    return photo, labels

  ds = ds.map(prepare, num_parallel_calls=2).batch(batch_size).prefetch(1)
  for photos, labels in ds.as_numpy_iterator():
    yield photos, labels
