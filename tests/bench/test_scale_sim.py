"""bench/scale_sim.py at toy size: every stage but export runs for real (generated source and
label bank, concurrent `python -m teacher_cache` workers, the Beam DirectRunner build, a
training run SIGKILLed once and resumed), the JSON has the acceptance fields, and a second run
reuses the finished stages instead of redoing them. (The export stage is exercised by the full
`make bench` run; it costs minutes of TF.js/TFLite conversion.)"""
import json
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from bench import scale_sim  # noqa: E402
from formats import label_bank as label_bank_format  # noqa: E402
from formats import teacher_cache as cache_format  # noqa: E402
from formats.ranks import RANKS  # noqa: E402


def _run(tmp_path, *extra, timeout=900):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
             TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED="0")
  argv = [sys.executable, os.path.join(REPO, "bench", "scale_sim.py"), "--num_species=300",
          "--num_rows=96", "--num_workers=2", "--train_steps=6", "--kill_steps=3",
          "--checkpoint_every=1", "--train_batch_size=4", "--train_model=mobilenet_v3_small",
          "--train_alpha=0.35", "--train_head_chunk=64", "--stages=generate,teacher_cache,tfds,train",
          f"--work_dir={tmp_path / 'work'}", f"--out={tmp_path / 'scale.json'}", *extra]
  proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  with open(tmp_path / "scale.json") as f:
    return json.load(f), proc.stdout


def test_rank_counts_are_a_tree_at_every_size():
  for s in (1, 7, 300, 10_000, 454_103):
    c = scale_sim.rank_counts(s)
    assert len(c) == 7 and c[-1] == s and min(c) >= 1
    assert all(a <= b for a, b in zip(c, c[1:])), c
  big = scale_sim.rank_counts(454_103)
  assert 50_000 < big[5] < 100_000 and big[0] <= 10   # genera, kingdoms of TreeOfLife scale


def test_train_head_chunk_is_the_default_configs():
  # The simulation trains runlocal's recipe at 454k species; runlocal's head.chunk_size (5, to
  # split a test's tiny bank) would make 90k chunks per step, so the default config's is passed.
  from bioclip_lite_tf.configs import default
  assert scale_sim.DEFAULT_HEAD_CHUNK == default.get_config().head.chunk_size
  assert default.get_config("runlocal").head.chunk_size < scale_sim.DEFAULT_HEAD_CHUNK


def test_scale_sim_small_end_to_end(tmp_path):
  result, _ = _run(tmp_path)
  assert result["status"] == {s: "ok" for s in ("generate", "teacher_cache", "tfds", "train")}
  assert result["num_species"] == 300 and result["num_rows"] == 96
  assert result["git_commit"] and len(result["git_commit"]) == 40
  work = tmp_path / "work" / "s300_r96_w2"

  # The generated label bank is in the real format, with the rank counts asked for, and the
  # cache workers accepted it (their manifest points at it, rows index into it).
  bank = label_bank_format.read_label_bank(str(work / "teacher_cache" / "label_bank"),
                                           require_meta=True)
  assert list(bank.rank_sizes) == scale_sim.rank_counts(300)
  assert result["rank_counts"] == dict(zip(RANKS, scale_sim.rank_counts(300)))
  emb = np.asarray(bank.species_embeddings)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  rows = 0
  for shard in range(2):
    done = json.load(open(cache_format.done_path(str(work / "teacher_cache"),
                                                 cache_format.shard_name(shard, 2))))
    rows += done["written"]
  assert rows == 96 == result["stages"]["teacher_cache"]["rows_written"]

  # Worker start: both measured, and no worker wrote rows before it was prepared.
  ws = result["teacher_cache"]["worker_start_seconds"]
  assert 0 < ws["first"] <= ws["others_max"]
  fr = result["teacher_cache"]["first_row_seconds"]["per_worker"]
  assert all(p <= f for p, f in zip(ws["per_worker"], fr))
  # Each worker logged its prepare: exactly one built the manifest (the first under the lock),
  # and a worker's prepare is part of its start.
  prep = result["teacher_cache"]["worker_prepare_seconds"]
  assert [p["first"] for p in prep["per_worker"]].count(True) == 1, prep
  assert all(0 <= p["lock_wait_seconds"] <= p["seconds"] < s
             for p, s in zip(prep["per_worker"], ws["per_worker"])), (prep, ws)
  assert prep["others_max"] == max(p["seconds"] for p in prep["per_worker"] if not p["first"])
  assert 0 <= prep["others_max_own_work"] <= prep["others_max"]
  assert result["goals"]["later_workers_prepare"]["value"] == prep["others_max_own_work"]

  # Killed once just past step 3 (checkpoints every step) and resumed from a checkpoint no
  # later than the step it was killed in.
  resumes = result["train"]["resume_seconds"]
  killed_last = result["stages"]["train"]["segments"][0]["last_step"]
  assert len(resumes) == 1 and 1 <= resumes[0]["step"] <= killed_last < 6
  assert 0 < resumes[0]["after_restore_seconds"] < resumes[0]["seconds"]
  segs = result["stages"]["train"]["segments"]
  assert [s["status"] for s in segs] == ["killed", "ok"]
  assert segs[-1]["last_step"] == 6
  assert os.path.isfile(work / "train" / "float" / "phase.done.json")

  for stage in ("teacher_cache", "tfds", "train"):
    assert result["peak_rss_bytes"][stage] > 50 * 2**20, stage  # a Python + torch/TF process
    # PSS counts shared pages once in all: never above the summed RSS, and not vanishing.
    assert 0.2 * result["peak_rss_bytes"][stage] < result["peak_pss_bytes"][stage] \
        <= result["peak_rss_bytes"][stage], stage
    assert result["examples_per_second"][stage] > 0, stage
  assert set(result["goals"]) == {"resume_independent_of_step", "later_workers_start",
                                  "later_workers_prepare", "peak_rss_per_stage"}

  # Resumable: the same command reuses every finished stage (no subprocess is started).
  again, out = _run(tmp_path, timeout=300)
  assert all(r.get("reused") for r in again["stages"].values()), out
  assert again["train"]["resume_seconds"] == resumes
