"""Writes small device label banks of every row option, by the Python writer, for the JS reader tests.

  .venv/bin/python react-bio-clip/scripts/make_bank_fixtures.py \
      --out_dir=react-bio-clip/test/fixtures_banks

Per variant (int8, int4, float16, int4 with a 12-d projection, int8 with a 20-d projection)
OUT/<variant>/ holds the bank's files (formats.device_label_bank, format version 2), written
from the same synthetic 96-species tree (bioclip_lite_tf.testing.export_fixtures) at D=32, the
width of the fixture model. OUT/expected.json holds, per variant, Python's side of the answer
for three fixed queries: the cosines `queries @ species_embeddings.T` as formats'
read_device_label_bank reconstructs them, and every species' full name and common name. The
JS test (test/bank_fixtures.test.js) checks react-bio-clip's reader and scorer against it.
"""
from __future__ import annotations

import os
import tempfile

from absl import app, flags
import numpy as np

from bioclip_lite_tf.export import device_bank
from bioclip_lite_tf.testing import export_fixtures
from formats import atomic
from formats import device_label_bank

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "react-bio-clip/test/fixtures_banks", "Directory to (re)write.")
flags.DEFINE_integer("embed_dim", 32, "Row width D (the fixture model's).")

VARIANTS = {"int8": ("int8", None), "int4": ("int4", None), "float16": ("float16", None),
            "int4_projected": ("int4", 12), "int8_projected": ("int8", 20)}


def main(argv):
  del argv
  d = FLAGS.embed_dim
  rng = np.random.default_rng(0)
  queries = rng.standard_normal((3, d)).astype(np.float32)
  queries /= np.linalg.norm(queries, axis=1, keepdims=True)
  expected = {"queries": queries.tolist(), "variants": {}}
  with tempfile.TemporaryDirectory() as scratch:
    src = os.path.join(scratch, "ds", "label_bank")
    export_fixtures.write_label_bank(src, embed_dim=d, logit_scale=30.0)
    source = device_bank.read_source_label_bank(src)
    tmp = atomic.fresh_tmp_dir(FLAGS.out_dir)
    for name, (dtype, proj) in VARIANTS.items():
      out = os.path.join(tmp, name)
      device_bank.write_device_label_bank(source, out, dtype, proj or 0)
      back = device_label_bank.read_device_label_bank(out)
      expected["variants"][name] = {
          "cosines": (queries.astype(np.float64) @ back.species_embeddings.T.astype(np.float64)).tolist(),
          "species": list(back.table("species").names),
          "common_names": list(back.table("species").common_names),
          "genus": list(back.table("genus").names),
      }
    atomic.write_json(os.path.join(tmp, "expected.json"), expected)
    atomic.replace_dir(tmp, FLAGS.out_dir)
  print(f"wrote {FLAGS.out_dir}: {', '.join(VARIANTS)}")
  return 0


if __name__ == "__main__":
  app.run(main)
