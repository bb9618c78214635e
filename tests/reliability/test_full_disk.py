"""A full disk (issue 7): the error is clear, and nothing corrupt is left marked complete.

The disk is a real, tiny tmpfs mounted for the test (the machines run tests as root); where mounting
is not allowed, the same failure is produced by RLIMIT_FSIZE, which makes a write past the limit fail
with EFBIG inside the real process. After the failure the space is freed (the tmpfs is remounted
larger, or the limit lifted) and the same command must finish with exactly the output of a run that
never failed: proof that nothing half-written was mistaken for complete.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import resource
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--teacher=bioclip-lite-test-tiny", "--pretrained=none"]


def _env():
  env = dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE="1", TF_USE_LEGACY_KERAS="1",
             TF_CPP_MIN_LOG_LEVEL="2")
  return env


class SmallDisk:
  """A directory whose file system holds only `size_kb` KiB; `grow()` frees space."""

  def __init__(self, path: str, size_kb: int):
    self.path = path
    self.size_kb = size_kb
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", path],
                       capture_output=True)
    self.mounted = r.returncode == 0
    self.limit_bytes = None if self.mounted else size_kb * 1024

  def preexec(self):
    """For the RLIMIT_FSIZE fallback: no single file may grow past the limit."""
    if self.limit_bytes is None:
      return None

    def limit():
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
      resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit_bytes, self.limit_bytes))
    return limit

  def grow(self, size_kb: int):
    if self.mounted:
      subprocess.run(["mount", "-o", f"remount,size={size_kb}k", self.path], check=True)
    else:
      self.limit_bytes = None

  def close(self):
    if self.mounted:
      subprocess.run(["umount", "-l", self.path], check=False)


@pytest.fixture
def small_disk(tmp_path):
  disks = []

  def make(size_kb):
    d = SmallDisk(str(tmp_path / f"disk-{uuid.uuid4().hex[:6]}"), size_kb)
    disks.append(d)
    return d
  yield make
  for d in disks:
    d.close()


def _run(args, disk=None, timeout=600):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=_env(), capture_output=True,
                        text=True, timeout=timeout,
                        preexec_fn=disk.preexec() if disk is not None else None)


def _rows(cache_dir):
  keys, emb, logits = [], [], []
  for p in sorted(glob.glob(os.path.join(cache_dir, "rows", "shard-*", "part-*.npz"))):
    with np.load(p, allow_pickle=False) as z:  # every committed part must load
      keys.extend(z["key"].tolist())
      emb.append(z["teacher_embedding"])
      logits.append(z["topk_species_logits"])
  return keys, np.concatenate(emb), np.concatenate(logits)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("full_disk") / "wds")
  r = _run(["teacher_cache.demo_data", f"--out_dir={out}", "--num_photos=40", "--num_shards=2",
            "--num_species=6", "--seed=3"])
  assert r.returncode == 0, r.stderr
  return out


@pytest.fixture(scope="module")
def reference_cache(photos, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("full_disk_ref") / "cache")
  r = _run(["teacher_cache", f"--source={photos}", f"--out_dir={out}", "--rows_per_part=4", *TINY])
  assert r.returncode == 0, r.stderr
  return out


def test_teacher_cache_on_a_full_disk(photos, reference_cache, small_disk):
  disk = small_disk(160)  # room for the label bank and a few parts, not for 40 photos
  out = os.path.join(disk.path, "cache")
  args = ["teacher_cache", f"--source={photos}", f"--out_dir={out}", "--rows_per_part=4", *TINY]
  r = _run(args, disk)
  assert r.returncode != 0, "a full disk must fail the run"
  err = r.stderr
  clear = [l for l in err.splitlines() if l.startswith("error:") and out in l
           and ("No space left on device" in l or "File too large" in l)]
  assert clear, f"no one-line error naming the cause and the directory:\n{err[-2000:]}"
  assert "Traceback" not in err, f"a full disk is an expected failure, not a crash:\n{err[-2000:]}"
  # Nothing is marked complete, and whatever was committed loads.
  assert not glob.glob(os.path.join(out, "rows", "*.done.json"))
  if os.path.exists(os.path.join(out, "manifest.json")):
    with open(os.path.join(out, "manifest.json")) as f:
      manifest = json.load(f)
    assert manifest.get("complete") is not True
  if glob.glob(os.path.join(out, "rows", "shard-*", "part-*.npz")):
    _rows(out)
  # Free space, run the same command: the result equals a run that never failed.
  disk.grow(64 * 1024)
  r = _run(args, disk)
  assert r.returncode == 0, r.stderr[-3000:]
  got_keys, got_emb, got_logits = _rows(out)
  ref_keys, ref_emb, ref_logits = _rows(reference_cache)
  assert got_keys == ref_keys
  np.testing.assert_allclose(got_emb, ref_emb, atol=1e-6)
  np.testing.assert_allclose(got_logits, ref_logits, atol=1e-4)


def test_tfds_build_on_a_full_disk(reference_cache, small_disk, tmp_path):
  ref_dir = str(tmp_path / "tfds_ref")
  r = _run(["tfds_treeoflife.build", f"--cache_dir={reference_cache}", f"--data_dir={ref_dir}"])
  assert r.returncode == 0, r.stderr[-3000:]
  disk = small_disk(96)
  data_dir = os.path.join(disk.path, "tfds")
  args = ["tfds_treeoflife.build", f"--cache_dir={reference_cache}", f"--data_dir={data_dir}"]
  r = _run(args, disk)
  assert r.returncode != 0, "a full disk must fail the build"
  assert ("No space left on device" in r.stderr or "File too large" in r.stderr
          or "space" in r.stderr.lower()), r.stderr[-2000:]
  # No complete-looking dataset: TFDS marks a version complete with dataset_info.json in the
  # final (non-incomplete) directory.
  finals = [p for p in glob.glob(os.path.join(data_dir, "tree_of_life_distill", "*", "*",
                                              "dataset_info.json")) if "incomplete" not in p]
  assert not finals, f"a failed build left a complete-looking dataset: {finals}"
  disk.grow(64 * 1024)
  r = _run(args, disk)
  assert r.returncode == 0, r.stderr[-3000:]
  # Same examples as the build that never failed.
  code = (
      "import sys, json, tensorflow_datasets as tfds\n"
      "out = {}\n"
      "for d in sys.argv[1:]:\n"
      "  b = tfds.builder('tree_of_life_distill', data_dir=d)\n"
      "  rows = []\n"
      "  for split in sorted(b.info.splits.keys()):\n"
      "    for ex in tfds.as_numpy(b.as_dataset(split=split, shuffle_files=False)):\n"
      "      rows.append((split, ex['key'].decode(), ex['image'].sum().item(), "
      "ex['teacher_embedding'].round(5).tolist()))\n"
      "  out[d] = sorted(rows)\n"
      "print(json.dumps(out[sys.argv[1]] == out[sys.argv[2]]), len(out[sys.argv[1]]))\n")
  r = subprocess.run([sys.executable, "-c", "import tfds_treeoflife\n" + code, ref_dir, data_dir],
                     cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  same, n = r.stdout.split()[-2:]
  assert same == "true" and int(n) > 0, r.stdout
