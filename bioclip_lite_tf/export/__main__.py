r"""Export the QAT student for devices: TF.js (uint8), TFLite int8, SavedModel, label bank.

  python -m bioclip_lite_tf.export --workdir=WORKDIR --out_dir=EXPORT [--data_dir=TFDS_DIR] \
      [--bank_dtype=int8|int4|float16] [--bank_dims=0|D] [--bank_compact=default|OPTION]

What is written is described in bioclip_lite_tf/export/exporter.py and docs/FORMATS.md
section 4. Exit status 2 for bad input: no QAT checkpoint, a label bank whose width does not
match the model, a --data_dir without a dataset, a bank dtype / dims / compact option that is
not one (checked before anything is built).
"""
from __future__ import annotations

import sys

from absl import app, flags

from formats.errors import FormatError
from bioclip_lite_tf.data import DataError
from bioclip_lite_tf.export import compact_bank, device_bank
from bioclip_lite_tf.export.exporter import ExportInputError, export

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding qat/model.h5 (the "
                    "quantization-aware student written by bioclip_lite_tf.train).")
flags.DEFINE_string("out_dir", None, "Export directory to write (replaced atomically).")
flags.DEFINE_string("data_dir", None, "Built tree_of_life_distill dataset (TFDS data dir or "
                    "its version dir): label bank, teacher.json, calibration photos.")
flags.DEFINE_string("label_bank_dir", None, "A label_bank/ directory to ship instead of the "
                    "dataset's (e.g. from python -m teacher_cache.label_bank).")
flags.DEFINE_string("phase", "qat", "Which phase's model.h5 to export (qat for release).")
flags.DEFINE_string("bank_dtype", None, "Storage of the species rows of the device label bank: "
                    "int8 (default) or int4 with a float32 scale per row, or float16.")
flags.DEFINE_alias("label_bank_dtype", "bank_dtype")
flags.DEFINE_string("bank_dims", None, "0 (default): rows at the full embedding width; D > 0: "
                    "rows projected to D dims by a PCA fitted on the bank (the projection "
                    "ships with it; scores are q.mean + (q @ P).row).")
flags.DEFINE_string("bank_compact", None, "A compact bank option instead of --bank_dtype/"
                    "--bank_dims: 'default' (the measured choice, "
                    f"{compact_bank.DEFAULT_COMPACT}), or e.g. int4, pca128_int8, pca256_int4 "
                    "(bench/label_bank_compact.py measures them).")
flags.DEFINE_integer("num_representative", 200, "Validation photos used to calibrate the "
                     "TFLite int8 activation ranges.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.workdir or not FLAGS.out_dir:
    print("error: --workdir and --out_dir are required", file=sys.stderr)
    return 2
  try:
    bank_dtype, bank_dims = device_bank.resolve_bank_option(FLAGS.bank_dtype, FLAGS.bank_dims,
                                                            FLAGS.bank_compact)
  except FormatError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  try:
    manifest = export(FLAGS.workdir, FLAGS.out_dir, FLAGS.data_dir, FLAGS.label_bank_dir,
                      FLAGS.phase, bank_dtype, FLAGS.num_representative,
                      label_bank_dims=bank_dims)
  except (ExportInputError, FormatError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sizes = {k: v["bytes"] for k, v in manifest["files"].items()}
  tfjs_bytes = sum(v for k, v in sizes.items() if k.startswith("tfjs/"))
  print(f"exported to {FLAGS.out_dir}: R={manifest['resolution']} D={manifest['embed_dim']}, "
        f"TF.js {tfjs_bytes} bytes, TFLite {sizes.get('tflite/model_int8.tflite')} bytes")
  return 0


if __name__ == "__main__":
  app.run(main)
