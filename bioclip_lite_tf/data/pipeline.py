"""Input pipeline: the built TFDS dataset `tree_of_life_distill` -> batches for the student.

Reads DATA_DIR/tree_of_life_distill/<config>/<version>/ with tfds.builder_from_directory (no
builder code needed) and the label bank saved beside it (read with formats.label_bank).
Photos are decoded as PIL decodes them (data.decode), cut to the example's teacher view (teacher
cache format 2: crop box + left-right flip, exactly the pixels the teacher embedded; training
picks one view per example per epoch, evaluation view 0 = the whole photo) and squash-resized in
tf.data by bioclip_lite_tf.model.layers.squash_resize, the same function the exported model's
preprocessing uses.

Resume in O(1): the training stream is a deterministic, *seekable* function of (seed, record
position). Epoch e reads the split's TFRecord shards whole, one after the other, in a seeded
permutation of the shard list (seed, e); its records are cut into windows of
`shuffle_buffer` encoded records and each window is permuted (stateless, seed (seed, e, window)).
A run resumed at position P computes the epoch, the window and the shard holding the window's
first record from the shard lengths TFDS records, opens that shard, skips to the window start
(at most one shard of encoded records) and then skips at most one window: the cost is bounded by
one shard plus one window, whatever the step. (TFDS builds shuffle examples across shards, so
shard order + window permutation is a full-strength shuffle at the window's scale.)
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

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
  num_views: int = 1

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
  for key in ("image", "key", "teacher_embedding", "topk_species_indices",
              "topk_species_logits") + RANKS:
    if key not in features:
      raise DataError(f"{dataset_dir}: feature {key!r} missing; is this {DATASET_NAME}?")
  missing = [k for k in VIEW_FEATURES if k not in features]
  if missing or len(features["teacher_embedding"].shape) != 2:
    raise DataError(
        f"{dataset_dir}: built from a teacher cache before format 2 (no view axis; missing "
        f"{missing or 'the [V, D] teacher_embedding'}). Rebuild the teacher cache with this "
        "version of teacher_cache, then the TFDS dataset (version 2.0.0).")
  embed_dim = int(features["teacher_embedding"].shape[-1])
  topk = int(features["topk_species_indices"].shape[-1])
  num_views = int(features["teacher_embedding"].shape[0])
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
  return DistillData(dataset_dir, builder, bank, embed_dim, topk, num_views)


VIEW_FEATURES = ("teacher_embedding", "topk_species_indices", "topk_species_logits",
                 "teacher_logsumexp", "view_boxes", "view_flips")
_TARGET_DTYPES = {"teacher_embedding": tf.float32, "topk_species_indices": tf.int32,
                  "topk_species_logits": tf.float32, "teacher_logsumexp": tf.float32}


def choose_view(key: tf.Tensor, epoch: tf.Tensor, seed: int, num_views: int) -> tf.Tensor:
  """int32 scalar in [0, V): the view an example is trained on in `epoch`, a stateless function
  of (seed, epoch, the example's key), so a resumed run picks the same views and each epoch
  draws afresh."""
  bucket = tf.strings.to_hash_bucket_fast(key, 2 ** 62)
  return tf.random.stateless_uniform([], seed=tf.stack([_seed_pair(seed, epoch)[0], bucket]),
                                     minval=0, maxval=num_views, dtype=tf.int32)


def apply_view(photo: tf.Tensor, box: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] decoded photo -> the view's pixels: the box (y0, x0, y1, x1), end-exclusive,
  then mirrored left-right if flip (teacher cache format 2: what the teacher embedded, before
  its own resize). Pixel for pixel formats.teacher_cache.apply_view."""
  box = tf.cast(box, tf.int32)
  crop = photo[box[0]:box[2], box[1]:box[3]]
  return tf.cond(tf.cast(flip, tf.bool), lambda: tf.reverse(crop, axis=[1]), lambda: crop)


def _prepare(resolution: int, training: bool, seed: int, num_views: int):
  """Example (one record, [V, ...] teacher features) -> the training/eval element. Training:
  one view per example per epoch (choose_view), its crop + flip applied to the decoded photo
  before the student's resize, and THAT view's teacher targets. Evaluation: view 0 (the whole
  photo, unflipped)."""
  def fn(example):
    if training:
      view = choose_view(example["key"], example["_epoch"], seed, num_views)
    else:
      view = tf.constant(0, tf.int32)
    photo = apply_view(decode_photo(example["image"]), example["view_boxes"][view],
                       example["view_flips"][view])
    out = {"image": squash_resize(photo, resolution), "view": view,
           "labels": tf.stack([tf.cast(example[r], tf.int32) for r in RANKS])}
    for name, dtype in _TARGET_DTYPES.items():
      out[name] = tf.cast(example[name][view], dtype)
    return out
  return fn


_TRAIN_KEYS = ("image", "key") + VIEW_FEATURES


def _shard_files(data: DistillData, split: str) -> List[Tuple[str, int]]:
  """(path, number of records) of every shard of a split, in TFDS's file order."""
  info = data.builder.info.splits[split]
  paths = [str(p) for p in info.filepaths]
  lengths = [int(n) for n in info.shard_lengths]
  if len(paths) != len(lengths):
    raise DataError(f"{data.dataset_dir}: split {split} lists {len(paths)} files but "
                    f"{len(lengths)} shard lengths")
  return list(zip(paths, lengths))


def _seed_pair(*parts) -> tf.Tensor:
  """A stateless-RNG seed [2] int64 from (seed, epoch[, window])."""
  parts = [tf.cast(p, tf.int64) for p in parts]
  first = parts[0] * 1_000_003 + parts[1]
  second = parts[2] if len(parts) > 2 else tf.constant(0, tf.int64)
  return tf.stack([first, second])


def seekable_record_stream(files: List[Tuple[str, int]], seed: int, window: int,
                           start: int) -> tf.data.Dataset:
  """The infinite training stream of (epoch int64, serialized record) from `start` on (module
  docstring).

  Equal, element for element, to the stream from 0 with its first `start` records dropped;
  costs at most one shard plus one window of reading to reach `start`.
  """
  if not files:
    raise DataError("no training shards to read")
  paths = tf.constant([p for p, _ in files])
  lengths = tf.constant([n for _, n in files], tf.int64)
  per_epoch = int(sum(n for _, n in files))
  if per_epoch == 0:
    raise DataError(f"training shards {[p for p, _ in files]} hold no records")
  window = max(1, min(int(window), per_epoch))
  first_epoch, in_epoch = divmod(int(start), per_epoch)
  first_window, in_window = divmod(in_epoch, window)

  def epoch_records(epoch):
    epoch_start = tf.where(epoch == first_epoch, tf.constant(first_window * window, tf.int64),
                           tf.constant(0, tf.int64))
    order = tf.random.experimental.stateless_shuffle(
        tf.range(len(files), dtype=tf.int64), seed=_seed_pair(seed, epoch))
    ends = tf.cumsum(tf.gather(lengths, order))
    first_file = tf.searchsorted(ends, [epoch_start], side="right")[0]
    offset = epoch_start - (ends[first_file] - tf.gather(lengths, order)[first_file])
    files_ds = tf.data.Dataset.from_tensor_slices(tf.gather(paths, order[first_file:]))

    def read(i, path):
      return tf.data.TFRecordDataset(path).skip(tf.where(i == 0, offset, 0))

    records = files_ds.enumerate().flat_map(read)
    windows = records.batch(window).enumerate(
        start=tf.where(epoch == first_epoch, tf.constant(first_window, tf.int64),
                       tf.constant(0, tf.int64)))

    def permute(w, batch):
      return tf.random.experimental.stateless_shuffle(batch, seed=_seed_pair(seed, epoch, w))

    return windows.map(permute).unbatch().map(lambda record: (epoch, record))

  ds = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch_records)
  return ds.skip(in_window) if in_window else ds


def _train_records(data: DistillData, split: str, seed: int, window: int, skip_records: int,
                   input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
  """Deserialized training examples (image still encoded), this input pipeline's share."""
  files = _shard_files(data, split)
  pipelines = input_context.num_input_pipelines if input_context else 1
  if pipelines > 1 and len(files) >= pipelines:
    files = files[input_context.input_pipeline_id::pipelines]
    ds = seekable_record_stream(files, seed, window, skip_records)
  elif pipelines > 1:
    # Fewer shards than pipelines: every pipeline reads the same stream and keeps every
    # pipelines-th record, so after k records each, the shared stream is at k * pipelines.
    ds = seekable_record_stream(files, seed, window, skip_records * pipelines)
    ds = ds.shard(pipelines, input_context.input_pipeline_id)
  else:
    ds = seekable_record_stream(files, seed, window, skip_records)
  features = data.builder.info.features
  decoders = {"image": tfds.decode.SkipDecoding()}

  def parse(epoch, record):
    return dict(features.deserialize_example(record, decoders=decoders), _epoch=epoch)

  return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(data: DistillData, split: str, resolution: int, batch_size: int, *,
                 training: bool, seed: int = 0, shuffle_buffer: int = 1024, skip_records: int = 0,
                 max_examples: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
  """Batches of {image float32 [B,R,R,3] 0..255, teacher_embedding float32 [B,D],
  topk_species_indices int32 [B,K], topk_species_logits float32 [B,K], teacher_logsumexp
  float32 [B], view int32 [B], labels int32 [B,7]}: the image is the chosen view (training:
  one per example per epoch, seeded; evaluation: view 0) and the teacher fields are that view's.

  training: the seekable, seeded, windowed-shuffle stream (module docstring), forever, starting
  at record `skip_records` of this pipeline (a resumed run passes what the finished steps
  consumed; reaching it costs at most one shard + one window of reading, not `skip_records`);
  drop the remainder. shuffle_buffer is the window size in encoded records. Evaluation: file
  order, `max_examples` first. batch_size is per replica; input_context shards the files
  between input pipelines (multi-worker; by record when a split has fewer files than them).
  """
  if training:
    ds = _train_records(data, split, seed, shuffle_buffer, skip_records, input_context)
  else:
    pipelines = input_context.num_input_pipelines if input_context else 1
    ds = data.builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={"image": tfds.decode.SkipDecoding()})
    if pipelines > 1:
      ds = ds.shard(pipelines, input_context.input_pipeline_id)
  keys = _TRAIN_KEYS + RANKS + (("_epoch",) if training else ())
  ds = ds.map(lambda ex: {k: ex[k] for k in keys})
  if max_examples and not training:
    ds = ds.take(max_examples)
  ds = ds.map(_prepare(resolution, training, seed, data.num_views), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=training)
  options = tf.data.Options()
  options.deterministic = True
  if input_context is None:
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
