"""Fuzz of the teacher_cache source readers (issue 7): damaged samples are skipped with a count and a
key, nothing crashes, and no written row is misaligned with its photo or its taxon.

Each hypothesis example builds a TreeOfLife-10M style tar mixing good samples with damaged ones
(random bytes as JPEG, a 0-byte JPEG, missing or non-UTF-8 taxonomy, a non-UTF-8 key, a missing
JPEG member), optionally truncates the tar, runs the real cache writer with the tiny registered
teacher, and then re-derives every written row from the photo bytes.
"""
from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from teacher_cache import cache_writer, sources, teachers
from teacher_cache.demo_data import DEMO_SPECIES

KINDS = ("good", "random_bytes_jpeg", "zero_byte_jpeg", "missing_taxonomy", "non_utf8_taxonomy",
         "non_utf8_key", "missing_jpeg", "short_taxonomy")


@pytest.fixture(scope="module")
def teacher():
  return teachers.load_teacher("bioclip-lite-test-tiny", "none")


def _photo(i: int) -> bytes:
  rng = np.random.default_rng(i)
  pixels = rng.integers(0, 256, size=(40 + 3 * (i % 5), 56, 3), dtype=np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
  return buf.getvalue()


def _members(kind: str, i: int, lineage, common: str):
  taxo = " ".join(lineage).encode()
  m = {"jpg": _photo(i), "taxonomic_name.txt": taxo, "common_name.txt": common.encode(),
       "scientific_name.txt": " ".join(lineage[-2:]).encode()}
  if kind == "random_bytes_jpeg":
    m["jpg"] = np.random.default_rng(1000 + i).bytes(200 + i)
  elif kind == "zero_byte_jpeg":
    m["jpg"] = b""
  elif kind == "missing_taxonomy":
    del m["taxonomic_name.txt"]
  elif kind == "non_utf8_taxonomy":
    m["taxonomic_name.txt"] = b"Animalia \xff\xfe Aves"
  elif kind == "missing_jpeg":
    del m["jpg"]
  elif kind == "short_taxonomy":
    m["taxonomic_name.txt"] = b"Animalia Chordata"
  return m


def _write_tar(path: str, plan, truncate_fraction):
  """Writes the samples; returns (key -> (kind, lineage, jpg, end_offset)), bytes kept."""
  info = {}
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                    errors="surrogateescape") as tar:
    for i, (kind, species_index) in enumerate(plan):
      lineage, common = DEMO_SPECIES[species_index]
      key = f"sample{i:04d}"
      if kind == "non_utf8_key":
        key = (b"sample\xff" + str(i).encode()).decode("utf-8", "surrogateescape")
      members = _members(kind, i, lineage, common)
      for ext, data in members.items():
        ti = tarfile.TarInfo(name=f"{key}.{ext}")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
      buf.flush()
      info[key] = (kind, tuple(lineage), members.get("jpg"), buf.tell())
  data = buf.getvalue()
  keep = len(data)
  if truncate_fraction is not None:
    keep = int(len(data) * truncate_fraction)
    data = data[:keep]
  with open(path, "wb") as f:
    f.write(data)
  return info, keep


def _read_cache(out_dir):
  import glob
  rows = {"key": [], "taxon_index": [], "teacher_embedding": [], "image": []}
  skipped = []
  for p in sorted(glob.glob(os.path.join(out_dir, "rows", "shard-*", "part-*.npz"))):
    with np.load(p, allow_pickle=False) as z:
      off = z["image_offsets"]
      rows["key"].extend(z["key"].tolist())
      rows["taxon_index"].extend(z["taxon_index"].tolist())
      rows["teacher_embedding"].extend(list(z["teacher_embedding"]))
      rows["image"].extend(z["image_bytes"][off[j]:off[j + 1]].tobytes() for j in range(len(off) - 1))
      skipped.extend(z["skipped_key"].tolist())
  return rows, skipped


plans = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 5)), min_size=1, max_size=14)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans, truncate=st.one_of(st.none(), st.floats(0.3, 0.99)),
       rows_per_part=st.integers(1, 5), batch_size=st.integers(1, 4))
def test_damaged_samples_are_skipped_and_rows_stay_aligned(teacher, plan, truncate, rows_per_part,
                                                           batch_size):
  # At least one good sample first, so the taxonomy scan finds a label bank.
  plan = [("good", 0)] + plan
  work = tempfile.mkdtemp(prefix="fuzz_")
  try:
    src_dir = os.path.join(work, "src")
    os.makedirs(src_dir)
    info, kept = _write_tar(os.path.join(src_dir, "shard-000000.tar"), plan, truncate)
    source = sources.open_source(src_dir)
    out_dir = os.path.join(work, "cache")
    cfg = cache_writer.CacheConfig(out_dir=out_dir, batch_size=batch_size, topk=3,
                                   rows_per_part=rows_per_part, decode_workers=2)
    done = cache_writer.run_shard(cfg, source, teacher)
    rows, skipped = _read_cache(out_dir)

    # Nothing twice.
    assert len(set(rows["key"])) == len(rows["key"])
    assert not set(rows["key"]) & set(skipped)
    # Every written row is a good sample, with its own photo and its own taxon.
    taxonomy = source.taxonomy()
    for key, taxon_index, emb, image in zip(rows["key"], rows["taxon_index"],
                                            rows["teacher_embedding"], rows["image"]):
      kind, lineage, jpg, _ = info[key]
      assert kind == "good", f"{key} of kind {kind} was written"
      assert image == jpg
      assert tuple(taxon_index) == taxonomy.index_of(lineage)
      pixels = teachers.decode_and_resize(jpg, teacher.preprocessing.size)
      expect = teacher.encode_pixels(torch.from_numpy(np.array(pixels[None]))).numpy()[0]
      np.testing.assert_allclose(emb[0], expect, atol=1e-5)  # view 0 of [V=1, D]
    # Every sample that lies wholly before the truncation is accounted for exactly once:
    # good ones written, damaged ones skipped (with its key, printable).
    complete = [k for k, v in info.items() if v[3] <= kept]
    for key in complete:
      kind = info[key][0]
      if kind == "good":
        assert key in rows["key"], f"good sample {key} lost"
      else:
        printable = sources.printable(key)
        assert printable in skipped, f"damaged sample {key!r} ({kind}) not counted as skipped"
    # The counts in the done file match the rows.
    assert done["written"] == len(rows["key"])
    assert done["skipped"] == len(skipped)
    if truncate is not None and kept < max(v[3] for v in info.values()):
      assert done["skipped"] >= 1, "a truncated tar must count its damaged sample"
  finally:
    shutil.rmtree(work, ignore_errors=True)


def test_huge_image_is_skipped_not_decoded(teacher, tmp_path):
  """A real 10,000 x 10,000 JPEG is refused from its header, next to good samples."""
  src = tmp_path / "src"
  src.mkdir()
  lineage, common = DEMO_SPECIES[0]
  buf = io.BytesIO()
  Image.new("RGB", (10000, 10000), (40, 120, 60)).save(buf, format="JPEG", quality=30)
  huge = buf.getvalue()
  with tarfile.open(src / "shard-000000.tar", "w") as tar:
    for i, jpg in enumerate([_photo(1), huge, _photo(2)]):
      for ext, data in {"jpg": jpg, "taxonomic_name.txt": " ".join(lineage).encode(),
                        "common_name.txt": common.encode()}.items():
        ti = tarfile.TarInfo(name=f"k{i}.{ext}")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
  cfg = cache_writer.CacheConfig(out_dir=str(tmp_path / "cache"), batch_size=2, topk=1)
  done = cache_writer.run_shard(cfg, sources.open_source(str(src)), teacher)
  rows, skipped = _read_cache(cfg.out_dir)
  assert rows["key"] == ["k0", "k2"]
  assert skipped == ["k1"]
  assert done["written"] == 2 and done["skipped"] == 1
