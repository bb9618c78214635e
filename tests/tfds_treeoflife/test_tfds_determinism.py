"""Split assignment and content do not depend on shard layout; rebuilding gives the same bytes."""
import filecmp
import hashlib
import io
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from tfds_treeoflife import load_label_bank  # noqa: E402
import pytest  # noqa: E402

from tfds_treeoflife.build import BuildConflictError, build  # noqa: E402
from tfds_treeoflife.make_dummy_data import DUMMY_TAXA, write_cache  # noqa: E402
from tfds_treeoflife.splits import SplitPlan, holdout_species, unit_hash  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from formats.ranks import RANKS
from formats.teacher_cache import VIEW_ARRAYS


def _examples(builder, split):
  """All examples of a split in stored order, image left as its stored (encoded) bytes."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  return list(tfds.as_numpy(ds))


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _read_cache_rows(cache_dir):
  """{key: (image bytes, taxon_index row, {view array: row})} from the npz parts."""
  rows = {}
  for root, _, files in os.walk(os.path.join(cache_dir, "rows")):
    for name in sorted(files):
      if name.endswith(".npz"):
        with np.load(os.path.join(root, name)) as z:
          off = z["image_offsets"]
          for i, key in enumerate(z["key"]):
            rows[str(key)] = (z["image_bytes"][off[i]:off[i + 1]].tobytes(), z["taxon_index"][i],
                              {a: z[a][i] for a in VIEW_ARRAYS})
  return rows


def test_split_and_content_independent_of_shard_layout(tmp_path):
  # The same 60 photos, cut into 2x2 parts and into 5x1 parts: another shard order.
  a = write_cache(str(tmp_path / "a"), num_photos=60, num_shards=2, parts_per_shard=2)
  b = write_cache(str(tmp_path / "b"), num_photos=60, num_shards=5, parts_per_shard=1)
  ba = build(a, str(tmp_path / "da"), config="species_holdout")
  bb = build(b, str(tmp_path / "db"), config="species_holdout")
  for split in ("train", "validation", "holdout"):
    ea, eb = _examples(ba, split), _examples(bb, split)
    assert ea, f"split {split} is empty; the test would prove nothing"
    _assert_same(ea, eb)


def test_split_rule_is_the_documented_hash(tmp_path):
  cache = write_cache(str(tmp_path / "c"), num_photos=80)
  builder = build(cache, str(tmp_path / "d"), config="species_holdout")
  held = set(builder.info.metadata["holdout_species"])
  assert held, "species_holdout must hold out at least one species"
  seen = set()
  for split in ("train", "validation", "holdout"):
    for ex in _examples(builder, split):
      key = ex["key"].decode()
      seen.add(key)
      h = int.from_bytes(hashlib.sha1(f"validation:{key}".encode()).digest()[:8], "big") / 2**64
      expected = ("holdout" if ex["species"] in held
                  else "validation" if h < 0.1 else "train")
      assert split == expected, (key, split, expected)
  assert len(seen) == 80  # every photo lands in exactly one split


def test_rebuild_gives_identical_files(tmp_path, dummy_cache):
  b1 = build(dummy_cache, str(tmp_path / "d1"))
  b2 = build(dummy_cache, str(tmp_path / "d2"))
  files = sorted(f for f in os.listdir(b1.data_dir) if "tfrecord" in f or f.endswith(".txt"))
  assert any("tfrecord" in f for f in files)
  match, mismatch, errors = filecmp.cmpfiles(b1.data_dir, b2.data_dir, files, shallow=False)
  assert not mismatch and not errors, (mismatch, errors)
  # A second build into the same data_dir reuses the finished dataset untouched.
  mtimes = {f: os.stat(os.path.join(b1.data_dir, f)).st_mtime_ns for f in files}
  b3 = build(dummy_cache, str(tmp_path / "d1"))
  assert {f: os.stat(os.path.join(b3.data_dir, f)).st_mtime_ns for f in files} == mtimes
  # --overwrite really rebuilds, to the same bytes.
  b4 = build(dummy_cache, str(tmp_path / "d1"), overwrite=True)
  assert {f: os.stat(os.path.join(b4.data_dir, f)).st_mtime_ns for f in files} != mtimes
  _, mismatch, errors = filecmp.cmpfiles(b2.data_dir, b4.data_dir, files, shallow=False)
  assert not mismatch and not errors, (mismatch, errors)


def test_rebuild_from_another_cache_is_refused_unless_overwrite(tmp_path, dummy_cache):
  build(dummy_cache, str(tmp_path / "d"))
  # Another cache with another taxonomy (so other ClassLabel names too).
  other = write_cache(str(tmp_path / "other"), num_photos=50, seed=3, taxa=DUMMY_TAXA[:6])
  with pytest.raises(BuildConflictError, match="was built from another cache"):
    build(other, str(tmp_path / "d"))
  b = build(other, str(tmp_path / "d"), overwrite=True)
  assert sum(s.num_examples for s in b.info.splits.values()) == 50
  assert len(b.info.features["species"].names) == 6


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40), st.floats(0.0, 1.0))
def test_split_plan_properties(key, fraction):
  plan = SplitPlan(validation_fraction=fraction)
  split = plan.split_of(key, species_row=0)
  assert split == plan.split_of(key, species_row=0)  # pure function of the key
  assert 0.0 <= unit_hash(key, "validation") < 1.0
  assert split == ("validation" if unit_hash(key, "validation") < fraction else "train")
  held = SplitPlan(validation_fraction=fraction, holdout_species=frozenset({0}))
  assert held.split_of(key, 0) == "holdout" and held.split_of(key, 1) == split


def test_holdout_species_rule():
  names = [f"Genus{i} species{i}" for i in range(2000)]
  held = holdout_species(names, 0.05)
  assert 60 < len(held) < 140  # ~5% of 2000
  assert set(held) == {i for i, n in enumerate(names) if unit_hash(n, "holdout") < 0.05}
  assert len(holdout_species(names[:3], 1e-9)) == 1  # at least one species
  assert holdout_species(names, 0.0) == ()


def test_examples_match_cache_and_label_bank(tmp_path, dummy_cache):
  builder = build(dummy_cache, str(tmp_path / "d"))
  cache = _read_cache_rows(dummy_cache)
  bank = load_label_bank(builder.info.data_dir)
  assert bank.embed_dim == 16 and bank.logit_scale == 100.0
  # The same bank from a builder opened without the registered class.
  read_only = tfds.builder_from_directory(builder.data_dir)
  assert load_label_bank(read_only.info.data_dir).ranks["genus"].names == bank.ranks["genus"].names
  for rank in RANKS:
    # ClassLabel int == label bank row.
    assert builder.info.features[rank].names == bank.ranks[rank].names
    np.testing.assert_array_equal(
        bank.ranks[rank].text_embeddings,
        np.load(os.path.join(dummy_cache, "label_bank", f"{rank}.npy")))
  n = 0
  for split in ("train", "validation"):
    for ex in _examples(builder, split):
      image, taxa, views = cache[ex["key"].decode()]
      if image[:3] == b"\xff\xd8\xff":
        assert ex["image"] == image  # original JPEG bytes, not re-encoded
      else:  # PNG source: transcoded once to JPEG, same picture
        assert ex["image"][:3] == b"\xff\xd8\xff"
        src = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"), np.float32)
        out = np.asarray(Image.open(io.BytesIO(ex["image"])), np.float32)
        assert src.shape == out.shape and np.abs(src - out).mean() < 6
      np.testing.assert_array_equal([ex[r] for r in RANKS], taxa)
      for a in VIEW_ARRAYS:  # every per-view array, unchanged, dtype included
        assert ex[a].dtype == views[a].dtype, a
        np.testing.assert_array_equal(ex[a], views[a], err_msg=a)
      decoded = Image.open(io.BytesIO(ex["image"]))
      assert ex["view_boxes"].shape == (2, 4)
      np.testing.assert_array_equal(ex["view_boxes"][0], [0, 0, decoded.height, decoded.width])
      assert np.all(ex["view_boxes"][:, 2] <= decoded.height)
      assert np.all(ex["view_boxes"][:, 3] <= decoded.width)
      # The saved bank reproduces the teacher's logits and the normalizer over all species
      # (brute force): zero-shot and the K+1 "other" bin need nothing else.
      for v in range(2):
        logits = (bank.logit_scale * bank.ranks["species"].text_embeddings.astype(np.float64)
                  @ ex["teacher_embedding"][v])
        np.testing.assert_allclose(logits[ex["topk_species_indices"][v]],
                                   ex["topk_species_logits"][v], rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(ex["topk_species_indices"][v],
                                      np.argsort(-logits, kind="stable")[:5])
        top = logits.max()
        np.testing.assert_allclose(ex["teacher_logsumexp"][v],
                                   top + np.log(np.exp(logits - top).sum()), rtol=1e-5)
      n += 1
  assert n == 40
