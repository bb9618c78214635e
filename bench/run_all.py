"""`make bench`: every benchmark in one run, then summary.json (headline ratios) from the JSON.

Each benchmark is its own script writing one JSON file under --out_dir. They run one after the
other on an otherwise idle machine, so the ratios (student against teacher, TF.js against Keras,
input pipeline against training step) compare numbers taken under the same conditions.
A benchmark's old JSON is deleted before it runs, so a failed run leaves no old number behind.
bench/RESULTS.md and the READMEs' tables are then written from the JSON by `make figures`
(`python -m bench.figures`, which `make bench` runs after this).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import results_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "bench/results", "Where the benchmark scripts write their JSON "
                    "(each script's default location).")
flags.DEFINE_list("only", [], "Run only these benchmarks (file stems), e.g. 'latency,tfds'.")
flags.DEFINE_bool("skip_run", False, "Do not run anything; rewrite summary.json from existing JSON.")

# (stem, argv after the python executable, JSON file it writes under bench/results/).
BENCHMARKS = [
    ("teacher_cache", ["bench/teacher_cache_bench.py"], "teacher_cache.json"),
    ("tfds", ["bench/tfds_bench.py"], "tfds.json"),
    ("train", ["bench/train_bench.py"], "train.json"),
    ("latency", ["bench/latency_bench.py"], "latency.json"),
    ("tfjs_node", ["bench/js/tfjs_node_bench.py"], "tfjs_node.json"),
    # The whole chain at 454k species (~25 min here); stages already measured at this commit
    # are reused, so a rerun after a failure only redoes what is missing.
    ("scale", ["bench/scale_sim.py"], "scale.json"),
]


def headline_ratios(out_dir: str) -> dict:
  """The ratios the project is judged by, computed from this run's JSON."""
  def load(name):
    p = os.path.join(out_dir, name)
    if os.path.exists(p):
      with open(p) as f:
        return json.load(f)
    return {}
  out = {}
  lat = load("latency.json")
  for k, v in results_io.flatten(lat):  # the default config's figures (neighbours.* are not headlines)
    if k == "latency.speedup_vs_teacher_224" or k.startswith(
        "latency.speedup_vs_teacher_224_by_runtime."):
      out[k] = (v, ">= 25x (student faster than the teacher's image tower at 224)")
    elif k == "latency.tfjs_over_tflite_224":
      out[k] = (v, "<= 2 (TF.js wasm within 2x of TFLite)")
    elif k == "sizes.size_ratio_teacher_over_tfjs":
      out[f"latency.{k}"] = (v, ">= 100x (teacher image tower over the TF.js artifact)")
  tc = load("teacher_cache.json")
  for k, v in results_io.flatten(tc):
    if k == "stage_over_forward":
      out[f"teacher_cache.{k}"] = (v, ">= 0.9")
  td = load("tfds.json")
  for k, v in results_io.flatten(td):
    if k == "input_over_train_step":
      out[f"tfds.{k}"] = (v, ">= 3x")
  sc = load("scale.json")
  for name, g in sc.get("goals", {}).items():
    if not isinstance(g.get("value"), dict):
      out[f"scale.{name}"] = (g.get("value"), f"{g.get('goal')} (pass: {g.get('pass')})")
  return out


def main(argv):
  del argv
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  runs = {}
  if not FLAGS.skip_run:
    for stem, script, json_name in BENCHMARKS:
      if FLAGS.only and stem not in FLAGS.only:
        continue
      if not os.path.exists(script[0]):
        runs[stem] = f"missing {script[0]}"
        print(f"[bench] {stem}: {script[0]} does not exist, skipped", flush=True)
        continue
      target = os.path.join(FLAGS.out_dir, json_name)
      if os.path.exists(target):
        os.remove(target)  # a failed run must not leave an old number behind
      print(f"[bench] {stem}: running {' '.join(script)}", flush=True)
      start = time.time()
      rc = subprocess.run([sys.executable] + script).returncode
      runs[stem] = f"exit {rc} after {time.time() - start:.0f}s"
      print(f"[bench] {stem}: {runs[stem]}", flush=True)
  summary = {"machine": results_io.machine(), "runs": runs, "headline": headline_ratios(FLAGS.out_dir)}
  results_io.write_result(os.path.join(FLAGS.out_dir, "summary.json"), summary)
  print(f"[bench] wrote {FLAGS.out_dir}/summary.json; `make figures` writes bench/RESULTS.md")
  failed = [s for s, r in runs.items() if not r.startswith("exit 0")]
  if failed:
    print(f"[bench] failed or missing: {failed}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
