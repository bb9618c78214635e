"""Input pipeline: the built TFDS dataset `tree_of_life_distill` -> batches for the student.

Reads DATA_DIR/tree_of_life_distill/<config>/<version>/ with tfds.builder_from_directory (no
builder code needed) and the label bank saved beside it (read with formats.label_bank).
Photos are decoded as PIL decodes them (data.decode) and squash-resized in tf.data by bioclip_lite_tf.model.layers.squash_resize, the
same function the exported model's preprocessing uses.

Resume: the training stream is a deterministic function of (seed, step). Records are read with
deterministic file order and a seeded shuffle of *encoded* records, and a resumed run skips the
records the finished steps consumed before any decoding, so the skip costs reading, not decoding.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow_datasets as tfds

from formats.ranks import RANKS
from bioclip_lite_tf.data.decode import decode_photo
from bioclip_lite_tf.data.discovery import DATASET_NAME, DataError, find_dataset_dir
from bioclip_lite_tf.data.label_bank import LabelBankArrays, load_label_bank
from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.model.layers import squash_resize


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
  dataset_dir = find_dataset_dir(data_dir, data_config.get("builder_config", ""),
                                 data_config["name"])
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


def view0(x):
  """SHIM (teacher cache format 2, dataset 2.0.0): the view-0 (whole photo) target of an
  example's [V, ...] teacher feature; a pre-2.0.0 feature (no view axis) passes unchanged.
  Until the training side reads the view axis, training and evaluation use view 0 only."""
  return x[0] if x.shape.rank == 2 else x


def _prepare(resolution: int):
  def fn(example):
    return {
        "image": squash_resize(decode_photo(example["image"]), resolution),
        "teacher_embedding": tf.cast(view0(example["teacher_embedding"]), tf.float32),
        "topk_species_indices": tf.cast(view0(example["topk_species_indices"]), tf.int32),
        "topk_species_logits": tf.cast(view0(example["topk_species_logits"]), tf.float32),
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
