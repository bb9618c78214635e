"""Photos and labels of a built dataset split in file order, for export calibration and
evaluation (training reads through data.pipeline instead). Photos are squashed by the
function training uses (model.layers.squash_resize).
"""
from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from formats.ranks import RANKS
from bioclip_lite_tf.data.decode import decode_photo
from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.model.layers import squash_resize


def load_split(dataset_dir: str, split: str) -> tf.data.Dataset:
  """The split as a tf.data.Dataset of feature dicts, in file order (deterministic); `image`
  is decoded by data.decode.decode_photo (as PIL decodes it), uint8 [H, W, 3]."""
  import tensorflow_datasets as tfds  # heavy; only the readers need it

  builder = tfds.builder_from_directory(dataset_dir)
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  return ds.map(lambda ex: dict(ex, image=decode_photo(ex["image"])))


def squash(images: tf.Tensor, resolution: int) -> tf.Tensor:
  """uint8 [N, H, W, 3] -> float32 [N, R, R, 3] 0..255: the student's own squash resize."""
  return squash_resize(images, resolution)


def _view0(x):
  return x[0] if x.shape.rank == 2 else x


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
              # View 0 (the whole photo, unflipped) of the [V, ...] teacher features, as
              # evaluation always uses (training picks views in data.pipeline).
              "topk_species_indices": tf.cast(_view0(ex["topk_species_indices"]), tf.int32),
              "topk_species_logits": tf.cast(_view0(ex["topk_species_logits"]), tf.float32),
              "teacher_embedding": tf.cast(_view0(ex["teacher_embedding"]), tf.float32),
              "key": ex["key"]}
    return photo, labels

  ds = ds.map(prepare, num_parallel_calls=2).batch(batch_size).prefetch(1)
  for photos, labels in ds.as_numpy_iterator():
    yield photos, labels
