r"""Export the QAT student for devices: TF.js (uint8), TFLite int8, SavedModel, label bank.

  python -m bioclip_lite_tf.export --workdir=WORKDIR --out_dir=EXPORT [--data_dir=TFDS_DIR]

What is written is described in bioclip_lite_tf/export/exporter.py and docs/FORMATS.md
section 4. Exit status 2 for bad input: no QAT checkpoint, a label bank whose width does not
match the model, a --data_dir without a dataset.
"""
from __future__ import annotations

import sys

from absl import app, flags

from formats import device_label_bank as device_format
from formats.errors import FormatError
from bioclip_lite_tf.data import DataError
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
flags.DEFINE_enum("label_bank_dtype", "int8", list(device_format.DTYPES),
                  "Storage of the species text embeddings in the device label bank.")
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
    manifest = export(FLAGS.workdir, FLAGS.out_dir, FLAGS.data_dir, FLAGS.label_bank_dir,
                      FLAGS.phase, FLAGS.label_bank_dtype, FLAGS.num_representative)
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
