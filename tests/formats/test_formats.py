"""The formats package: each format's writer and reader agree, bad files are refused by type
with the file named, and the package imports neither TensorFlow nor torch."""
import json
import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from formats import atomic, label_bank, teacher_cache
from formats.errors import FormatError, FormatVersionError
from formats.ranks import RANKS
from formats.taxonomy import Taxonomy, species_ancestors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPECIES = [
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
     "Common Blackbird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "migratorius"), ""),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"),
     "Dog Rose"),
]


def _unit(rng, n, d):
  x = rng.normal(size=(n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bank(tmp_path, d=6, meta=None):
  tax = Taxonomy.from_rows(SPECIES)
  rng = np.random.default_rng(0)
  embeddings = {t.rank: _unit(rng, len(t), d) for t in tax.tables}
  path = str(tmp_path / "label_bank")
  label_bank.write_label_bank(path, tax.tables, d, label_bank.in_memory_rows(embeddings), meta)
  return tax, embeddings, path


def test_label_bank_round_trip(tmp_path):
  tax, embeddings, path = _bank(tmp_path, meta={"teacher": {"id": "t"}})
  bank = label_bank.read_label_bank(path, require_meta=True)
  assert bank.embed_dim == 6 and bank.meta["format_version"] == label_bank.FORMAT_VERSION
  for written, read in zip(tax.tables, bank.tables):
    assert read.names == written.names and read.common_names == written.common_names
    assert read.parents.tolist() == written.parents.tolist()
    np.testing.assert_array_equal(bank.embeddings(read.rank), embeddings[read.rank])
  # Every species' ancestor at every rank is a prefix of its lineage name.
  anc = bank.species_ancestors()
  for s, name in enumerate(bank.tables[-1].names):
    for r in range(len(RANKS)):
      assert name.startswith(bank.tables[r].names[anc[r, s]])
  assert not [n for n in os.listdir(tmp_path) if atomic.TMP_MARK in n]


def test_label_bank_refusals_name_the_file(tmp_path):
  _, _, path = _bank(tmp_path, meta={})
  with pytest.raises(FormatError, match="embedding width 6 does not match"):
    label_bank.read_label_bank(path, embed_dim=8)
  meta_path = os.path.join(path, label_bank.META_FILE)
  with open(meta_path) as f:
    meta = json.load(f)
  atomic.write_json(meta_path, dict(meta, format_version=2))
  with pytest.raises(FormatVersionError, match=r"label_bank.json: format_version is 2.*teacher_cache"):
    label_bank.read_label_bank(path)
  atomic.write_json(meta_path, meta)
  genus = os.path.join(path, "genus.tsv")
  with open(genus) as f:
    lines = f.read().splitlines()
  lines[2] = lines[2].split("\t")[0] + "\t" + lines[1].split("\t")[1] + "\t" + "\t".join(
      lines[2].split("\t")[2:])
  with open(genus, "w") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(FormatError, match=r"genus.tsv: taxon name .* appears twice"):
    label_bank.read_label_bank(path)


def test_species_ancestors_refuses_an_orphan():
  parents = {r: np.zeros(1, np.int64) for r in RANKS}
  parents["genus"] = np.asarray([-1])
  with pytest.raises(FormatError, match="genus"):
    species_ancestors(parents)


def _part(n=3, d=4, k=2, v=2):
  rng = np.random.default_rng(1)
  images = [bytes([i]) * (i + 3) for i in range(n)]
  boxes = np.tile(np.asarray([0, 0, 10, 12], np.int32), (n, v, 1))
  boxes[:, 1:] = (1, 2, 6, 9)
  return {
      "key": np.asarray([f"k{i}" for i in range(n)]),
      "image_bytes": np.frombuffer(b"".join(images), np.uint8),
      "image_offsets": np.concatenate([[0], np.cumsum([len(b) for b in images])]).astype(np.int64),
      "taxon_index": np.zeros((n, 7), np.int32),
      "common_name": np.asarray([""] * n),
      "teacher_embedding": _unit(rng, n * v, d).reshape(n, v, d),
      "topk_species_indices": np.zeros((n, v, k), np.int32),
      "topk_species_logits": np.zeros((n, v, k), np.float32),
      "teacher_logsumexp": np.zeros((n, v), np.float32),
      "view_boxes": boxes,
      "view_flips": np.tile(np.asarray([0, 1], np.uint8), (n, 1)),
  }


def test_cache_part_round_trip_and_row_checks(tmp_path):
  path = str(tmp_path / "rows" / "shard-00000-of-00001" / teacher_cache.part_name(0))
  part = _part()
  teacher_cache.write_part(path, part)
  back = teacher_cache.read_part(path)
  for name, array in part.items():
    np.testing.assert_array_equal(back[name], array)
  assert teacher_cache.image_bytes_of(back, 2) == bytes([2]) * 5
  checker = teacher_cache.RowChecker(embed_dim=4, topk=2, rank_sizes=(1,) * 7,
                                     parents=tuple(np.zeros(1, np.int32) for _ in range(7)),
                                     num_views=2)
  assert checker.check(back, path) == 3
  one_view = dataclasses.replace(checker, num_views=1)
  with pytest.raises(FormatError, match=r"teacher_embedding must be float32 \[3, 1, 4\] "
                     r"\(manifest views.count=1"):
    one_view.check(back, path)
  flat = dict(back, teacher_embedding=back["teacher_embedding"][:, 0])
  with pytest.raises(FormatError, match=r"no view axis \(a format 1 part\); Rebuild the cache"):
    checker.check(flat, path)
  flipped0 = dict(back, view_flips=np.ones((3, 2), np.uint8))
  with pytest.raises(FormatError, match=r"view 0 must be the whole photo .*\(row 0"):
    checker.check(flipped0, path)
  back["key"] = np.asarray(["k0", "k1", "k0"])
  with pytest.raises(FormatError, match=r"part-000000.npz: two rows share the same sample key 'k0'"):
    checker.check(back, path)
  with open(path, "wb") as f:
    f.write(b"not a zip")
  with pytest.raises(FormatError, match="unreadable .npz"):
    teacher_cache.read_part(path)


def test_cache_manifest_version_refusal_says_what_to_do(tmp_path):
  with pytest.raises(ValueError, match="views count must be >= 1"):
    teacher_cache.write_manifest(str(tmp_path), {"topk": 2})  # a writer must state its views
  teacher_cache.write_manifest(str(tmp_path), {"topk": 2, "views": teacher_cache.views_config(2)})
  m = teacher_cache.read_manifest(str(tmp_path))
  assert m["format_version"] == 2
  assert teacher_cache.read_views(m, "m")["count"] == 2
  for old in (1, 7):
    atomic.write_json(str(tmp_path / "manifest.json"), {"format_version": old})
    with pytest.raises(FormatVersionError, match=f"format_version is {old}.*Rebuild the cache "
                       "with this version of teacher_cache.*--out_dir=NEW_DIR"):
      teacher_cache.read_manifest(str(tmp_path))
  (tmp_path / "manifest.json").write_text("{not json")
  with pytest.raises(FormatError, match="not valid JSON"):
    teacher_cache.read_manifest(str(tmp_path))


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_litter(tmp_path):
  path = str(tmp_path / "a.json")
  atomic.write_json(path, {"v": 1})

  def broken(f):
    f.write(b"{\"v\": 2")
    raise OSError("disk full")

  with pytest.raises(OSError, match="disk full"):
    atomic.write_with(path, broken)
  assert atomic.read_json(path) == {"v": 1}
  assert os.listdir(tmp_path) == ["a.json"]


def test_formats_imports_neither_tensorflow_nor_torch():
  code = ("import sys, formats, formats.label_bank, formats.teacher_cache, formats.taxonomy, "
          "formats.device_label_bank, formats.export_manifest, formats.atomic, formats.hashing\n"
          "print(sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'torch', 'tf_keras', 'jax')))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout.strip()
  assert out == "[]"


def test_sample_views_are_seeded_per_key_and_inside_the_photo():
  views = teacher_cache.views_config(5, seed=3, scale=(0.25, 0.9), ratio=(0.5, 2.0))
  areas, ratios, flips = [], [], []
  for i in range(300):
    h, w = 40 + (i * 7) % 200, 30 + (i * 13) % 300
    boxes, fl = teacher_cache.sample_views(f"key-{i}", h, w, views)
    again = teacher_cache.sample_views(f"key-{i}", h, w, views)
    np.testing.assert_array_equal(boxes, again[0])   # same key -> same views (any worker)
    np.testing.assert_array_equal(fl, again[1])
    assert boxes.dtype == np.int32 and boxes.shape == (5, 4) and fl.dtype == np.uint8
    assert tuple(boxes[0]) == (0, 0, h, w) and fl[0] == 0
    y0, x0, y1, x1 = boxes[1:].T
    assert np.all((0 <= y0) & (y0 < y1) & (y1 <= h) & (0 <= x0) & (x0 < x1) & (x1 <= w))
    areas.extend((y1 - y0) * (x1 - x0) / (h * w))
    ratios.extend((x1 - x0) / (y1 - y0))
    flips.extend(fl[1:])
  areas, ratios = np.asarray(areas), np.asarray(ratios)
  # Rounding to whole pixels moves area and ratio a little; the 10-try fallback is rare here.
  assert np.mean((areas > 0.22) & (areas < 0.95)) > 0.97
  assert np.mean((ratios > 0.45) & (ratios < 2.2)) > 0.97
  assert areas.std() > 0.1                                  # really random, not one box
  assert 0.4 < np.mean(flips) < 0.6
  other_seed = teacher_cache.views_config(5, seed=4, scale=(0.25, 0.9), ratio=(0.5, 2.0))
  assert not np.array_equal(teacher_cache.sample_views("key-1", 100, 100, views)[0],
                            teacher_cache.sample_views("key-1", 100, 100, other_seed)[0])
  assert not np.array_equal(teacher_cache.sample_views("key-1", 100, 100, views)[0],
                            teacher_cache.sample_views("key-2", 100, 100, views)[0])
  no_flip = teacher_cache.views_config(5, seed=3, flip=False)
  assert not teacher_cache.sample_views("key-1", 50, 60, no_flip)[1].any()


def test_apply_view_equals_pil_crop_then_mirror():
  from PIL import Image
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
  img = Image.fromarray(pixels)
  for box, flip in (((0, 0, 37, 53), 0), ((3, 5, 30, 41), 1), ((10, 0, 11, 53), 0), ((0, 52, 37, 53), 1)):
    y0, x0, y1, x1 = box
    ref = img.crop((x0, y0, x1, y1))
    if flip:
      ref = ref.transpose(Image.FLIP_LEFT_RIGHT)
    np.testing.assert_array_equal(teacher_cache.apply_view(pixels, box, flip), np.asarray(ref))


def test_logsumexp_is_stable_and_matches_the_definition():
  x = np.asarray([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
  got = teacher_cache.logsumexp(x, axis=1)
  assert abs(got[0] - np.log(np.e + np.e ** 2 + np.e ** 3)) < 1e-12
  assert abs(got[1] - (1000.0 + np.log(2.0))) < 1e-9
