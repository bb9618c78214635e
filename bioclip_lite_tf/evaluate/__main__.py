r"""Evaluate the exported student: report.json, plots, MODEL_CARD.md.

  python -m bioclip_lite_tf.evaluate --workdir=WORKDIR --export_dir=EXPORT \
      --data_dir=TFDS_DIR --out_dir=REPORT

Or on your own labelled photos (class folders or a CSV; no teacher, no dataset build; see
bioclip_lite_tf/evaluate/photos.py):

  python -m bioclip_lite_tf.evaluate --photos=DIR_OR_CSV --export_dir=EXPORT [--out=REPORT]

What is measured and written is described in bioclip_lite_tf/evaluate/evaluation.py. Exit
status 2 for bad input (missing or mismatched export, dataset or checkpoint).
"""
from __future__ import annotations

import sys

from absl import app, flags

from formats.errors import FormatError
from bioclip_lite_tf.data import DataError
from bioclip_lite_tf.evaluate.evaluation import EvaluationInputError, evaluate
from bioclip_lite_tf.keras import tf

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir holding qat/model.h5.")
flags.DEFINE_string("export_dir", None, "Export directory written by bioclip_lite_tf.export.")
flags.DEFINE_string("data_dir", None, "Built tree_of_life_distill dataset (TFDS data dir or "
                    "its version dir).")
flags.DEFINE_string("out_dir", None, "Where to write report.json, plots and MODEL_CARD.md.")
flags.DEFINE_string("phase", "qat", "Which phase's model.h5 is the Keras reference.")
flags.DEFINE_integer("max_eval_examples", 0, "Evaluate at most this many validation photos "
                     "(0 = all).")
flags.DEFINE_integer("parity_examples", 256, "Photos run through TF.js and TFLite for parity.")
flags.DEFINE_list("latency_resolutions", ["128", "160", "192", "224", "256"],
                  "Input sizes at which the student's latency is measured (224, the "
                  "teacher's, is always added).")
flags.DEFINE_integer("latency_runs", 20, "Timed runs per runtime and resolution (median).")
flags.DEFINE_integer("teacher_runs", 5, "Timed runs of the teacher at 224 (median).")
flags.DEFINE_integer("threads", 1, "CPU threads for every runtime (Keras intra-op, TFLite, "
                     "torch teacher; TF.js wasm in Node is single-threaded). One thread "
                     "everywhere keeps the student/teacher ratio fair and stable on a shared "
                     "machine; 0 leaves each runtime's default.")
flags.DEFINE_string("teacher_architecture", "ViT-B-16", "open_clip architecture timed as the "
                    "teacher (BioCLIP is ViT-B-16).")
flags.DEFINE_bool("force", False, "Redo sections finished by an earlier run.")
flags.DEFINE_string("photos", None, "Your own labelled photos: iNat21-style class folders or a "
                    "CSV with path and kingdom..species columns. Needs only --export_dir.")
flags.DEFINE_string("out", None, "With --photos: where to write photos_report.json (default "
                    "--out_dir, else ./photos_report).")


def photos_main() -> int:
  from bioclip_lite_tf.evaluate import photos as photos_lib
  if not FLAGS.export_dir:
    print("error: --export_dir is required with --photos", file=sys.stderr)
    return 2
  out = FLAGS.out or FLAGS.out_dir or "photos_report"
  try:
    report = photos_lib.evaluate_photos(FLAGS.photos, FLAGS.export_dir, out,
                                        log=lambda m: print(m, file=sys.stderr))
  except (photos_lib.PhotosInputError, FormatError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for runtime, res in report["runtimes"].items():
    if res:
      top1 = res["accuracy"]["student_vs_truth"]["top1"]
      print(f"{runtime}: n={res['accuracy']['n']} top-1 species {top1['species']:.3f} genus "
            f"{top1['genus']:.3f} family {top1['family']:.3f}; mistake severity "
            f"{res['hierarchy']['mistake_severity']}")
  print(f"photos report written to {out}/{photos_lib.REPORT_NAME} ({report['n_evaluated']} "
        f"photos; {len(report['unknown_names'])} unknown name(s))")
  return 0


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if FLAGS.photos is not None:
    return photos_main()
  for name in ("workdir", "export_dir", "data_dir", "out_dir"):
    if not getattr(FLAGS, name):
      print(f"error: --{name} is required", file=sys.stderr)
      return 2
  try:
    resolutions = [int(r) for r in FLAGS.latency_resolutions]
  except ValueError:
    print(f"error: --latency_resolutions={FLAGS.latency_resolutions} must be integers",
          file=sys.stderr)
    return 2
  if FLAGS.threads > 0:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  try:
    report = evaluate(FLAGS.workdir, FLAGS.export_dir, FLAGS.data_dir, FLAGS.out_dir,
                      FLAGS.phase, FLAGS.max_eval_examples, FLAGS.parity_examples, resolutions,
                      FLAGS.latency_runs, FLAGS.teacher_runs, FLAGS.threads,
                      FLAGS.teacher_architecture, FLAGS.force)
  except (EvaluationInputError, FormatError, DataError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  p = report["parity"]
  print(f"report written to {FLAGS.out_dir}/report.json: species top-1 student vs teacher "
        f"{report['accuracy']['student_vs_teacher']['top1']['species']:.3f}, TF.js cosine min "
        f"{p['tfjs_vs_keras'].get('cosine_min')}, TFLite top-1 agreement "
        f"{p['tflite_vs_keras']['top1_agreement']:.4f}")
  return 0


if __name__ == "__main__":
  app.run(main)
