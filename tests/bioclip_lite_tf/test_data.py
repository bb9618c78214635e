"""The input pipeline on a real built tree_of_life_distill (made by the tests, D=24)."""
import json
import os

import numpy as np
import tensorflow_datasets as tfds
import pytest

from formats.errors import FormatError
from formats.ranks import RANKS
from formats.taxonomy import species_ancestors
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf.testing import synthetic
from bioclip_lite_tf.config import ConfigDict
from bioclip_lite_tf.keras import tf

DATA_CONFIG = ConfigDict(name="tree_of_life_distill", builder_config="", train_split="train",
                         eval_split="validation", shuffle_buffer=32, seed=0, max_eval_examples=0)


@pytest.fixture(scope="module")
def data_dir():
  return synthetic.cached_dataset(num_photos=96, embed_dim=24, image_size=40)


def test_open_reads_widths_and_label_bank_from_the_dataset(data_dir):
  data = data_lib.open_dataset(data_dir, DATA_CONFIG)
  assert data.embed_dim == 24 and data.topk == 5
  bank = data.bank
  assert bank.species_text_embeddings.shape == (len(synthetic.SYNTHETIC_TAXA), 24)
  # ancestors follow the parent links of the TSV tables, rank by rank
  names = bank.names
  for s, species in enumerate(names["species"]):
    for r, rank in enumerate(RANKS):
      assert species.startswith(names[rank][bank.ancestors[r, s]])
  # the version directory itself works as --data_dir too
  assert data_lib.open_dataset(data.dataset_dir, DATA_CONFIG).dataset_dir == data.dataset_dir


def test_batches_have_the_documented_shapes_and_teacher_geometry(data_dir):
  data = data_lib.open_dataset(data_dir, DATA_CONFIG)
  ds = data_lib.make_dataset(data, "validation", 32, 4, training=False)
  batch = next(iter(ds))
  assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == tf.float32
  assert batch["teacher_embedding"].shape == (4, 24)
  assert batch["topk_species_indices"].dtype == tf.int32
  assert batch["labels"].shape == (4, 7)
  # The student sees the teacher's geometry: the same photo through the teacher's own path
  # (teacher_cache.teachers.decode_and_resize: PIL decode, whole photo squashed, PIL bicubic,
  # uint8) gives the same pixels, to within PIL's uint8 rounding and its fixed-point kernel:
  # mean |diff| <= 0.5 of a level, max <= 16 levels (measured on noise: mean 0.26..0.37,
  # max 13 where PIL clamps an upsampling overshoot between its two passes).
  from teacher_cache.teachers import decode_and_resize
  raw = next(iter(data.builder.as_dataset(split="validation",
                                          decoders={"image": tfds.decode.SkipDecoding()})))
  teacher = decode_and_resize(raw["image"].numpy(), 32).astype(np.float64)
  diff = np.abs(batch["image"][0].numpy() - teacher)
  assert diff.mean() <= 0.5 and diff.max() <= 16.0, (diff.mean(), diff.max())
  assert float(tf.reduce_max(batch["image"])) <= 255.0


def _stream(data, skip_records, n):
  ds = data_lib.make_dataset(data, "train", 32, 4, training=True, seed=3, shuffle_buffer=16,
                             skip_records=skip_records)
  return [b["teacher_embedding"].numpy() for _, b in zip(range(n), ds)]


def test_resumed_stream_continues_where_the_killed_one_stopped(data_dir):
  data = data_lib.open_dataset(data_dir, DATA_CONFIG)
  full = _stream(data, 0, 30)          # 30 batches of 4 > one epoch of train: repeats too
  resumed = _stream(data, 7 * 4, 23)   # a run killed after step 7
  for a, b in zip(full[7:], resumed):
    np.testing.assert_array_equal(a, b)


def test_missing_or_wrong_data_dir_is_a_data_error(tmp_path):
  with pytest.raises(data_lib.DataError, match="--data_dir is required"):
    data_lib.find_dataset_dir("")
  with pytest.raises(data_lib.DataError, match="does not exist"):
    data_lib.find_dataset_dir(str(tmp_path / "nope"))
  with pytest.raises(data_lib.DataError, match="no built tree_of_life_distill"):
    data_lib.find_dataset_dir(str(tmp_path))


def test_ancestors_reject_a_broken_tree():
  parents = {r: np.zeros(1, np.int64) for r in RANKS}
  parents["kingdom"] = np.array([-1])
  parents["genus"] = np.array([-1])
  with pytest.raises(FormatError, match="genus"):
    species_ancestors(parents)


def test_training_label_bank_matches_the_datasets_own(data_dir):
  """The arrays training uses are the bank the TFDS dataset carries (tfds_treeoflife's view)."""
  from tfds_treeoflife import load_label_bank as dataset_label_bank
  dataset_dir = data_lib.find_dataset_dir(data_dir)
  theirs = dataset_label_bank(dataset_dir)
  bank = data_lib.load_label_bank(dataset_dir)
  assert {r: theirs.ranks[r].names for r in RANKS} == bank.names
  np.testing.assert_array_equal(theirs.ranks["species"].text_embeddings,
                                bank.species_text_embeddings)
  np.testing.assert_array_equal(
      species_ancestors({r: theirs.ranks[r].parents for r in RANKS}), bank.ancestors)
  assert theirs.logit_scale == bank.logit_scale


def test_training_decode_is_pils_decode():
  """The student's photos decode to the teacher's pixels (PIL), JPEG and PNG alike."""
  import io
  from PIL import Image
  from bioclip_lite_tf.data.decode import decode_photo
  rng = np.random.default_rng(3)
  for (h, w), quality, subsampling in [((224, 224), 90, 2), ((97, 131), 75, 0), ((300, 180), 95, 1)]:
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((w, h))
    pixels = np.clip(np.asarray(coarse, np.float32) + rng.normal(0, 20, (h, w, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="JPEG", quality=quality,
                                                  subsampling=subsampling)
    data = buf.getvalue()
    pil = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ours = decode_photo(tf.constant(data)).numpy()
    np.testing.assert_array_equal(ours, pil, err_msg=f"{h}x{w} q{quality} s{subsampling}")
    # The default decode does differ, so this test would notice a switch back.
    if (h, w) == (224, 224):
      fast = tf.io.decode_image(data, channels=3).numpy()
      assert np.abs(fast.astype(int) - pil).max() > 0
  buf = io.BytesIO()
  Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
  np.testing.assert_array_equal(decode_photo(tf.constant(buf.getvalue())).numpy(),
                                pixels.astype(np.uint8))
