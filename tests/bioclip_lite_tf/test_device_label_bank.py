"""The device label bank: round trip, CLI errors, and a custom species list from the teacher."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bioclip_lite_tf.export import device_bank as dlb
from formats import device_label_bank as device_format
from formats.ranks import RANKS
from formats.taxonomy import species_ancestors
from bioclip_lite_tf.testing import export_fixtures as export_testing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args, **kw):
  return subprocess.run([sys.executable, "-m"] + args, capture_output=True, text=True, cwd=REPO,
                        **kw)


@pytest.mark.parametrize("dtype", ["int8", "int4", "float16"])
def test_round_trip(tmp_path, dtype):
  src_dir = tmp_path / "ds" / "label_bank"
  counts = export_testing.write_label_bank(str(src_dir), embed_dim=40, logit_scale=87.5)
  source = dlb.read_source_label_bank(str(src_dir))
  meta = dlb.write_device_label_bank(source, str(tmp_path / "out"), dtype)
  back = device_format.read_device_label_bank(str(tmp_path / "out"))

  assert meta["format_version"] == 2 and meta["rows"]["dtype"] == back.dtype == dtype
  assert meta["embed_dim"] == back.embed_dim == 40
  assert back.logit_scale == pytest.approx(87.5)
  assert back.meta["ranks"] == list(RANKS)
  for rank in RANKS:
    # full lineage names rebuilt from leaf names + parent links
    assert back.table(rank).names == source.table(rank).names
    assert back.table(rank).parents.tolist() == source.table(rank).parents.tolist()
    assert back.table(rank).common_names == source.table(rank).common_names
    assert len(back.table(rank).names) == counts[rank] == meta["counts"][rank]
  # label_bank.json carries no per-taxon strings
  text = (tmp_path / "out" / "label_bank.json").read_text()
  assert not any(name in text for name in source.table("species").names)
  original = np.asarray(source.species_embeddings)
  err = np.abs(back.species_embeddings - original)
  levels = {"int8": 127, "int4": 7}.get(dtype)
  if levels:
    # symmetric per-row scale: every value within half a step of the teacher's
    step = np.abs(original).max(axis=1, keepdims=True) / levels
    assert np.all(err <= step / 2 + 1e-7)
    ratio = {"int8": 3, "int4": 6}[dtype]
    assert os.path.getsize(tmp_path / "out" / "label_bank.bin") < original.nbytes / ratio
  else:
    assert err.max() < 1e-3
  cos = np.sum(back.species_embeddings * original, 1) / np.linalg.norm(
      back.species_embeddings, axis=1)
  assert cos.min() > (0.999 if dtype != "int4" else 0.95)
  # the species order is the ranking order: nearest neighbour of each row is itself
  assert np.array_equal((back.species_embeddings @ original.T).argmax(1),
                        np.arange(len(original)))
  # every file's size and hash is recorded in label_bank.json
  import hashlib
  assert set(meta["files"]) == {"label_bank.bin", "names.bin", "common_names.bin"}
  for name, info in meta["files"].items():
    with open(tmp_path / "out" / name, "rb") as f:
      data = f.read()
    assert hashlib.sha256(data).hexdigest() == info["sha256"] and len(data) == info["bytes"]


def test_int4_packing_is_low_nibble_first():
  q = np.array([[-7, 7, 3, -1, 5]], np.int8)
  packed = device_format.pack_int4(q)
  # -7 = 0b1001, 7 = 0b0111: byte 0x79; 3, -1 (0b1111): 0xF3; 5 then the pad 0: 0x05
  assert packed.tolist() == [[0x79, 0xF3, 0x05]]
  assert device_format.unpack_int4(packed, 5).tolist() == q.tolist()


def test_projected_bank_scores_like_the_original(tmp_path):
  """Rows in d < D dims: q . mean + (q @ P) . row approximates q . x (the bank is low-rank)."""
  src_dir = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src_dir), embed_dim=40)
  source = dlb.read_source_label_bank(str(src_dir))
  original = np.asarray(source.species_embeddings, np.float64)
  n = len(original)
  d = min(n - 1, 16)
  meta = dlb.write_device_label_bank(source, str(tmp_path / "out"), "float16", projection_dim=d)
  back = device_format.read_device_label_bank(str(tmp_path / "out"))
  assert meta["rows"]["stored_dim"] == d and meta["projection"]["shape"] == [40, d]
  assert back.stored_rows.shape == (n, d)
  # brute force: the device's score from the stored parts, for random queries
  q = np.random.default_rng(1).normal(size=(5, 40))
  p, mean = back.projection.matrix.astype(np.float64), back.projection.mean.astype(np.float64)
  device = (q @ mean)[:, None] + (q @ p) @ back.stored_rows.astype(np.float64).T
  assert np.allclose(device, q @ back.species_embeddings.T, atol=1e-4)
  # the PCA keeps the top directions: the reconstruction is as good as the best rank-d one
  centred = original - original.mean(0)
  s = np.linalg.svd(centred, compute_uv=False)
  best = np.sqrt(np.sum(s[d:] ** 2))
  assert np.linalg.norm(back.species_embeddings - original) <= best * 1.05 + 1e-2


def test_version_1_bank_is_refused(tmp_path):
  src_dir = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src_dir), embed_dim=8)
  dlb.write_device_label_bank(dlb.read_source_label_bank(str(src_dir)), str(tmp_path / "out"))
  path = tmp_path / "out" / "label_bank.json"
  meta = json.loads(path.read_text())
  meta["format_version"] = 1
  path.write_text(json.dumps(meta))
  with pytest.raises(device_format.FormatError, match=r"format_version is 1.*version 2.*Re-export"):
    device_format.read_device_label_bank(str(tmp_path / "out"))


def test_truncated_names_file_is_refused(tmp_path):
  src_dir = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src_dir), embed_dim=8)
  dlb.write_device_label_bank(dlb.read_source_label_bank(str(src_dir)), str(tmp_path / "out"))
  names = tmp_path / "out" / "names.bin"
  names.write_bytes(names.read_bytes()[:-8])
  with pytest.raises(device_format.FormatError, match="names.bin"):
    device_format.read_device_label_bank(str(tmp_path / "out"))


def test_ancestors_follow_parent_links(tmp_path):
  src_dir = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src_dir), embed_dim=8)
  source = dlb.read_source_label_bank(str(src_dir))
  anc = dict(zip(RANKS, species_ancestors({t.rank: t.parents for t in source.tables})))
  for s, name in enumerate(source.table("species").names):
    for rank in RANKS:
      # lineage names: the ancestor's name is a prefix of the species' name
      assert name.startswith(source.table(rank).names[anc[rank][s]])


def test_cli_bad_input_exits_2(tmp_path):
  proc = _run(["bioclip_lite_tf.device_label_bank", f"--label_bank_dir={tmp_path}/nope",
               f"--out_dir={tmp_path}/out"])
  assert proc.returncode == 2
  assert "nope" in proc.stderr
  bad = tmp_path / "bad" / "label_bank"
  export_testing.write_label_bank(str(bad), embed_dim=8)
  with open(bad / "genus.tsv", "a") as f:
    f.write("99\tX Y\t12345\t\n")  # index out of order and a parent that does not exist
  proc = _run(["bioclip_lite_tf.device_label_bank", f"--label_bank_dir={bad}",
               f"--out_dir={tmp_path}/out2"])
  assert proc.returncode == 2
  assert "genus.tsv" in proc.stderr
  assert not os.path.exists(tmp_path / "out2" / "label_bank.json")


def test_cli_int4_projected_and_bad_projection(tmp_path):
  src = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src), embed_dim=16)
  proc = _run(["bioclip_lite_tf.device_label_bank", f"--label_bank_dir={src}",
               f"--out_dir={tmp_path}/out", "--dtype=int4", "--projection_dim=6"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  back = device_format.read_device_label_bank(str(tmp_path / "out"))
  assert back.dtype == "int4" and back.meta["rows"]["stored_dim"] == 6
  assert back.species_embeddings.shape == (len(back.table("species")), 16)
  proc = _run(["bioclip_lite_tf.device_label_bank", f"--label_bank_dir={src}",
               f"--out_dir={tmp_path}/out2", "--projection_dim=17"])
  assert proc.returncode == 2 and "projection dim 17" in proc.stderr
  assert not os.path.exists(tmp_path / "out2" / "label_bank.json")


def test_custom_species_list_with_random_teacher(tmp_path):
  """teacher_cache.label_bank (random-weight ViT-B-16 text tower, subprocess) -> converter."""
  species = tmp_path / "checklist.csv"
  species.write_text(
      "kingdom,phylum,class,order,family,genus,species,common_name\n"
      "Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,migratorius,American Robin\n"
      "Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,merula,Common Blackbird\n"
      "Plantae,Tracheophyta,Magnoliopsida,Rosales,Rosaceae,Rosa,canina,Dog Rose\n")
  proc = _run(["teacher_cache.label_bank", f"--species_file={species}",
               f"--out_dir={tmp_path}/bank", "--teacher=ViT-B-16", "--pretrained=none"],
              timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  proc = _run(["bioclip_lite_tf.device_label_bank",
               f"--label_bank_dir={tmp_path}/bank/label_bank", f"--out_dir={tmp_path}/device"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  back = device_format.read_device_label_bank(str(tmp_path / "device"))
  assert back.embed_dim == 512  # read from the teacher, not assumed
  assert back.table("species").names[0].startswith("Animalia Chordata Aves")
  assert len(back.table("species").names) == 3 and len(back.table("kingdom").names) == 2
  assert "American Robin" in back.table("species").common_names
  assert back.meta["teacher"].get("real_weights") is False
  assert back.logit_scale > 0
  teacher_rows = np.load(tmp_path / "bank" / "label_bank" / "species.npy")
  assert np.allclose(back.species_embeddings, teacher_rows, atol=0.01)
