"""Training throughput of the student per phase (float, prune, QAT) on this machine.

  python bench/train_bench.py [--out=bench/results/train.json] [--data_dir=TFDS_DIR]
      [--config=bioclip_lite_tf/configs/demo.py] [--override=k=v] [--steps=60]
      [--demo_workdir=runs/demo/train]

Runs the real trainer (bioclip_lite_tf.train.run: tf.data pipeline, distillation losses, tfmot
wrappers, checkpointing) for --steps steps per phase and records the steady-state photos/s each
phase reports (the first, tracing step excluded). Without --data_dir it builds the synthetic
dataset (224x224 JPEGs like TreeOfLife-10M, 600 photos) once into the temp directory.
If --demo_workdir holds a finished demo run, its per-rank student-vs-teacher agreement is copied
into the JSON beside the speeds. Nothing here asserts a time.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from bench import results_io  # noqa: E402

from bioclip_lite_tf import config as config_lib  # noqa: E402
from bioclip_lite_tf import train  # noqa: E402
from bioclip_lite_tf.testing import synthetic  # noqa: E402

FLAGS = flags.FLAGS
# --data_dir, --config and --override are the trainer's own flags (defined by importing train):
# empty --data_dir builds the synthetic dataset; --config defaults to the demo recipe here.
flags.DEFINE_string("out", "bench/results/train.json", "Where to write the JSON result.")
flags.DEFINE_integer("steps", 60, "Training steps per phase.")
DEFAULT_CONFIG = "bioclip_lite_tf/configs/demo.py"
flags.DEFINE_string("demo_workdir", "runs/demo/train", "A finished demo training workdir whose "
                    "summary.json agreement figures are copied into the result (if present).")


def main(argv):
  del argv
  data_dir = FLAGS.data_dir or synthetic.cached_dataset(num_photos=600, embed_dim=512,
                                                        image_size=224)
  config_path = FLAGS.config or DEFAULT_CONFIG
  config = config_lib.load_config(config_path)
  overrides = [f"phases.{p}.steps={FLAGS.steps}" for p in train.PHASES]
  overrides += [f"phases.{p}.warmup_steps=5" for p in train.PHASES]
  overrides += ["checkpoint_every=1000000", f"log_every={max(1, FLAGS.steps // 3)}",
                "data.max_eval_examples=64", "prune.frequency=10"]
  config = config_lib.apply_overrides(config, overrides + list(FLAGS.override))
  started = time.time()
  with tempfile.TemporaryDirectory() as workdir:
    summary = train.run(config, workdir, data_dir)
  result = {
      "config": config_path,
      "model": {k: config.model[k] for k in ("name", "alpha", "resolution")},
      "batch_size": int(config.batch_size),
      "steps_per_phase": FLAGS.steps,
      "embed_dim": summary["embed_dim"],
      "num_species": summary["num_species"],
      "photos_per_second": {p: r["photos_per_second"] for p, r in summary["phases"].items()},
      "wall_seconds": round(time.time() - started, 1),
      "machine": results_io.machine(),
  }
  demo_summary = os.path.join(FLAGS.demo_workdir, "summary.json")
  if os.path.exists(demo_summary):
    with open(demo_summary) as f:
      demo = json.load(f)
    result["demo_agreement"] = {
        p: r.get("validation", {}).get("top1_agreement") for p, r in demo["phases"].items()}
    result["demo_photos_per_second"] = {p: r.get("photos_per_second")
                                        for p, r in demo["phases"].items()}
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  results_io.write_result(FLAGS.out, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  app.run(main)
