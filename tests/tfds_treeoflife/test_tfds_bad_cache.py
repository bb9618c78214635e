"""A malformed cache fails with a message naming the file and the fault (CLI: exit status 2)."""
import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from formats.errors import FormatError  # noqa: E402
from tfds_treeoflife.build import build  # noqa: E402
from formats.teacher_cache import write_part  # noqa: E402


def _edit_manifest(cache, **changes):
  path = os.path.join(cache, "manifest.json")
  with open(path) as f:
    m = json.load(f)
  m.update(changes)
  with open(path, "w") as f:
    json.dump(m, f)


def _edit_first_part(cache, fn):
  path = os.path.join(cache, "rows", "shard-00000-of-00002", "part-000000.npz")
  with np.load(path) as z:
    arrays = {k: z[k] for k in z.files}
  fn(arrays)
  write_part(path, arrays)
  return path


def _species_out_of_range(a):
  a["taxon_index"] = a["taxon_index"].copy()
  a["taxon_index"][3, 6] = 99


def _narrow_embedding(a):
  a["teacher_embedding"] = a["teacher_embedding"][..., :12].copy()


def _no_view_axis(a):
  a["teacher_embedding"] = a["teacher_embedding"][:, 0].copy()


def _logsumexp_too_small(a):
  a["teacher_logsumexp"] = a["teacher_logsumexp"].copy()
  a["teacher_logsumexp"][2, 1] = a["topk_species_logits"][2, 1, 0] - 1.0


def _view0_cropped(a):
  a["view_boxes"] = a["view_boxes"].copy()
  a["view_boxes"][4, 0, 1] = 1


def _empty_box(a):
  a["view_boxes"] = a["view_boxes"].copy()
  a["view_boxes"][5, 1, 2] = a["view_boxes"][5, 1, 0]


def _wrong_parent(a):
  a["taxon_index"] = a["taxon_index"].copy()
  a["taxon_index"][0, 6] = 6  # Rosa canina ...
  a["taxon_index"][0, 5] = 0  # ... filed under genus Turdus


def _topk_out_of_range(a):
  a["topk_species_indices"] = a["topk_species_indices"].copy()
  a["topk_species_indices"][1, 0] = -1


@pytest.mark.parametrize("corrupt, message", [
    (_species_out_of_range, r"taxon_index\[:, 6\] \(species\) = 99 out of range \[0, 8\)"),
    (_narrow_embedding, r"teacher_embedding must be float32 \[\d+, 2, 16\]"),
    (_no_view_axis, r"teacher_embedding has no view axis .*Rebuild the cache"),
    (_logsumexp_too_small, r"teacher_logsumexp is below the largest top-k logit.*row 2"),
    (_view0_cropped, r"view 0 must be the whole photo.*row 4"),
    (_empty_box, r"view_boxes must be .*row 5"),
    (_wrong_parent, r"species row 6 has parent 5 in genus.tsv but the row says 0"),
    (_topk_out_of_range, r"topk_species_indices out of range"),
])
def test_bad_rows_fail_naming_the_part(tmp_path, dummy_cache, corrupt, message):
  part = _edit_first_part(dummy_cache, corrupt)
  with pytest.raises(FormatError, match=message) as e:
    build(dummy_cache, str(tmp_path / "d"))
  assert part in str(e.value)
  # Nothing that looks like a finished dataset is left behind.
  assert not os.path.exists(tmp_path / "d" / "tree_of_life_distill" / "default" / "2.0.0")


def test_duplicate_keys(tmp_path, dummy_cache):
  def copy_key(a):
    a["key"] = a["key"].copy()
    a["key"][1] = a["key"][0]
  _edit_first_part(dummy_cache, copy_key)
  with pytest.raises(FormatError, match=r"two rows share the same sample key"):
    build(dummy_cache, str(tmp_path / "d"))


def test_wrong_format_version(tmp_path, dummy_cache):
  _edit_manifest(dummy_cache, format_version=1)
  with pytest.raises(FormatError, match=r"manifest.json: format_version is 1; .*format version "
                     r"2\. Rebuild the cache with this version of teacher_cache"):
    build(dummy_cache, str(tmp_path / "d"))


def test_manifest_without_views(tmp_path, dummy_cache):
  path = os.path.join(dummy_cache, "manifest.json")
  with open(path) as f:
    m = json.load(f)
  del m["views"]
  with open(path, "w") as f:
    json.dump(m, f)
  with pytest.raises(FormatError, match=r"manifest.json: missing the 'views' object"):
    build(dummy_cache, str(tmp_path / "d"))


def test_text_embedding_width_mismatch(tmp_path, dummy_cache):
  path = os.path.join(dummy_cache, "label_bank", "genus.npy")
  emb = np.load(path)
  np.save(path, np.concatenate([emb, np.zeros((len(emb), 4), np.float32)], 1))
  with pytest.raises(FormatError, match=r"genus.npy: embedding width 20 does not match "
                     r".*embed_dim 16"):
    build(dummy_cache, str(tmp_path / "d"))


def test_label_bank_parent_out_of_range(tmp_path, dummy_cache):
  path = os.path.join(dummy_cache, "label_bank", "family.tsv")
  with open(path) as f:
    lines = f.read().splitlines()
  cols = lines[2].split("\t")
  cols[2] = "42"
  lines[2] = "\t".join(cols)
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  with pytest.raises(FormatError, match=r"family.tsv:3: parent_index 42 out of range"):
    build(dummy_cache, str(tmp_path / "d"))


def test_unfinished_cache_is_refused(tmp_path, dummy_cache):
  os.remove(os.path.join(dummy_cache, "rows", "shard-00001-of-00002.done.json"))
  with pytest.raises(FormatError, match=r"1 of 2 shards are not finished"):
    build(dummy_cache, str(tmp_path / "d"))
  # Explicitly allowed, it builds from the finished parts.
  b = build(dummy_cache, str(tmp_path / "d"), allow_incomplete_cache=True)
  assert b.info.splits["train"].num_examples + b.info.splits["validation"].num_examples == 40


def test_cli_exit_2_on_bad_caches(tmp_path, dummy_cache, run_module):
  _edit_manifest(dummy_cache, format_version=7)
  r = run_module("tfds_treeoflife.build", f"--cache_dir={dummy_cache}",
                 f"--data_dir={tmp_path / 'd'}")
  assert r.returncode == 2, r.stderr[-2000:]
  assert "format_version is 7" in r.stderr and "manifest.json" in r.stderr

  _edit_manifest(dummy_cache, format_version=1)
  r = run_module("tfds_treeoflife.build", f"--cache_dir={dummy_cache}",
                 f"--data_dir={tmp_path / 'd'}")
  assert r.returncode == 2, r.stderr[-2000:]
  assert "format_version is 1" in r.stderr and "Rebuild the cache" in r.stderr

  _edit_manifest(dummy_cache, format_version=2)
  part = _edit_first_part(dummy_cache, _species_out_of_range)
  r = run_module("tfds_treeoflife.build", f"--cache_dir={dummy_cache}",
                 f"--data_dir={tmp_path / 'd'}")
  assert r.returncode == 2, r.stderr[-2000:]
  assert part in r.stderr and "out of range" in r.stderr

  r = run_module("tfds_treeoflife.build", f"--data_dir={tmp_path / 'd'}")
  assert r.returncode == 2 and "--cache_dir" in r.stderr
  r = run_module("tfds_treeoflife.build", f"--cache_dir={dummy_cache}",
                 f"--data_dir={tmp_path / 'd'}", "--config=no_such_config")
  assert r.returncode == 2 and "no_such_config" in r.stderr
