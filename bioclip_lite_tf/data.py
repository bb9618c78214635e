"""Input pipeline: the built TFDS dataset `tree_of_life_distill` -> batches for the student.

Reads DATA_DIR/tree_of_life_distill/<config>/<version>/ with tfds.builder_from_directory (no
builder code needed) and the label bank saved beside it (tfds_treeoflife.load_label_bank).
Photos are decoded and squash-resized in tf.data by bioclip_lite_tf.layers.squash_resize, the
same function the exported model's preprocessing uses.

Resume: the training stream is a deterministic function of (seed, step). Records are read with
deterministic file order and a seeded shuffle of *encoded* records, and a resumed run skips the
records the finished steps consumed before any decoding, so the skip costs reading, not decoding.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow_datasets as tfds

from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.layers import squash_resize

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
DATASET_NAME = "tree_of_life_distill"


class DataError(ValueError):
  """The dataset or its label bank is missing or does not fit (a usage error: exit 2)."""


def find_dataset_dir(data_dir: str, name: str = DATASET_NAME, builder_config: str = "") -> str:
  """Returns the dataset version directory (the one with dataset_info.json) under data_dir.

  data_dir may be the TFDS data_dir root, DATA_DIR/<name>, DATA_DIR/<name>/<config>, or the
  version directory itself. Raises DataError naming what was looked for.
  """
  if not data_dir:
    raise DataError("--data_dir is required: the TFDS data_dir holding a built "
                    f"{name} (python -m tfds_treeoflife.build ... --data_dir=DIR)")
  if not tf.io.gfile.isdir(data_dir):
    raise DataError(f"--data_dir={data_dir!r} does not exist")
  if tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
    return data_dir
  patterns = [os.path.join(data_dir, name, builder_config or "*", "*", "dataset_info.json"),
              os.path.join(data_dir, builder_config or "*", "*", "dataset_info.json"),
              os.path.join(data_dir, "*", "dataset_info.json")]
  for pattern in patterns:
    hits = sorted(p for p in tf.io.gfile.glob(pattern) if "incomplete" not in p)
    if hits:
      # Several configs or versions: the last in sort order (highest version of the first config
      # name alphabetically is not meaningful, so insist on one config when ambiguous).
      configs = {os.path.dirname(os.path.dirname(h)) for h in hits}
      if len(configs) > 1 and not builder_config:
        raise DataError(f"--data_dir={data_dir!r} holds several built configs "
                        f"{sorted(os.path.basename(c) for c in configs)}; choose one with "
                        "--override=data.builder_config=NAME")
      return os.path.dirname(hits[-1])
  raise DataError(f"--data_dir={data_dir!r} holds no built {name} dataset (no "
                  f"{name}/<config>/<version>/dataset_info.json); build it with "
                  "python -m tfds_treeoflife.build")


@dataclasses.dataclass
class LabelBankArrays:
  """The label bank as arrays (numpy; see losses.LabelBankTensors for the TF form).

  species_text_embeddings: float32 [S, D], L2-normalized.
  ancestors: int32 [7, S]; ancestors[r, s] = row of species s's taxon at rank r (last row: s).
  rank_sizes: number of taxa per rank.
  names: taxon names per rank (row order).
  logit_scale: the multiplier of zero-shot logits (exp already applied).
  """
  species_text_embeddings: np.ndarray
  ancestors: np.ndarray
  rank_sizes: tuple
  names: Dict[str, list]
  logit_scale: float
  teacher: dict

  @property
  def embed_dim(self) -> int:
    return int(self.species_text_embeddings.shape[1])

  @property
  def num_species(self) -> int:
    return int(self.species_text_embeddings.shape[0])


def ancestors_from_parents(parents: Dict[str, np.ndarray]) -> np.ndarray:
  """parents[rank]: int [N_rank], row in the previous rank -> int32 [7, S] species ancestors."""
  num_species = len(parents["species"])
  out = np.zeros((len(RANKS), num_species), np.int32)
  current = np.arange(num_species)
  out[-1] = current
  for r in range(len(RANKS) - 1, 0, -1):
    current = np.asarray(parents[RANKS[r]])[current]
    if (current < 0).any():
      raise DataError(f"label bank: a {RANKS[r]} row has parent_index -1 but is not a kingdom")
    out[r - 1] = current
  return out


def _read_label_bank_files(dataset_dir: str):
  """Minimal reader of label_bank/<rank>.tsv|npy + teacher.json (used when tfds_treeoflife is not
  importable, e.g. a training job that ships only this package). Returns (parents, names,
  species_text_embeddings, teacher)."""
  teacher_path = os.path.join(dataset_dir, "teacher.json")
  if not tf.io.gfile.exists(teacher_path):
    raise DataError(f"{teacher_path}: missing; is {dataset_dir} a built {DATASET_NAME}?")
  with tf.io.gfile.GFile(teacher_path) as f:
    teacher = json.load(f)
  parents, names = {}, {}
  for rank in RANKS:
    path = os.path.join(dataset_dir, "label_bank", rank + ".tsv")
    if not tf.io.gfile.exists(path):
      raise DataError(f"{path}: missing label bank table")
    with tf.io.gfile.GFile(path) as f:
      lines = f.read().splitlines()
    header = lines[0].split("\t")
    if header[:3] != ["index", "name", "parent_index"]:
      raise DataError(f"{path}: header {header}, expected index, name, parent_index, ...")
    rows = [line.split("\t") for line in lines[1:] if line]
    names[rank] = [r[1] for r in rows]
    parents[rank] = np.asarray([int(r[2]) for r in rows], np.int64)
  with tf.io.gfile.GFile(os.path.join(dataset_dir, "label_bank", "species.npy"), "rb") as f:
    species = np.load(f, allow_pickle=False)
  return parents, names, species, teacher


def load_label_bank(dataset_dir: str) -> LabelBankArrays:
  """Reads label_bank/ and teacher.json from a built dataset version directory.

  Uses tfds_treeoflife.label_bank.load_label_bank (the dataset's own reader, with its checks)
  when importable, else a minimal reader of the same files.
  """
  try:
    from tfds_treeoflife.label_bank import load_label_bank as _load
  except ImportError:
    parents, names, species, teacher = _read_label_bank_files(dataset_dir)
  else:
    try:
      bank = _load(dataset_dir)
    except (FileNotFoundError, ValueError) as e:
      raise DataError(f"label bank in {dataset_dir}: {e}") from e
    parents = {r: np.asarray(bank.ranks[r].parents) for r in RANKS}
    names = {r: list(bank.ranks[r].names) for r in RANKS}
    species = bank.ranks["species"].text_embeddings
    teacher = dict(bank.teacher, logit_scale=float(bank.logit_scale))
  if species.ndim != 2 or species.shape[0] != len(names["species"]):
    raise DataError(f"{dataset_dir}: species.npy has shape {list(species.shape)}, expected "
                    f"[{len(names['species'])}, D]")
  return LabelBankArrays(
      species_text_embeddings=np.asarray(species, np.float32),
      ancestors=ancestors_from_parents(parents),
      rank_sizes=tuple(len(names[r]) for r in RANKS),
      names=names,
      logit_scale=float(teacher["logit_scale"]),
      teacher=teacher)


@dataclasses.dataclass
class DistillData:
  """A built dataset opened for training: builder, label bank, and the widths read from it."""
  dataset_dir: str
  builder: tfds.core.DatasetBuilder
  bank: LabelBankArrays
  embed_dim: int
  topk: int

  def num_examples(self, split: str) -> int:
    return int(self.builder.info.splits[split].num_examples)


def open_dataset(data_dir: str, data_config) -> DistillData:
  """Opens the dataset and checks that features, label bank and teacher agree."""
  dataset_dir = find_dataset_dir(data_dir, data_config["name"], data_config.get("builder_config", ""))
  try:
    builder = tfds.builder_from_directory(dataset_dir)
  except Exception as e:  # TFDS raises several types for a broken directory
    raise DataError(f"{dataset_dir}: not a readable TFDS dataset ({type(e).__name__}: {e})") from e
  features = builder.info.features
  for key in ("image", "teacher_embedding", "topk_species_indices", "topk_species_logits") + RANKS:
    if key not in features:
      raise DataError(f"{dataset_dir}: feature {key!r} missing; is this {DATASET_NAME}?")
  embed_dim = int(features["teacher_embedding"].shape[-1])
  topk = int(features["topk_species_indices"].shape[-1])
  bank = load_label_bank(dataset_dir)
  if bank.embed_dim != embed_dim:
    raise DataError(f"{dataset_dir}: teacher_embedding has width {embed_dim} but the label bank "
                    f"has {bank.embed_dim}")
  for r, n in zip(RANKS, bank.rank_sizes):
    if features[r].num_classes != n:
      raise DataError(f"{dataset_dir}: feature {r} has {features[r].num_classes} classes, label "
                      f"bank has {n} rows")
  for split in (data_config["train_split"], data_config["eval_split"]):
    if split not in builder.info.splits:
      raise DataError(f"{dataset_dir}: no split {split!r}; splits: {list(builder.info.splits)}")
  return DistillData(dataset_dir, builder, bank, embed_dim, topk)


def _prepare(resolution: int):
  def fn(example):
    image = tf.io.decode_image(example["image"], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return {
        "image": squash_resize(image, resolution),
        "teacher_embedding": tf.cast(example["teacher_embedding"], tf.float32),
        "topk_species_indices": tf.cast(example["topk_species_indices"], tf.int32),
        "topk_species_logits": tf.cast(example["topk_species_logits"], tf.float32),
        "labels": tf.stack([tf.cast(example[r], tf.int32) for r in RANKS]),
    }
  return fn


def make_dataset(data: DistillData, split: str, resolution: int, batch_size: int, *,
                 training: bool, seed: int = 0, shuffle_buffer: int = 1024, skip_records: int = 0,
                 max_examples: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
  """Batches of {image float32 [B,R,R,3] 0..255, teacher_embedding float32 [B,D],
  topk_species_indices int32 [B,K], topk_species_logits float32 [B,K], labels int32 [B,7]}.

  training: repeat forever, shuffle (seeded), drop the remainder, and first skip `skip_records`
  shuffled records (a resumed run passes what the finished steps consumed). batch_size is per
  replica; input_context shards the files between input pipelines (multi-worker).
  """
  pipelines = input_context.num_input_pipelines if input_context else 1
  # Multi-worker: each input pipeline reads its own files; a split with fewer files than
  # pipelines (small data) is sharded by record instead.
  by_file = pipelines > 1 and data.builder.info.splits[split].num_shards >= pipelines
  read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=4,
                                input_context=input_context if by_file else None)
  ds = data.builder.as_dataset(split=split, shuffle_files=training, read_config=read_config,
                               decoders={"image": tfds.decode.SkipDecoding()})
  if pipelines > 1 and not by_file:
    ds = ds.shard(pipelines, input_context.input_pipeline_id)
  ds = ds.map(lambda ex: {k: ex[k] for k in ("image", "teacher_embedding",
                                               "topk_species_indices", "topk_species_logits")
                          + RANKS})
  if max_examples:
    ds = ds.take(max_examples)
  if training:
    ds = ds.repeat().shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if skip_records:
      ds = ds.skip(skip_records)
  ds = ds.map(_prepare(resolution), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=training)
  options = tf.data.Options()
  options.deterministic = True
  if input_context is None:
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def write_json_atomic(path: str, obj) -> None:
  """json.dump to path via tmp + rename, so a reader never sees half a file."""
  tmp = path + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)
