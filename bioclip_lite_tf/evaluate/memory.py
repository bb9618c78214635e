"""Peak RSS of a process that loads the Keras student and classifies one photo.

  python -m bioclip_lite_tf.evaluate.memory --workdir=WORKDIR [--phase=qat] [--export_dir=EXPORT]

Prints one JSON line: {"peak_rss_bytes": ..., "baseline_rss_bytes": ...}. Run as its own
process by evaluate (so nothing else the evaluator loaded is counted). The baseline is the
peak after importing TensorFlow and before loading the model; both are VmHWM from
/proc/self/status (ru_maxrss where /proc is missing).
"""
from __future__ import annotations

import json
import os
import resource
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
  """The CLI's flags: defined only when this module runs as the program (importing it, as the
  package's other modules and tests may, defines none)."""
  flags.DEFINE_string("workdir", None, "Training workdir holding <phase>/model.h5.")
  flags.DEFINE_string("phase", "qat", "Which phase's model.h5 to load.")
  flags.DEFINE_string("export_dir", None, "Optional export directory: its device label bank is "
                      "loaded too and the photo is classified against it.")


def _peak_bytes() -> int:
  """Peak RSS of this process image. VmHWM belongs to the address space made by exec, whereas
  ru_maxrss carries the parent's high-water mark across fork + exec (here it reported the
  1.7 GB evaluator, not this process)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv):
  del argv
  if not FLAGS.workdir:
    print("error: --workdir is required", file=sys.stderr)
    return 2
  import numpy as np
  from bioclip_lite_tf.keras import tf  # noqa: F401  (TF import is part of the baseline)
  baseline = _peak_bytes()
  from bioclip_lite_tf import export
  try:
    model = export.load_qat_model(FLAGS.workdir, FLAGS.phase)
  except export.ExportInputError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  r = export.model_resolution(model)
  photo = np.random.RandomState(0).uniform(0, 255, (1, r, r, 3)).astype(np.float32)
  embedding = model(photo, training=False).numpy()
  if FLAGS.export_dir and os.path.isdir(os.path.join(FLAGS.export_dir, "labels")):
    from formats import device_label_bank
    bank = device_label_bank.read_device_label_bank(os.path.join(FLAGS.export_dir, "labels"))
    int((embedding @ bank.species_embeddings.T).argmax())
  print(json.dumps({"peak_rss_bytes": _peak_bytes(), "baseline_rss_bytes": baseline}))
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
