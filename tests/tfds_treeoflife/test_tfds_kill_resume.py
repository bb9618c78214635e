"""A build killed with SIGKILL midway leaves nothing that looks complete, and a re-run ends with
the same dataset as an uninterrupted build."""
import filecmp
import glob
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from tfds_treeoflife.build import build  # noqa: E402
from tfds_treeoflife.make_dummy_data import write_cache  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_sigkill_midway_then_rerun(tmp_path, run_module):
  # Big enough that generation takes over a second, so the kill lands inside it.
  cache = write_cache(str(tmp_path / "cache"), num_photos=8000, num_shards=2, parts_per_shard=8)
  data_dir = tmp_path / "data"
  config_dir = data_dir / "tree_of_life_distill" / "default"
  final = config_dir / "2.0.0"
  env = dict(os.environ, PYTHONPATH=REPO)
  proc = subprocess.Popen([sys.executable, "-m", "tfds_treeoflife.build", f"--cache_dir={cache}",
                           f"--data_dir={data_dir}"], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 240
    while not glob.glob(str(config_dir / "incomplete.*")):
      assert proc.poll() is None, "the build ended before it could be killed"
      assert time.time() < deadline, "the build never started writing"
      time.sleep(0.005)
    time.sleep(0.3)  # let it get some way into writing
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not final.exists(), "a killed build must not leave a finished-looking dataset"
  assert glob.glob(str(config_dir / "incomplete.*")), "the kill should have caught it midway"

  r = run_module("tfds_treeoflife.build", f"--cache_dir={cache}", f"--data_dir={data_dir}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert not glob.glob(str(config_dir / "incomplete.*")), "leftovers of the killed build remain"

  reference = build(cache, str(tmp_path / "reference"))
  files = sorted(os.listdir(reference.data_dir))
  names = [f for f in files if "tfrecord" in f or f.endswith(".labels.txt")]
  assert len([f for f in names if "tfrecord" in f]) >= 2
  _, mismatch, errors = filecmp.cmpfiles(reference.data_dir, final, names, shallow=False)
  assert not mismatch and not errors, (mismatch, errors)
