r"""Scale simulation: the whole chain at TreeOfLife-10M's label-bank size, on this machine.

  .venv/bin/python bench/scale_sim.py [--num_species=454103] [--num_rows=50000] [--num_workers=8]
      [--train_steps=200] [--kill_steps=50,100,150] [--work_dir=runs/scale_sim]
      [--out=bench/results/scale.json] [--force] [--stages=generate,teacher_cache,tfds,train,export]

Stages (each a subprocess of this script or of the project's own CLIs, with a timeout):
  generate       a generated taxonomy of --num_species species with TreeOfLife-10M-like rank
                 counts, its catalog.csv, --num_rows small JPEGs in 2 x --num_workers webdataset
                 tars, and a label bank in the real formats.label_bank layout whose embeddings are
                 generated (each taxon = its parent's vector + noise, L2-normalized; no text
                 encoder). Cached under --work_dir and reused while complete.
  teacher_cache  --num_workers `python -m teacher_cache` workers started at once, one shard each,
                 with the tiny random teacher `bioclip-lite-test-tiny` (D=48). The generated label
                 bank is placed in the cache directory first, so the workers validate and reuse it
                 instead of running a text encoder over 454k captions.
  tfds           `python -m tfds_treeoflife.build` on Beam's DirectRunner, 2 workers
                 (multi_processing).
  train          `python -m bioclip_lite_tf.train` with configs/default.py:runlocal but the default
                 architecture (MobileNetV3-Large, alpha 1.0), the runlocal resolution (64), the
                 454k-species head, phase float only, --train_steps steps. The run is SIGKILLed
                 at each --kill_steps step and resumed by running the same command again.
  export         `python -m bioclip_lite_tf.export --phase=float`: the 454k device label bank.

Definitions (all seconds are wall clock):
  worker_start_seconds   process spawn -> the worker's shard directory rows/<shard>/ exists,
                         i.e. it has passed prepare (manifest, taxonomy and label bank checked
                         under the cache's lock) and begins reading photos. `first` is the
                         smallest over the workers, `others_max` the largest of the rest.
  first_row_seconds      process spawn -> the worker's first committed part file (rows written).
  resume_seconds         process spawn of the re-run -> its first training-step line with a step
                         past the restored checkpoint. `fresh_start_seconds` is the same for the
                         very first run (from step 0), for comparison. after_restore_seconds:
                         from the re-run's "resuming from ... at step N" line to that first
                         step (input pipeline positioning + first step, without the imports).
  peak_rss_bytes.<stage> the largest sum of RSS over the stage's whole process tree (all
                         concurrent workers and their children), polled every --poll_seconds.
  peak_pss_bytes.<stage> the same with PSS (a page shared by n processes counts 1/n in each):
                         what the tree occupies. Several processes that each map TF or torch
                         count those libraries once per process in RSS, once in all in PSS.
  worker_prepare_seconds each worker's own log line: prepare_cache() from call to return, after
                         its imports and the teacher's load (how long the catalog, taxonomy and
                         label bank take; worker_start_seconds adds the imports, which 8
                         workers on 2 cores make slow here). others_max_own_work leaves out a
                         later worker's wait for the lock, held by the first while it builds.
  examples_per_second    generate: photos/s; teacher_cache: rows/s over all workers together;
                         tfds: examples/s; train: photos/s of the last segment's steady steps;
                         export: species/s (device-bank rows written per second of the stage).
A stage that fails or times out is recorded as {status: "failed"|"timeout", seconds} and the
stages after it run if their inputs exist. A stage whose output is complete and was measured on
the same code (git tree ids of formats/, teacher_cache/, tfds_treeoflife/, bioclip_lite_tf/) is
not run again (its earlier record is reused); --force redoes every stage but `generate`
(--force_generate redoes that too). Goals are reported (pass/fail), not asserted.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags (defined only when run as a script, so tests can import the module)."""
  flags.DEFINE_integer("num_species", 454_103, "Species in the generated label bank.")
  flags.DEFINE_integer("num_rows", 50_000, "Generated photos (teacher cache rows).")
  flags.DEFINE_integer("num_workers", 8, "teacher_cache worker shards started at once.")
  flags.DEFINE_integer("photo_size", 64, "Side of the generated JPEGs (the tiny teacher's input).")
  flags.DEFINE_integer("seed", 0, "Seed of everything generated.")
  flags.DEFINE_integer("train_steps", 200, "Training steps of the float phase.")
  flags.DEFINE_list("kill_steps", ["50", "100", "150"], "SIGKILL the training run once it logs "
                    "each of these steps, then resume it.")
  flags.DEFINE_integer("checkpoint_every", 10, "Training checkpoint interval (steps).")
  flags.DEFINE_integer("train_batch_size", 8, "Global training batch size (runlocal's).")
  flags.DEFINE_integer("train_head_chunk", DEFAULT_HEAD_CHUNK, "Species per chunk of the 454k "
                       "head (head.chunk_size): the default config's, not runlocal's 5, which "
                       "exists to split a test's tiny bank and would cut 454k species into "
                       "90k chunks.")
  flags.DEFINE_float("train_alpha", 1.0, "MobileNetV3 width (the default architecture: 1.0).")
  flags.DEFINE_string("train_model", "mobilenet_v3_large", "Student architecture (default: "
                      "configs/default.py's).")
  flags.DEFINE_integer("teacher_batch_size", 64, "Photos per teacher forward pass.")
  flags.DEFINE_string("teacher", "bioclip-lite-test-tiny", "Teacher of the cache workers (random "
                      "weights, --pretrained=none).")
  flags.DEFINE_list("stages", ["generate", "teacher_cache", "tfds", "train", "export"],
                    "Stages to run, in order.")
  flags.DEFINE_string("work_dir", os.path.join(REPO, "runs", "scale_sim"), "Scratch root; each "
                      "(num_species, num_rows, num_workers) gets its own folder.")
  flags.DEFINE_string("out", os.path.join(REPO, "bench", "results", "scale.json"),
                      "Where to write the JSON result.")
  flags.DEFINE_bool("force", False, "Redo every stage except generate.")
  flags.DEFINE_list("redo", [], "Redo these stages (and the ones after them) even if complete.")
  flags.DEFINE_bool("force_generate", False, "Regenerate the source and label bank too.")
  flags.DEFINE_float("poll_seconds", 0.1, "RSS / progress polling interval.")
  flags.DEFINE_integer("timeout_generate", 600, "Seconds.")
  flags.DEFINE_integer("timeout_teacher_cache", 900, "Seconds.")
  flags.DEFINE_integer("timeout_tfds", 600, "Seconds.")
  flags.DEFINE_integer("timeout_train_segment", 480, "Seconds per training run (fresh or resume).")
  flags.DEFINE_integer("timeout_export", 600, "Seconds.")
  flags.DEFINE_string("run_stage", "", "Internal: run one in-process stage (generate) and exit.")


STAGES = ("generate", "teacher_cache", "tfds", "train", "export")
RSS_GOAL_BYTES = 4 * 1024 ** 3
LATER_WORKER_GOAL_S = 5.0
DEFAULT_HEAD_CHUNK = 65536  # configs/default.py's head.chunk_size (a test checks they agree)
RESUME_RATIO_GOAL = 1.5
STEP_RE = re.compile(r"\bstep (\d+)/(\d+)")
RESUMED_RE = re.compile(r"resuming from .* at step (\d+)")


# ---- rank counts and generation ------------------------------------------------------------

def rank_counts(num_species: int) -> List[int]:
  """kingdom..species counts in TreeOfLife-10M's proportions (the structured test bank's tree
  shape: ~454k species, ~70k genera, ~8k families, ...)."""
  from bench.structured_label_bank import rank_counts as tol_rank_counts
  return tol_rank_counts(num_species)


def _generate(work: str) -> Dict:
  """The `generate` stage, in this (sub)process: taxonomy, catalog, tars, label bank."""
  import numpy as np

  from bench.structured_label_bank import assign_parents
  from formats import label_bank as label_bank_format
  from formats.ranks import RANKS
  from teacher_cache import demo_data, webdataset
  from teacher_cache.label_bank import label_bank_meta
  from teacher_cache.sources import WebDatasetSource
  from teacher_cache.teachers import load_teacher
  from formats import atomic

  rng = np.random.default_rng(FLAGS.seed)
  counts = rank_counts(FLAGS.num_species)
  prefixes = ("Kingdom", "Phylum", "Class", "Order", "Family", "Genus", "sp")
  parents = [np.full(counts[0], -1, np.int64)]
  for r in range(1, 7):
    parents.append(assign_parents(rng, counts[r], counts[r - 1]).astype(np.int64))
  # Species lineage = walk up the parents (vectorised).
  up = [np.arange(counts[6])]
  for r in range(6, 0, -1):
    up.insert(0, parents[r][up[0]])
  names = [[f"{prefixes[r]}{i:07d}" for i in range(counts[r])] for r in range(7)]

  def lineage(s: int):
    return tuple(names[r][int(up[r][s])] for r in range(7))

  src = os.path.join(work, "source")
  shutil.rmtree(src, ignore_errors=True)
  tmp = src + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  with open(os.path.join(tmp, "catalog.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(("key", "source") + tuple(RANKS) + ("common_name",))
    for s in range(counts[6]):
      w.writerow((f"catalog-{s:07d}", "scale-sim") + lineage(s) + ("",))
  num_tars = 2 * FLAGS.num_workers
  photo_species = rng.integers(0, counts[6], FLAGS.num_rows)
  size = FLAGS.photo_size
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  t0 = time.perf_counter()
  per = -(-FLAGS.num_rows // num_tars)
  for t in range(num_tars):
    with tarfile.open(os.path.join(tmp, f"shard-{t:06d}.tar"), "w",
                      format=tarfile.USTAR_FORMAT) as tar:
      for j in range(t * per, min(FLAGS.num_rows, (t + 1) * per)):
        s = int(photo_species[j])
        c = np.random.default_rng(s).uniform(0, 255, (3, 3))  # the species' look
        img = c[0] * xx[..., None] / 3 + c[1] * yy[..., None] / 3 + c[2] / 3
        img = img + rng.normal(0, 8, img.shape)
        pixels = np.clip(img, 0, 255).astype(np.uint8)
        members = {"jpg": demo_data.encode_jpeg(pixels, 85)}
        members.update(demo_data.caption_members(lineage(s), ""))
        webdataset.add_sample(tar, f"scale-{j:08d}", members)
  photos_s = time.perf_counter() - t0
  os.rename(tmp, src)

  # The taxonomy exactly as the teacher_cache workers will read it (same code, same catalog).
  taxonomy = WebDatasetSource(src).taxonomy()
  teacher = load_teacher(FLAGS.teacher, "none", 0)
  d = int(teacher.embed_dim)
  bank_parent = os.path.join(work, "bank")
  shutil.rmtree(bank_parent, ignore_errors=True)
  os.makedirs(bank_parent)
  prev = {}

  def embed_rows(table):
    r = RANKS.index(table.rank)
    out = np.empty((len(table), d), np.float32)
    for start in range(0, len(table), 65536):
      stop = min(len(table), start + 65536)
      noise = rng.standard_normal((stop - start, d)).astype(np.float32)
      if r == 0:
        v = noise
      else:
        v = prev[r - 1][table.parents[start:stop]] + 0.6 * noise / np.sqrt(d)
      out[start:stop] = v / np.linalg.norm(v, axis=1, keepdims=True)
    prev[r] = out
    prev.pop(r - 2, None)
    yield out

  label_bank_format.write_label_bank(os.path.join(bank_parent, "label_bank"), taxonomy.tables, d,
                                     embed_rows, label_bank_meta(taxonomy, teacher.describe()))
  info = {"num_species": counts[6], "num_rows": FLAGS.num_rows, "rank_counts":
          dict(zip(RANKS, [len(t) for t in taxonomy.tables])), "embed_dim": d,
          "num_tars": num_tars, "photo_size": size, "seed": FLAGS.seed,
          "photos_per_second_generated": round(FLAGS.num_rows / photos_s, 1)}
  atomic.write_json(os.path.join(work, "generate.complete.json"), info)
  return info


# ---- process-tree measurement --------------------------------------------------------------

class TreeMonitor:
  """Polls the summed RSS and PSS of process trees (roots and all their descendants).

  RSS counts a shared page (TF's and torch's libraries, mapped by every worker) once in every
  process that maps it; PSS splits it among them, so the summed PSS is what the tree occupies.
  """

  def __init__(self):
    import psutil
    self._psutil = psutil
    self.roots: List = []
    self.peak_total = 0
    self.peak_total_pss = 0
    self.peak_per_root: Dict[int, int] = {}
    self.at_peak: List[Dict] = []  # the processes at the summed-RSS peak, largest first

  def add(self, pid: int) -> None:
    self.roots.append(self._psutil.Process(pid))

  def poll(self) -> int:
    total = total_pss = 0
    seen = []
    for root in self.roots:
      rss = 0
      try:
        procs = [root] + root.children(recursive=True)
      except self._psutil.Error:
        continue
      for p in procs:
        try:
          info = p.memory_full_info()
        except self._psutil.Error:
          continue
        rss += info.rss
        total_pss += getattr(info, "pss", info.rss)
        seen.append({"pid": p.pid, "rss_bytes": info.rss,
                     "pss_bytes": getattr(info, "pss", None)})
      self.peak_per_root[root.pid] = max(self.peak_per_root.get(root.pid, 0), rss)
      total += rss
    if total > self.peak_total:
      self.at_peak = sorted(seen, key=lambda r: -r["rss_bytes"])[:6]
    self.peak_total = max(self.peak_total, total)
    self.peak_total_pss = max(self.peak_total_pss, total_pss)
    return total

  def record(self) -> Dict:
    """The stage record's memory keys."""
    return {"peak_rss_bytes": self.peak_total, "peak_pss_bytes": self.peak_total_pss,
            "processes_at_peak_rss": self.at_peak}


def _env() -> Dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("TF_USE_LEGACY_KERAS", "1")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env.setdefault("PYTHONHASHSEED", "0")
  env["PYTHONUNBUFFERED"] = "1"
  env["HF_HUB_OFFLINE"] = "1"
  env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
  return env


def _spawn(argv: List[str], log_path: str) -> subprocess.Popen:
  """Starts argv in its own process group, stdout+stderr to log_path and to a line queue."""
  proc = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          start_new_session=True)
  proc.lines = queue.Queue()  # type: ignore[attr-defined]
  proc.t_start = time.monotonic()  # type: ignore[attr-defined]
  log = open(log_path, "w")

  def pump():
    for line in proc.stdout:
      log.write(line)
      log.flush()
      proc.lines.put((time.monotonic(), line))
    log.close()

  threading.Thread(target=pump, daemon=True).start()
  return proc


def _kill_group(proc: subprocess.Popen) -> None:
  try:
    os.killpg(proc.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  proc.wait()


def _tail(path: str, n: int = 15) -> List[str]:
  try:
    with open(path, errors="replace") as f:
      return [l.rstrip("\n")[:300] for l in f.readlines()[-n:]]
  except OSError:
    return []


def _run_measured(argv: List[str], log_path: str, timeout: float,
                  watch=None) -> Dict:
  """Runs one command to the end (or timeout), measuring its tree's peak RSS.

  watch(proc, now) is called every poll; it may return "kill" to SIGKILL the process group.
  """
  mon = TreeMonitor()
  load = os.getloadavg()[0]
  proc = _spawn(argv, log_path)
  mon.add(proc.pid)
  t0 = proc.t_start
  status = None
  while proc.poll() is None:
    mon.poll()
    now = time.monotonic()
    if now - t0 > timeout:
      _kill_group(proc)
      status = "timeout"
      break
    if watch is not None and watch(proc, now) == "kill":
      _kill_group(proc)
      status = "killed"
      break
    time.sleep(FLAGS.poll_seconds)
  if watch is not None:
    watch(proc, time.monotonic())
  rc = proc.wait()
  if status is None:
    status = "ok" if rc == 0 else "failed"
  out = {"status": status, "returncode": rc, "seconds": round(time.monotonic() - t0, 3),
         **mon.record(), "log": os.path.relpath(log_path, REPO),
         "loadavg_1m_at_start": round(load, 2)}
  if status in ("failed", "timeout"):
    out["log_tail"] = _tail(log_path)
  return out


# ---- stages ----------------------------------------------------------------------------------

class Ctx:
  def __init__(self, work: str, commit: str):
    self.work = work
    self.commit = commit
    self.code_id = code_id(commit)
    self.logs = os.path.join(work, "logs")
    os.makedirs(self.logs, exist_ok=True)
    self.source = os.path.join(work, "source")
    self.bank = os.path.join(work, "bank", "label_bank")
    self.cache = os.path.join(work, "teacher_cache")
    self.tfds = os.path.join(work, "tfds")
    self.train = os.path.join(work, "train")
    self.export = os.path.join(work, "export")

  def record_path(self, stage: str) -> str:
    return os.path.join(self.work, f"{stage}.record.json")


def stage_generate(ctx: Ctx) -> Dict:
  argv = [sys.executable, os.path.abspath(__file__), "--run_stage=generate",
          f"--work_dir={FLAGS.work_dir}", f"--num_species={FLAGS.num_species}",
          f"--num_rows={FLAGS.num_rows}", f"--num_workers={FLAGS.num_workers}",
          f"--photo_size={FLAGS.photo_size}", f"--seed={FLAGS.seed}", f"--teacher={FLAGS.teacher}"]
  rec = _run_measured(argv, os.path.join(ctx.logs, "generate.log"), FLAGS.timeout_generate)
  done = os.path.join(ctx.work, "generate.complete.json")
  if rec["status"] == "ok" and os.path.isfile(done):
    with open(done) as f:
      rec.update(json.load(f))
    rec["examples_per_second"] = round(FLAGS.num_rows / rec["seconds"], 2)
  return rec


def generate_complete(ctx: Ctx) -> bool:
  done = os.path.join(ctx.work, "generate.complete.json")
  if not (os.path.isfile(done) and os.path.isdir(ctx.source)):
    return False
  try:
    from formats import label_bank as label_bank_format
    label_bank_format.read_label_bank(ctx.bank, require_meta=True)
  except Exception as e:  # pylint: disable=broad-except
    print(f"[scale] generated label bank unusable with this version's reader ({e}); "
          "regenerating", flush=True)
    return False
  return True


def stage_teacher_cache(ctx: Ctx) -> Dict:
  from formats import teacher_cache as cache_format
  shutil.rmtree(ctx.cache, ignore_errors=True)
  os.makedirs(ctx.cache)
  # The generated label bank stands in for a text-encoder pass over every taxon.
  shutil.copytree(ctx.bank, os.path.join(ctx.cache, "label_bank"))
  n = FLAGS.num_workers
  mon = TreeMonitor()
  procs = []
  for i in range(n):
    argv = [sys.executable, "-m", "teacher_cache", f"--source={ctx.source}",
            f"--out_dir={ctx.cache}", f"--teacher={FLAGS.teacher}", "--pretrained=none",
            f"--shard_index={i}", f"--num_shards={n}", "--torch_threads=1",
            f"--batch_size={FLAGS.teacher_batch_size}", "--rows_per_part=512",
            "--decode_workers=1", "--log_every_seconds=10"]
    p = _spawn(argv, os.path.join(ctx.logs, f"teacher_cache-{i}.log"))
    mon.add(p.pid)
    procs.append(p)
  rows_dir = os.path.join(ctx.cache, cache_format.ROWS_DIR)
  prepared: List[Optional[float]] = [None] * n
  first_row: List[Optional[float]] = [None] * n
  t0 = min(p.t_start for p in procs)
  status = None
  while True:
    mon.poll()
    now = time.monotonic()
    for i, p in enumerate(procs):
      shard_dir = os.path.join(rows_dir, cache_format.shard_name(i, n))
      if prepared[i] is None and os.path.isdir(shard_dir):
        prepared[i] = now - p.t_start
      if first_row[i] is None and prepared[i] is not None:
        if glob.glob(os.path.join(shard_dir, "part-*")) and any(
            cache_format.PART_RE.match(x) for x in os.listdir(shard_dir)):
          first_row[i] = now - p.t_start
    if all(p.poll() is not None for p in procs):
      break
    if now - t0 > FLAGS.timeout_teacher_cache:
      for p in procs:
        _kill_group(p)
      status = "timeout"
      break
    time.sleep(FLAGS.poll_seconds)
  seconds = time.monotonic() - t0
  rcs = [p.wait() for p in procs]
  if status is None:
    status = "ok" if all(rc == 0 for rc in rcs) else "failed"
  starts = [s for s in prepared if s is not None]
  rec = {"status": status, "seconds": round(seconds, 3), "returncodes": rcs,
         "writer": "python -m teacher_cache (real CLI), label bank pre-generated",
         **mon.record(),
         "peak_rss_bytes_per_worker_max": max(mon.peak_per_root.values() or [0]),
         "worker_start_seconds": {
             "first": round(min(starts), 3) if starts else None,
             "others_max": round(sorted(starts)[-1], 3) if len(starts) > 1 else None,
             "per_worker": [None if s is None else round(s, 3) for s in prepared],
             "definition": "spawn -> rows/<shard>/ exists (prepare done, lock released)"},
         "first_row_seconds": {
             "per_worker": [None if s is None else round(s, 3) for s in first_row],
             "definition": "spawn -> first committed part file"},
         "worker_prepare_seconds": _prepare_seconds(
             [os.path.join(ctx.logs, f"teacher_cache-{i}.log") for i in range(n)]),
         "logs": os.path.relpath(ctx.logs, REPO)}
  if status == "ok":
    written = 0
    for i in range(n):
      with open(cache_format.done_path(ctx.cache, cache_format.shard_name(i, n))) as f:
        written += int(json.load(f)["written"])
    rec["rows_written"] = written
    rec["examples_per_second"] = round(written / seconds, 2)
  else:
    rec["log_tail"] = {i: _tail(os.path.join(ctx.logs, f"teacher_cache-{i}.log"), 8)
                       for i, rc in enumerate(rcs) if rc != 0}
  return rec


PREPARED_RE = re.compile(r"cache prepared in ([0-9.]+) s \(([0-9.]+) s waiting for the lock; "
                         r"(the first|a later) worker\)")


def _prepare_seconds(log_paths: List[str]) -> Dict:
  """Each worker's own account of prepare_cache() (its "cache prepared in" log line)."""
  per = []
  for path in log_paths:
    try:
      with open(path, errors="replace") as f:
        m = PREPARED_RE.search(f.read())
    except OSError:
      m = None
    per.append(None if m is None else {"seconds": float(m.group(1)),
                                       "lock_wait_seconds": float(m.group(2)),
                                       "first": m.group(3) == "the first"})
  return prepare_summary(per)


def prepare_summary(per_worker: List[Optional[Dict]]) -> Dict:
  """first / others_max / others_max_own_work (less the wait for the lock) from per-worker
  prepare records (recomputed from them whenever a result is assembled)."""
  later = [p for p in per_worker if p and not p["first"]]
  first = [p["seconds"] for p in per_worker if p and p["first"]]
  return {"first": first[0] if first else None,
          "others_max": max(p["seconds"] for p in later) if later else None,
          "others_max_own_work": (round(max(p["seconds"] - p["lock_wait_seconds"] for p in later),
                                        3) if later else None),
          "others_lock_wait_max": max(p["lock_wait_seconds"] for p in later) if later else None,
          "per_worker": per_worker,
          "definition": "in the worker, after its imports and the teacher's load: "
                        "prepare_cache() from its call to its return (manifest checked under "
                        "the cache's lock; taxonomy and label-bank tables read). A later "
                        "worker that starts beside the first waits for the lock while the "
                        "first builds or checks the taxonomy and label bank (lock_wait); "
                        "own_work is the rest"}


def teacher_cache_complete(ctx: Ctx) -> bool:
  from formats import teacher_cache as cache_format
  n = FLAGS.num_workers
  return all(os.path.isfile(cache_format.done_path(ctx.cache, cache_format.shard_name(i, n)))
             for i in range(n))


def _tfds_info(ctx: Ctx) -> List[str]:
  return glob.glob(os.path.join(ctx.tfds, "tree_of_life_distill", "*", "*", "dataset_info.json"))


def stage_tfds(ctx: Ctx) -> Dict:
  shutil.rmtree(ctx.tfds, ignore_errors=True)
  argv = [sys.executable, "-m", "tfds_treeoflife.build", f"--cache_dir={ctx.cache}",
          f"--data_dir={ctx.tfds}", "--beam_runner=DirectRunner",
          "--beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing"]
  rec = _run_measured(argv, os.path.join(ctx.logs, "tfds.log"), FLAGS.timeout_tfds)
  rec["runner"] = "DirectRunner, direct_num_workers=2, multi_processing"
  if rec["status"] == "ok":
    rec["examples_per_second"] = round(FLAGS.num_rows / rec["seconds"], 2)
  return rec


def _train_argv(ctx: Ctx) -> List[str]:
  ov = {"model.name": repr(FLAGS.train_model), "model.alpha": FLAGS.train_alpha,
        "phases.float.steps": FLAGS.train_steps, "checkpoint_every": FLAGS.checkpoint_every,
        "log_every": 1, "batch_size": FLAGS.train_batch_size,
        "head.chunk_size": FLAGS.train_head_chunk}
  return ([sys.executable, "-m", "bioclip_lite_tf.train",
           "--config=bioclip_lite_tf/configs/default.py:runlocal", f"--workdir={ctx.train}",
           f"--data_dir={ctx.tfds}", "--phases=float"]
          + [f"--override={k}={v}" for k, v in ov.items()])


def stage_train(ctx: Ctx) -> Dict:
  shutil.rmtree(ctx.train, ignore_errors=True)
  kills = sorted(int(k) for k in FLAGS.kill_steps if int(k) < FLAGS.train_steps)
  segments = []
  peak = peak_pss = 0
  for seg in range(len(kills) + 1):
    kill_at = kills[seg] if seg < len(kills) else None
    st = {"restored": 0 if seg == 0 else None, "first": None, "last": None, "steps": []}

    def watch(proc, now, st=st, kill_at=kill_at):
      while True:
        try:
          t, line = proc.lines.get_nowait()
        except queue.Empty:
          break
        m = RESUMED_RE.search(line)
        if m:
          st["restored"] = int(m.group(1))
          st["restored_at"] = t - proc.t_start
        m = STEP_RE.search(line)
        if m and "[train]" in line:
          s = int(m.group(1))
          st["steps"].append((t - proc.t_start, s))
          if st["first"] is None and s > (st["restored"] or 0):
            st["first"] = (t - proc.t_start, s)
          st["last"] = s
      # Past kill_at: the checkpoint of step kill_at (saved after its log line) is on disk.
      if kill_at is not None and st["last"] is not None and st["last"] > kill_at:
        return "kill"
      return None

    rec = _run_measured(_train_argv(ctx), os.path.join(ctx.logs, f"train-{seg}.log"),
                        FLAGS.timeout_train_segment, watch)
    peak = max(peak, rec["peak_rss_bytes"])
    peak_pss = max(peak_pss, rec["peak_pss_bytes"])
    after_restore = (round(st["first"][0] - st["restored_at"], 3)
                     if st["first"] and st.get("restored_at") is not None else None)
    rec.update({"kill_at_step": kill_at, "restored_step": st["restored"],
                "restore_line_to_first_step_seconds": after_restore,
                "first_step_seconds": st["first"][0] if st["first"] else None,
                "first_step": st["first"][1] if st["first"] else None,
                "last_step": st["last"]})
    if len(st["steps"]) > 2:
      (ta, sa), (tb, sb) = st["steps"][1], st["steps"][-1]
      if tb > ta and sb > sa:
        rec["steady_photos_per_second"] = round((sb - sa) * FLAGS.train_batch_size / (tb - ta), 2)
    segments.append(rec)
    if rec["status"] not in ("ok", "killed"):
      break
  ok = (segments[-1]["status"] == "ok"
        and os.path.isfile(os.path.join(ctx.train, "float", "phase.done.json")))
  failed = [s for s in segments if s["status"] not in ("ok", "killed")]
  out = {"status": "ok" if ok else (failed[0]["status"] if failed else "failed"),
         "seconds": round(sum(s["seconds"] for s in segments), 3),
         "peak_rss_bytes": peak, "peak_pss_bytes": peak_pss, "steps": FLAGS.train_steps,
         "batch_size": FLAGS.train_batch_size,
         "model": f"{FLAGS.train_model} alpha {FLAGS.train_alpha}, runlocal resolution",
         "fresh_start_seconds": segments[0]["first_step_seconds"],
         "resume_seconds": [{"step": s["restored_step"], "killed_at": segments[i]["kill_at_step"],
                             "seconds": s["first_step_seconds"],
                             "after_restore_seconds": s["restore_line_to_first_step_seconds"],
                             "loadavg_1m_at_start": s["loadavg_1m_at_start"]}
                            for i, s in enumerate(segments[1:])],
         "segments": segments}
  rates = [s.get("steady_photos_per_second") for s in segments if s.get("steady_photos_per_second")]
  if rates:
    out["examples_per_second"] = rates[-1]
  return out


def stage_export(ctx: Ctx) -> Dict:
  shutil.rmtree(ctx.export, ignore_errors=True)
  argv = [sys.executable, "-m", "bioclip_lite_tf.export", f"--workdir={ctx.train}",
          f"--data_dir={ctx.tfds}", f"--out_dir={ctx.export}", "--phase=float",
          "--num_representative=16"]
  rec = _run_measured(argv, os.path.join(ctx.logs, "export.log"), FLAGS.timeout_export)
  if rec["status"] == "ok":
    rec["examples_per_second"] = round(FLAGS.num_species / rec["seconds"], 2)
    rec["examples_are"] = "species rows of the device label bank"
    total = 0
    for root, _, files in os.walk(ctx.export):
      total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    rec["export_bytes"] = total
  return rec


RUNNERS = {"generate": stage_generate, "teacher_cache": stage_teacher_cache,
           "tfds": stage_tfds, "train": stage_train, "export": stage_export}


def complete(ctx: Ctx, stage: str) -> bool:
  if stage == "generate":
    return generate_complete(ctx)
  if stage == "teacher_cache":
    return teacher_cache_complete(ctx)
  if stage == "tfds":
    return bool(_tfds_info(ctx))
  if stage == "train":
    return os.path.isfile(os.path.join(ctx.train, "float", "phase.done.json"))
  return os.path.isfile(os.path.join(ctx.export, "manifest.json"))


def inputs_ready(ctx: Ctx, stage: str) -> bool:
  before = {"teacher_cache": "generate", "tfds": "teacher_cache", "train": "tfds",
            "export": "train"}.get(stage)
  return before is None or complete(ctx, before)


# ---- result ----------------------------------------------------------------------------------

def _git(*args) -> str:
  try:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=30).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return ""


MEASURED_DIRS = ("formats", "teacher_cache", "tfds_treeoflife", "bioclip_lite_tf")
# The code each stage runs: a stage's earlier record is reused only while these trees are the
# same (a change to the student's code does not re-run the teacher cache, and so on).
STAGE_DIRS = {
    "generate": ("formats", "teacher_cache"),
    "teacher_cache": ("formats", "teacher_cache"),
    "tfds": ("formats", "teacher_cache", "tfds_treeoflife"),
    "train": ("formats", "tfds_treeoflife", "bioclip_lite_tf"),
    "export": ("formats", "tfds_treeoflife", "bioclip_lite_tf"),
}


def code_id(commit: str, dirs=MEASURED_DIRS) -> str:
  """The git tree ids of the measured code (`dirs`) at a commit (equal for commits that differ
  only elsewhere: bench/, docs, tests); plus '+dirty:<hash of the diff>' when measuring HEAD with
  uncommitted changes there (so the same uncommitted state is still recognised)."""
  if not commit:
    return ""
  ids = [_git("rev-parse", f"{commit}:{d}") for d in dirs]
  out = ",".join(i[:12] for i in ids)
  if commit == _git("rev-parse", "HEAD"):
    diff = _git("diff", "HEAD", "--", *dirs)
    if diff:
      import hashlib
      out += "+dirty:" + hashlib.sha256(diff.encode("utf-8", "replace")).hexdigest()[:12]
  return out


def goals(stages: Dict[str, Dict]) -> Dict:
  out = {}
  res = [r["seconds"] for r in stages.get("train", {}).get("resume_seconds", [])
         if r.get("seconds")]
  ratio = round(max(res) / min(res), 3) if len(res) >= 2 else None
  out["resume_independent_of_step"] = {
      "value": ratio, "goal": f"max/min resume seconds over the kill steps <= {RESUME_RATIO_GOAL}",
      "pass": None if ratio is None else ratio <= RESUME_RATIO_GOAL}
  later = stages.get("teacher_cache", {}).get("worker_start_seconds", {}).get("others_max")
  out["later_workers_start"] = {"value": later, "goal": f"<= {LATER_WORKER_GOAL_S} s",
                                "pass": None if later is None else later <= LATER_WORKER_GOAL_S}
  # The same goal for prepare alone (no imports): reported beside the one above, not instead.
  # Its own work: the first worker's build under the lock happens once, and the others wait
  # for it by design (the issue: "the first worker builds it under the lock; the others read
  # it"); others_max with that wait is reported beside.
  prep = stages.get("teacher_cache", {}).get("worker_prepare_seconds") or {}
  own = prepare_summary(prep["per_worker"])["others_max_own_work"] if prep.get("per_worker") \
      else None
  out["later_workers_prepare"] = {
      "value": own, "goal": f"<= {LATER_WORKER_GOAL_S} s of a later worker's own prepare work "
                            "(after imports; less its wait for the first worker's lock)",
      "with_lock_wait": prep.get("others_max"),
      "pass": None if own is None else own <= LATER_WORKER_GOAL_S}
  rss = {s: r.get("peak_rss_bytes") for s, r in stages.items()
         if s != "generate" and r.get("peak_rss_bytes")}
  # The cache stage's figure sums all concurrent workers; the goal is per process there.
  per = dict(rss)
  if "teacher_cache" in stages and stages["teacher_cache"].get("peak_rss_bytes_per_worker_max"):
    per["teacher_cache"] = stages["teacher_cache"]["peak_rss_bytes_per_worker_max"]
  out["peak_rss_per_stage"] = {
      "value": per, "goal": f"<= {RSS_GOAL_BYTES} bytes per stage (teacher_cache: per worker)",
      "pass": None if not per else all(v <= RSS_GOAL_BYTES for v in per.values()),
      "failing": sorted(s for s, v in per.items() if v > RSS_GOAL_BYTES)}
  return out


def assemble(ctx: Ctx, stages: Dict[str, Dict], load_before) -> Dict:
  from bench import results_io
  gen = stages.get("generate", {})
  tc = stages.get("teacher_cache", {})
  tr = stages.get("train", {})
  return {
      "benchmark": "scale_sim",
      "git_commit": ctx.commit,
      "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
      "code_id": ctx.code_id,
      "num_species": FLAGS.num_species,
      "num_rows": FLAGS.num_rows,
      "num_workers": FLAGS.num_workers,
      "embed_dim": gen.get("embed_dim"),
      "rank_counts": gen.get("rank_counts"),
      "status": {s: r.get("status") for s, r in stages.items()},
      "seconds": {s: r.get("seconds") for s, r in stages.items()},
      "peak_rss_bytes": {s: r.get("peak_rss_bytes") for s, r in stages.items()},
      "peak_pss_bytes": {s: r.get("peak_pss_bytes") for s, r in stages.items()},
      "examples_per_second": {s: r.get("examples_per_second") for s, r in stages.items()},
      "teacher_cache": {
          "writer": tc.get("writer"),
          "worker_start_seconds": tc.get("worker_start_seconds",
                                         {"first": None, "others_max": None}),
          "first_row_seconds": tc.get("first_row_seconds"),
          "worker_prepare_seconds": (prepare_summary(tc["worker_prepare_seconds"]["per_worker"])
                                     if tc.get("worker_prepare_seconds") else None),
          "peak_rss_bytes_per_worker_max": tc.get("peak_rss_bytes_per_worker_max")},
      "train": {"resume_seconds": tr.get("resume_seconds", []),
                "fresh_start_seconds": tr.get("fresh_start_seconds"),
                "steps": tr.get("steps"), "batch_size": tr.get("batch_size"),
                "model": tr.get("model")},
      "goals": goals(stages),
      "stages": stages,
      "definitions": __doc__.split("Definitions (all seconds are wall clock):")[1].split(
          "A stage that")[0].strip(),
      "machine": results_io.machine(loadavg_before=load_before, loadavg_after=os.getloadavg()),
  }


def main(argv):
  del argv
  work = os.path.join(os.path.abspath(FLAGS.work_dir),
                      f"s{FLAGS.num_species}_r{FLAGS.num_rows}_w{FLAGS.num_workers}")
  os.makedirs(work, exist_ok=True)
  if FLAGS.run_stage == "generate":
    print(json.dumps(_generate(work)), flush=True)
    return 0
  if FLAGS.run_stage:
    print(f"unknown --run_stage={FLAGS.run_stage}", file=sys.stderr)
    return 2
  unknown = [s for s in FLAGS.stages if s not in STAGES]
  if unknown:
    print(f"--stages: unknown {unknown}; stages are {list(STAGES)}", file=sys.stderr)
    return 2
  if FLAGS.num_species < 1 or FLAGS.num_rows < 1 or FLAGS.num_workers < 1:
    print("--num_species, --num_rows and --num_workers must be >= 1", file=sys.stderr)
    return 2
  ctx = Ctx(work, _git("rev-parse", "HEAD"))
  load_before = os.getloadavg()
  stages: Dict[str, Dict] = {}
  redo_rest = False
  for stage in STAGES:
    if stage not in FLAGS.stages:
      continue
    path = ctx.record_path(stage)
    old = None
    if os.path.isfile(path):
      with open(path) as f:
        old = json.load(f)
    force = (FLAGS.force_generate if stage == "generate" else (FLAGS.force or redo_rest)
             ) or stage in FLAGS.redo
    # Same code for this stage: its own trees at the recorded commit (a dirty record keeps
    # the whole-tree id it was measured with, which only that same dirty state matches).
    dirs = STAGE_DIRS[stage]
    same_code = old is not None and (
        old["code_id"] == ctx.code_id if "+dirty:" in (old.get("code_id") or "")
        else code_id(old.get("git_commit", ""), dirs) == code_id(ctx.commit, dirs))
    reusable = (old is not None and old.get("status") == "ok" and complete(ctx, stage)
                and (stage == "generate" or same_code))
    if reusable and not force:
      print(f"[scale] {stage}: complete (measured at {old.get('git_commit', '')[:10]}), reused",
            flush=True)
      old["reused"] = True
      stages[stage] = old
      continue
    redo_rest = True  # a redone stage invalidates everything downstream
    if not inputs_ready(ctx, stage):
      stages[stage] = {"status": "skipped", "reason": "the previous stage's output is missing"}
      print(f"[scale] {stage}: skipped (input missing)", flush=True)
      continue
    print(f"[scale] {stage}: running", flush=True)
    rec = RUNNERS[stage](ctx)
    rec["git_commit"] = ctx.commit
    rec["code_id"] = ctx.code_id
    rec.setdefault("examples_per_second", None)
    from formats import atomic
    atomic.write_json(path, rec)
    stages[stage] = rec
    print(f"[scale] {stage}: {rec['status']} in {rec.get('seconds')} s, peak RSS "
          f"{(rec.get('peak_rss_bytes') or 0) / 2**20:.0f} MiB", flush=True)
  result = assemble(ctx, stages, load_before)
  from bench import results_io
  results_io.write_result(FLAGS.out, result)
  print(json.dumps({k: result[k] for k in ("status", "seconds", "peak_rss_bytes",
                                           "examples_per_second", "teacher_cache", "train",
                                           "goals")}, indent=1), flush=True)
  print(f"[scale] wrote {FLAGS.out}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
