r"""Writes an export of the real student architecture (random weights) for the Node latency bench.

  .venv/bin/python react-bio-clip/bench/make_bench_export.py --out_dir=/tmp/bioclip_bench_export

Latency depends on the architecture and the label bank size, not on the weights, so this builds
the student exactly as training does (bioclip_lite_tf.model.build_student from a config, BN
folded, QAT-wrapped by bioclip_lite_tf.optimize.quantization.quantize) with random weights, a synthetic
taxonomy of --num_species species with random unit text embeddings, and exports it with
bioclip_lite_tf.export.export, the same call `python -m bioclip_lite_tf.export` makes. Nothing
here is an accuracy number. A real trained export (`make demo`) can be benchmarked directly.
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

from formats import atomic  # noqa: E402
from formats import label_bank as label_bank_format  # noqa: E402
from formats.ranks import RANKS  # noqa: E402
from formats.taxonomy import make_rank_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Export directory to write (replaced atomically).")
flags.DEFINE_string("config", "bioclip_lite_tf/configs/default.py",
                    "Training config whose `model` section defines the student (name, alpha, "
                    "resolution); `path:arg` passes switches, e.g. ...default.py:small.")
flags.DEFINE_integer("embed_dim", 512, "Embedding width D (BioCLIP's is 512).")
flags.DEFINE_integer("num_species", 10000,
                     "Species in the synthetic device label bank (a regional checklist scale; "
                     "the full 454k bank is 233 MB int8 and 930 MB as float32 tensors).")
flags.DEFINE_integer("seed", 0, "Seed for weights and text embeddings.")

# Children per taxon at each rank below kingdom, roughly tree-of-life shaped.
_FANOUT = (3, 4, 4, 4, 4, 5)


def write_synthetic_label_bank(directory: str, num_species: int, embed_dim: int, seed: int):
  """label_bank/ (formats.label_bank) and ../teacher.json (docs/FORMATS.md section 1)."""
  rng = np.random.default_rng(seed)
  rows = {rank: [] for rank in RANKS}
  rows["kingdom"] = [("K0", -1), ("K1", -1), ("K2", -1)]
  for depth, rank in enumerate(RANKS[1:], start=1):
    parents = rows[RANKS[depth - 1]]
    wanted = num_species if rank == "species" else None
    index = 0
    while True:
      for parent_row, (parent_name, _) in enumerate(parents):
        for _ in range(_FANOUT[depth - 1]):
          rows[rank].append((f"{parent_name} {rank[:2]}{index}", parent_row))
          index += 1
          if wanted is not None and len(rows[rank]) == wanted:
            break
        if wanted is not None and len(rows[rank]) == wanted:
          break
      if wanted is None or len(rows[rank]) == wanted:
        break
  tables = [make_rank_table(rank, [n for n, _ in rows[rank]], [p for _, p in rows[rank]],
                            [""] * len(rows[rank])) for rank in RANKS]

  def unit_rows(table):  # species rows are what ships; higher ranks only need to be valid
    text = rng.normal(size=(len(table), embed_dim)).astype(np.float32)
    yield text / np.linalg.norm(text, axis=1, keepdims=True)

  label_bank_format.write_label_bank(directory, tables, embed_dim, unit_rows)
  atomic.write_json(os.path.join(os.path.dirname(directory), "teacher.json"),
                    {"id": "hf-hub:imageomics/bioclip", "real_weights": False,
                     "logit_scale": 100.0, "embed_dim": embed_dim})


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  from bioclip_lite_tf import config as config_lib, export, model
  from bioclip_lite_tf.optimize import quantization
  from bioclip_lite_tf.keras import keras
  keras.utils.set_random_seed(FLAGS.seed)
  config = config_lib.load_config(FLAGS.config)
  core = model.build_student(config.model, FLAGS.embed_dim, fold_batch_norm=True)
  # Fresh layers have all-zero biases, which grappler folds away, turning hard-sigmoid's "+ 3"
  # into a rank-0 fused bias that the exporter rightly refuses for wasm. A trained student never
  # has exactly-zero biases; give these small random ones (latency does not depend on values).
  rng = np.random.default_rng(FLAGS.seed)
  for weight in core.weights:
    if "bias" in weight.name and not np.any(weight.numpy()):
      weight.assign(rng.normal(0.0, 0.01, size=weight.shape).astype(np.float32))
  qat = quantization.quantize(core, config.qat.scheme)
  logging.info("student %s alpha=%s R=%s: %d parameters", config.model.name, config.model.alpha,
               config.model.resolution, core.count_params())
  with tempfile.TemporaryDirectory() as scratch:
    bank_dir = os.path.join(scratch, "label_bank")
    write_synthetic_label_bank(bank_dir, FLAGS.num_species, FLAGS.embed_dim, FLAGS.seed)
    export.export(workdir=scratch, out_dir=FLAGS.out_dir, label_bank_dir=bank_dir,
                  num_representative=8, qat_model=qat)
  print(f"wrote {FLAGS.out_dir}")
  return 0


if __name__ == "__main__":
  sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
  app.run(main)
