"""`make demo`: the whole BioCLIP Lite chain on built-in demo data, into one output directory.

Each stage runs as its own process, exactly as a user would type it, so the demo exercises the
public CLIs. A stage that finished writes `<out_dir>/.done/<stage>.json`; a re-run skips it, and
the stages' own resume logic covers a stage that was killed midway. `--force` starts from scratch.

Usage: python -m pipeline.demo --out_dir=runs/demo [--force] [--only=stage,...]
"""
from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Callable, List

from absl import app, flags

from formats import atomic

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "runs/demo", "Where every output of the demo goes.")
flags.DEFINE_integer("views", 1, "Teacher views per photo in the demo's cache. 1 (the whole "
                     "photo) keeps `make demo` within 15 minutes on 2 cores: every extra view "
                     "costs another teacher forward per photo (V=1 against V=2: "
                     "bench/results/teacher_cache.json); the tests cover V=2.")
flags.DEFINE_bool("force", False, "Delete out_dir first and redo every stage.")
flags.DEFINE_list("only", [], "Run only these stages (names as printed), e.g. 'export,evaluate'.")
flags.DEFINE_string("teacher", "ViT-B-16", "open_clip teacher for the cache. The demo has no "
                    "internet, so it uses BioCLIP's architecture with random weights.")
flags.DEFINE_string("pretrained", "none", "Teacher weights: 'none' (random), a checkpoint path, "
                    "or empty for the hub default.")
flags.DEFINE_string("setup_times", "", "A file `make demo` wrote around its set-up: line 1 the "
                    "set-up's wall seconds, then bash's `times` output (shell, then children "
                    "user/sys). Recorded as the `setup` entry of timings.json.")
flags.DEFINE_integer("cores", 2, "Cores of an idle machine, for the idle-wall estimate in "
                     "timings.json (CPU seconds / cores).")

# The demo times the student at 224 only (the teacher's input size, which the report needs for
# its speed-up); the sweep over resolutions and the long repetitions are `make bench`'s
# (bench/latency_bench.py writes bench/results/latency.json).
EVALUATE_LATENCY_ARGS = ["--latency_resolutions=224", "--latency_runs=10", "--teacher_runs=3"]


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  description: str
  # Builds argv (after `python -m`) from the out_dir.
  argv: Callable[[str], List[str]]


def _p(out_dir: str, *parts: str) -> str:
  return os.path.join(out_dir, *parts)


STAGES = [
    Stage("demo_data", "generate synthetic photos of real taxa in TreeOfLife-10M shard format",
          lambda o: ["teacher_cache.demo_data", f"--out_dir={_p(o, 'data')}"]),
    Stage("teacher_cache", "BioCLIP-architecture teacher: embeddings, top-k logits, label bank",
          lambda o: ["teacher_cache", f"--source={_p(o, 'data')}/shard-*.tar",
                     f"--out_dir={_p(o, 'teacher_cache')}", f"--teacher={FLAGS.teacher}",
                     f"--pretrained={FLAGS.pretrained}", f"--views={FLAGS.views}"]),
    Stage("tfds_build", "TFDS dataset tree_of_life_distill from the cache",
          lambda o: ["tfds_treeoflife.build", f"--cache_dir={_p(o, 'teacher_cache')}",
                     f"--data_dir={_p(o, 'tfds')}"]),
    Stage("train", "MobileNetV3 student: float, then pruning, then QAT",
          lambda o: ["bioclip_lite_tf.train", "--config=bioclip_lite_tf/configs/demo.py",
                     f"--workdir={_p(o, 'train')}", f"--data_dir={_p(o, 'tfds')}"]),
    Stage("export", "TF.js (uint8), TFLite int8, SavedModel, device label bank, manifest",
          lambda o: ["bioclip_lite_tf.export", f"--workdir={_p(o, 'train')}",
                     f"--data_dir={_p(o, 'tfds')}", f"--out_dir={_p(o, 'export')}"]),
    Stage("evaluate", "report.json, plots, MODEL_CARD.md",
          lambda o: ["bioclip_lite_tf.evaluate", f"--workdir={_p(o, 'train')}",
                     f"--export_dir={_p(o, 'export')}", f"--data_dir={_p(o, 'tfds')}",
                     f"--out_dir={_p(o, 'report')}", *EVALUATE_LATENCY_ARGS]),
]


def _done_path(out_dir: str, stage: Stage) -> str:
  return _p(out_dir, ".done", f"{stage.name}.json")


def _children_cpu() -> float:
  """user + sys seconds of every finished child process of this one (and theirs)."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _timing(wall: float, cpu: float, cores: int) -> dict:
  return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
          "idle_wall_estimate_s": round(max(cpu / max(cores, 1), 0.0), 1)}


def run_stage(out_dir: str, stage: Stage, index: int, total: int) -> dict:
  """Runs one stage as a subprocess; returns its timing: wall seconds, CPU seconds (user + sys
  of the stage's processes) and the idle-machine estimate; {} when skipped."""
  marker = _done_path(out_dir, stage)
  argv = [sys.executable, "-m"] + stage.argv(out_dir)
  head = f"[{index}/{total}] {stage.name}: {stage.description}"
  if os.path.exists(marker):
    print(f"{head}\n    done before, skipped ({marker})", flush=True)
    return {}
  print(f"{head}\n    $ {' '.join(argv[1:])}", flush=True)
  start, cpu0 = time.time(), _children_cpu()
  result = subprocess.run(argv)
  seconds, cpu = time.time() - start, _children_cpu() - cpu0
  if result.returncode != 0:
    print(f"\nstage {stage.name} failed with exit code {result.returncode} after {seconds:.0f}s; "
          f"fix the cause and run `make demo` again: finished stages are kept.", file=sys.stderr)
    sys.exit(result.returncode)
  timing = _timing(seconds, cpu, FLAGS.cores)
  atomic.write_json(marker, {"argv": argv[1:], "seconds": round(seconds, 1), **timing,
                             "finished": time.time()})
  print(f"    finished in {seconds:.0f}s ({cpu:.0f} CPU s)", flush=True)
  return timing


def read_setup_times(path: str, cores: int) -> dict:
  """The set-up's timing from the file `make demo` writes (see --setup_times); {} if absent."""
  if not path or not os.path.exists(path):
    return {}
  with open(path) as f:
    lines = [line.split() for line in f if line.strip()]
  try:
    wall = float(lines[0][0])
    # bash `times`: "0m0.010s 0m0.004s" for the shell, then the same for its children.
    def secs(tok):
      m, s = tok.rstrip("s").split("m")
      return 60 * float(m) + float(s)
    cpu = sum(secs(t) for line in lines[1:3] for t in line[:2])
  except (IndexError, ValueError) as e:
    print(f"warning: {path} is not `make demo`'s set-up timing file ({e}); set-up not recorded",
          file=sys.stderr)
    return {}
  return _timing(wall, cpu, cores)


def write_timings(out_dir: str, timings: dict, cores: int) -> str:
  """<out_dir>/timings.json: per stage {wall_s, cpu_s, idle_wall_estimate_s}, this run's stages
  merged over an earlier run's (a skipped stage keeps the timing it had), and the totals."""
  path = _p(out_dir, "timings.json")
  stages = {}
  if os.path.exists(path):
    with open(path) as f:
      stages = json.load(f).get("stages", {})
  stages.update({k: v for k, v in timings.items() if v})
  total = {key: round(sum(v[key] for v in stages.values()), 1)
           for key in ("wall_s", "cpu_s", "idle_wall_estimate_s")}
  atomic.write_json(path, {"stages": stages, "total": total, "cores_for_estimate": cores,
                           "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                           "cpu_count": os.cpu_count(),
                           "finished": time.time()})
  return path


def _get(d, path, default="n/a"):
  for key in path.split("."):
    if not isinstance(d, dict) or key not in d:
      return default
    d = d[key]
  return d


def _fmt(v, spec):
  return format(v, spec) if isinstance(v, (int, float)) else str(v)


def headline(out_dir: str) -> str:
  """A short table of the numbers that matter, read from report.json."""
  path = _p(out_dir, "report", "report.json")
  if not os.path.exists(path):
    return f"(no report at {path})"
  with open(path) as f:
    r = json.load(f)
  lat = _get(r, "latency_ms", {})
  rows = [
      ("student params", _fmt(_get(r, "model.params"), ",")),
      ("sparsity", _fmt(_get(r, "model.sparsity"), ".3f")),
      ("Keras fp32 bytes", _fmt(_get(r, "model.keras_fp32_bytes"), ",")),
      ("TF.js bytes", _fmt(_get(r, "model.tfjs_bytes"), ",")),
      ("TFLite int8 bytes", _fmt(_get(r, "model.tflite_bytes"), ",")),
      ("TF.js vs Keras cosine min", _fmt(_get(r, "parity.tfjs_vs_keras.cosine_min"), ".7f")),
      ("TF.js vs Keras top-1 agreement", _fmt(_get(r, "parity.tfjs_vs_keras.top1_agreement"), ".4f")),
      ("TFLite vs Keras top-1 agreement", _fmt(_get(r, "parity.tflite_vs_keras.top1_agreement"), ".4f")),
      ("student vs teacher species top-1",
       _fmt(_get(r, "accuracy.student_vs_teacher.top1.species"), ".3f")),
      ("student vs teacher genus top-1",
       _fmt(_get(r, "accuracy.student_vs_teacher.top1.genus"), ".3f")),
      ("hierarchy consistency", _fmt(_get(r, "hierarchy.consistency"), ".3f")),
  ]
  for runtime in sorted(lat) if isinstance(lat, dict) else []:
    if isinstance(lat[runtime], dict) and "224" in lat[runtime]:
      rows.append((f"latency {runtime} @224 (ms)", _fmt(lat[runtime]["224"], ".2f")))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def main(argv):
  del argv
  out_dir = FLAGS.out_dir
  if FLAGS.force and os.path.exists(out_dir):
    print(f"--force: removing {out_dir}", flush=True)
    shutil.rmtree(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  stages = STAGES
  if FLAGS.only:
    unknown = set(FLAGS.only) - {s.name for s in STAGES}
    if unknown:
      print(f"--only names unknown stages {sorted(unknown)}; stages are "
            f"{[s.name for s in STAGES]}", file=sys.stderr)
      sys.exit(2)
    stages = [s for s in STAGES if s.name in FLAGS.only]
  start = time.time()
  timings = {"setup": read_setup_times(FLAGS.setup_times, FLAGS.cores)}
  for i, stage in enumerate(stages, 1):
    timings[stage.name] = run_stage(out_dir, stage, i, len(stages))
  timings_path = write_timings(out_dir, timings, FLAGS.cores)
  print(f"\nBioCLIP Lite demo finished in {time.time() - start:.0f}s (per stage: "
        f"{timings_path}). Outputs in {out_dir}/:")
  for sub, what in [("data", "synthetic demo photos (TreeOfLife-10M shard format)"),
                    ("teacher_cache", "teacher embeddings, top-k logits, label bank"),
                    ("tfds", "TFDS dataset tree_of_life_distill"),
                    ("train", "checkpoints, TensorBoard logs, summary.json"),
                    ("export", "tfjs/model.json, tflite/, saved_model/, labels/, manifest.json"),
                    ("report", "report.json, plots, MODEL_CARD.md")]:
    print(f"  {os.path.join(out_dir, sub):<28} {what}")
  print("\nHeadline numbers (synthetic photos, random-weight teacher: these measure the "
        "machinery, not BioCLIP's accuracy):")
  print(headline(out_dir))


if __name__ == "__main__":
  app.run(main)
