r"""Student vs teacher latency and size, in one run: writes bench/results/latency.json.

  python bench/latency_bench.py [--workdir=runs/demo/train] [--out=bench/results/latency.json]

Student: the QAT student of --workdir (qat/model.h5) if given, else the demo recipe's student
(bioclip_lite_tf/configs/demo.py: MobileNetV3 Small, width 0.5) built with D=512 (BioCLIP's
width) and made quantization-aware with random weights: latency and raw size do not depend on
the weight values. It is exported as the exporter does (plain graph with QAT weights, TF.js
with uint8 weight storage, TFLite int8) and timed per photo (batch 1, median) at 128..256 on:
Keras CPU, TFLite with XNNPACK, TF.js in Node with the wasm backend.
Teacher: open_clip ViT-B-16 (BioCLIP's architecture, random weights: same cost) in a torch
subprocess at 224. All runtimes use --threads threads (TF.js wasm in Node is single-threaded).

Headline ratios (goals from the issue, measured here, not asserted):
  speedup_vs_teacher_224        teacher ms / fastest student runtime ms at 224 (goal >= 25)
  size_ratio_teacher_over_tfjs  teacher fp32 weight bytes / TF.js artifact bytes (goal >= 100)
"""
from __future__ import annotations

import datetime
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from bench import results_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir whose qat/model.h5 is timed; default: "
                    "the demo recipe's student with random weights.")
flags.DEFINE_string("config", "bioclip_lite_tf/configs/demo.py", "Student config (used when "
                    "--workdir is not given).")
flags.DEFINE_integer("embed_dim", 512, "Embedding width D of the built student (BioCLIP: 512).")
flags.DEFINE_list("resolutions", ["128", "160", "192", "224", "256"], "Student input sizes.")
flags.DEFINE_integer("runs", 20, "Timed runs per runtime and resolution (median).")
flags.DEFINE_integer("teacher_runs", 5, "Timed runs of the teacher at 224 (median).")
flags.DEFINE_integer("threads", 1, "CPU threads for Keras, TFLite and torch.")
flags.DEFINE_string("teacher_architecture", "ViT-B-16", "open_clip architecture of the teacher.")
flags.DEFINE_string("out", "bench/results/latency.json", "Where to write the JSON.")


def build_student(config_path: str, embed_dim: int):
  from bioclip_lite_tf import config as config_lib, model as student_model
  from bioclip_lite_tf.optimize import quantization
  cfg = config_lib.load_config(config_path)
  cfg.model.resolution = 224
  core = student_model.build_student(cfg.model, embed_dim)
  folded = student_model.fold_batch_norms(core, cfg.model, embed_dim)
  # Fresh BNs fold to all-zero biases, which grappler removes (a graph no trained model has);
  # small random biases keep the graph the trained student's.
  import numpy as np
  rng = np.random.RandomState(0)
  for layer in folded.layers:
    weights = layer.get_weights()
    if len(weights) == 2 and weights[1].ndim == 1:
      layer.set_weights([weights[0], rng.normal(0, 0.01, weights[1].shape).astype("float32")])
  return quantization.quantize(folded), {"config": config_path, "name": cfg.model.name,
                                         "alpha": cfg.model.alpha,
                                         "weights": "random init (non-zero biases)"}


def main(argv):
  del argv
  from bioclip_lite_tf.keras import tf
  if FLAGS.threads > 0:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  import gzip
  import numpy as np
  from bioclip_lite_tf import export
  from bioclip_lite_tf.evaluate import latency as eval_latency
  from bioclip_lite_tf.export import plain_graph as export_graph
  from bioclip_lite_tf.export import tflite as export_tflite

  start = time.time()
  if FLAGS.workdir:
    qat = export.load_qat_model(FLAGS.workdir)
    student_info = {"workdir": os.path.abspath(FLAGS.workdir), "weights": "trained"}
  else:
    qat, student_info = build_student(FLAGS.config, FLAGS.embed_dim)
  plain = export_graph.plain_inference_model(qat).model
  plain = eval_latency.model_at_resolution(plain, 224)
  counts = export_graph.count_params(plain)
  student_info.update(params=counts["params"], embed_dim=export.model_embed_dim(plain),
                      keras_fp32_bytes=4 * counts["params"])
  resolutions = [int(r) for r in FLAGS.resolutions]
  calibration = export.synthetic_photos(32, 224, seed=1)

  sizes = {}
  with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
    eval_latency.convert_tfjs_at(plain, os.path.join(tmp, "tfjs"))
    files = [os.path.join(tmp, "tfjs", f) for f in sorted(os.listdir(os.path.join(tmp,
                                                                                   "tfjs")))]
    sizes["tfjs_bytes"] = sum(os.path.getsize(f) for f in files)
    sizes["tfjs_gzip_bytes"] = sum(len(gzip.compress(open(f, "rb").read(), 9)) for f in files)
    tflite = export_tflite.convert_int8(plain, lambda: (calibration[i:i + 1] for i in
                                                        range(len(calibration))))
    sizes["tflite_bytes"] = len(tflite)
  sizes["keras_fp32_bytes"] = student_info["keras_fp32_bytes"]
  logging.info("student: %s; sizes %s", student_info, sizes)

  student = eval_latency.student_latency(plain, resolutions, FLAGS.runs, calibration,
                                         FLAGS.threads, None, 224, log=logging.info)
  teacher = eval_latency.teacher_latency(FLAGS.teacher_runs, 224, FLAGS.threads,
                                         FLAGS.teacher_architecture)
  latency = student["latency_ms"]
  latency["teacher_torch_cpu"] = {"224": teacher["latency_ms"]}
  by_runtime = {rt: teacher["latency_ms"] / v["224"] for rt, v in latency.items()
                if rt != "teacher_torch_cpu" and v.get("224")}
  sizes["teacher_fp32_bytes"] = teacher["fp32_bytes"]
  result = {
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "machine": results_io.machine(),
      "threads": student["threads"] | {"teacher_torch_cpu": teacher["threads"]},
      "student": student_info,
      "teacher": teacher,
      "latency_ms": latency,
      "memory": student["memory"],
      "sizes": sizes,
      "speedup_vs_teacher_224": max(by_runtime.values()) if by_runtime else None,
      "speedup_vs_teacher_224_by_runtime": by_runtime,
      "size_ratio_teacher_over_tfjs": teacher["fp32_bytes"] / sizes["tfjs_bytes"],
      "goals": {"speedup_vs_teacher_224": ">= 25", "size_ratio_teacher_over_tfjs": ">= 100"},
      "errors": student["errors"],
      "seconds": round(time.time() - start, 1),
  }
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  results_io.write_result(FLAGS.out, result)
  print(json.dumps({k: result[k] for k in ("speedup_vs_teacher_224",
                                           "speedup_vs_teacher_224_by_runtime",
                                           "size_ratio_teacher_over_tfjs")}, indent=2))
  return 1 if result["errors"] else 0


if __name__ == "__main__":
  app.run(main)
