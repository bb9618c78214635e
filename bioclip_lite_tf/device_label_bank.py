r"""Build a device label bank from a label_bank/ directory.

  python -m bioclip_lite_tf.device_label_bank --label_bank_dir=DIR/label_bank --out_dir=OUT \
      [--dtype=int8|int4|float16] [--projection_dim=d] [--logit_scale=100]

Reads a label_bank/ directory (<rank>.tsv + <rank>.npy, docs/FORMATS.md sections 1-2) inside a
TFDS dataset directory (teacher in ../teacher.json), a teacher_cache directory (../manifest.json)
or a `python -m teacher_cache.label_bank` output (label_bank.json beside the tables). Writes
OUT/label_bank.json, label_bank.bin, names.bin (+ common_names.bin) (formats.device_label_bank,
format version 2, docs/FORMATS.md section 4).
Exit status 2 for a malformed or missing label bank.
"""
from __future__ import annotations

import sys

from absl import app, flags

from formats import device_label_bank as device_format
from formats.errors import FormatError
from bioclip_lite_tf.export.device_bank import read_source_label_bank, write_device_label_bank

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("label_bank_dir", None, "A label_bank/ directory: <rank>.tsv and "
                      "<rank>.npy for the 7 ranks (inside a TFDS dataset dir, a teacher_cache "
                      "dir, or written by `python -m teacher_cache.label_bank`).")
  flags.DEFINE_string("out_dir", None, "Where to write label_bank.json, label_bank.bin, names.bin "
                      "and common_names.bin.")
  flags.DEFINE_enum("dtype", "int8", list(device_format.DTYPES), "Storage of the species text "
                    "embeddings: int8 or int4 with a float32 scale per row, or float16.")
  flags.DEFINE_integer("projection_dim", None, "Store rows in this many dimensions through a "
                       "PCA fitted on the bank (smaller; scores approximate). Default: all D.")
  flags.DEFINE_float("logit_scale", None, "The logit multiplier (exp applied, ~100 for "
                     "BioCLIP); only needed when no teacher description sits beside the bank.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.label_bank_dir or not FLAGS.out_dir:
    print("error: --label_bank_dir and --out_dir are required", file=sys.stderr)
    return 2
  try:
    source = read_source_label_bank(FLAGS.label_bank_dir, FLAGS.logit_scale)
    meta = write_device_label_bank(source, FLAGS.out_dir, FLAGS.dtype, FLAGS.projection_dim)
  except FormatError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  total = sum(f["bytes"] for f in meta["files"].values())
  print(f"wrote {FLAGS.out_dir}/{device_format.JSON_NAME} and {', '.join(meta['files'])}: "
        f"{meta['num_species']} species, D={meta['embed_dim']}, stored {meta['dtype']} x "
        f"{meta['rows']['stored_dim']}, {total} bytes")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
