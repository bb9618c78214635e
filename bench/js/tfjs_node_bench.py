r"""react-bio-clip classify() latency in Node (wasm and cpu backends) -> bench/results/tfjs_node.json.

  .venv/bin/python bench/js/tfjs_node_bench.py [--export_dir=EXPORT] [--out=bench/results/tfjs_node.json]

Without --export_dir it first writes (once, then reuses) an export of the real student
architecture with random weights and a 10,000-species label bank
(react-bio-clip/bench/make_bench_export.py), since latency depends on the architecture and the
bank size, not on the weights. Then it runs react-bio-clip/bench/classify_latency.js, which
writes the JSON (schema in react-bio-clip/README.md, "Latency in Node"). Needs
`npm ci` in react-bio-clip (make setup does it). A benchmark: nothing is asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys

from absl import app, flags

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE = os.path.join(REPO, "react-bio-clip")

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", "", "Export directory to benchmark; empty: make (or reuse) the "
                    "random-weight real-architecture export in --cache_dir.")
flags.DEFINE_string("cache_dir", os.path.join(REPO, "runs", "bench_tfjs_export"),
                    "Where the generated benchmark export is kept between runs.")
flags.DEFINE_string("out", os.path.join(REPO, "bench", "results", "tfjs_node.json"),
                    "JSON file to write.")
flags.DEFINE_integer("runs", 10, "Timed classify calls per backend and input.")
flags.DEFINE_string("backends", "wasm,cpu", "TF.js backends to time.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not os.path.isdir(os.path.join(PACKAGE, "node_modules", "@tensorflow", "tfjs")):
    print(f"error: {PACKAGE}/node_modules is missing; run `npm ci` there (make setup)",
          file=sys.stderr)
    return 2
  export_dir = FLAGS.export_dir
  if not export_dir:
    export_dir = FLAGS.cache_dir
    if not os.path.isfile(os.path.join(export_dir, "manifest.json")):  # written last: complete
      subprocess.run([sys.executable, os.path.join(PACKAGE, "bench", "make_bench_export.py"),
                      f"--out_dir={export_dir}"], check=True, cwd=REPO)
  elif not os.path.isfile(os.path.join(export_dir, "manifest.json")):
    print(f"error: {export_dir}/manifest.json does not exist", file=sys.stderr)
    return 2
  subprocess.run(["npm", "run", "build", "--silent"], check=True, cwd=PACKAGE)
  subprocess.run(["node", os.path.join("bench", "classify_latency.js"),
                  f"--export_dir={os.path.abspath(export_dir)}", f"--out={os.path.abspath(FLAGS.out)}",
                  f"--runs={FLAGS.runs}", f"--backends={FLAGS.backends}"], check=True, cwd=PACKAGE)
  return 0


if __name__ == "__main__":
  app.run(main)
