"""The input pipeline on a real built tree_of_life_distill (made by the tests, D=24)."""
import io
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
from bioclip_lite_tf.model.layers import squash_resize

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


def _raw_train_records(data):
  raw = data.builder.as_dataset(split="train", shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
  return [{k: v.numpy() for k, v in ex.items()} for ex in raw]


def test_student_view_is_pixel_for_pixel_the_crop_the_teacher_embedded(data_dir):
  # window 1 and one shard: no permutation, so training element i is record i of the shard.
  # The reference is what the teacher does: PIL decode, PIL crop of the stored box, PIL
  # left-right flip (and formats.teacher_cache.apply_view, the shared numpy reference).
  from PIL import Image
  from formats import teacher_cache as cache_format

  data = data_lib.open_dataset(data_dir, DATA_CONFIG)
  assert data.num_views == 2 and data.builder.info.splits["train"].num_shards == 1
  raw = _raw_train_records(data)
  n = len(raw)
  ds = data_lib.make_dataset(data, "train", 24, 1, training=True, seed=5, shuffle_buffer=1)
  seen_flipped = seen_crop = seen_whole = 0
  views_by_epoch = []
  for i, batch in enumerate(ds.take(2 * n)):
    ex = raw[i % n]
    v = int(batch["view"][0])
    if i < n:
      views_by_epoch.append(v)
    elif v != views_by_epoch[i - n]:
      views_by_epoch.append("changed")
    box, flip = ex["view_boxes"][v], int(ex["view_flips"][v])
    y0, x0, y1, x1 = (int(b) for b in box)
    with Image.open(io.BytesIO(ex["image"])) as im:
      pil = im.convert("RGB").crop((x0, y0, x1, y1))
      if flip:
        pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
      teacher_pixels = np.asarray(pil)
    decoded = np.asarray(Image.open(io.BytesIO(ex["image"])).convert("RGB"))
    np.testing.assert_array_equal(cache_format.apply_view(decoded, box, flip), teacher_pixels)
    # The student's crop itself (before its resize), then the element it trains on.
    student_pixels = data_lib.apply_view(data_lib.decode_photo(tf.constant(ex["image"])),
                                         tf.constant(box), tf.constant(flip)).numpy()
    np.testing.assert_array_equal(student_pixels, teacher_pixels)
    np.testing.assert_array_equal(batch["image"][0].numpy(),
                                  squash_resize(tf.constant(teacher_pixels), 24).numpy())
    # That view's teacher targets.
    np.testing.assert_array_equal(batch["teacher_embedding"][0].numpy(),
                                  ex["teacher_embedding"][v])
    np.testing.assert_array_equal(batch["topk_species_indices"][0].numpy(),
                                  ex["topk_species_indices"][v])
    np.testing.assert_array_equal(batch["teacher_logsumexp"][0].numpy(),
                                  ex["teacher_logsumexp"][v])
    seen_whole += v == 0
    seen_crop += v > 0 and (y1 - y0, x1 - x0) != decoded.shape[:2]
    seen_flipped += flip
  assert seen_whole and seen_crop and seen_flipped, (seen_whole, seen_crop, seen_flipped)
  assert "changed" in views_by_epoch   # epoch 1 draws other views than epoch 0
  # Evaluation: always view 0, the whole photo.
  for batch in data_lib.make_dataset(data, "validation", 24, 8, training=False):
    assert np.all(batch["view"].numpy() == 0)

