r"""Student vs teacher latency and size, in one run: writes bench/results/latency.json.

  python bench/latency_bench.py [--workdir=runs/demo/train] [--out=bench/results/latency.json]

Students: the shipped default (--config, bioclip_lite_tf/configs/default.py: MobileNetV3 Large
1.0 at 224, pruned to the config's target sparsity) and the neighbours a user would weigh
(--neighbours: Large 0.75 and Small 1.0), each at --resolutions (160..256). Random weights
(latency and raw size do not depend on the weight values; say so in `student.weights`): each
model is built with D=512 (BioCLIP's width), its kernels magnitude-pruned to the config's
sparsity as the prune phase leaves them, made quantization-aware and put through the real export
stage's plain graph (export/plain_graph.py), TF.js conversion (uint8 grid storage) and TFLite int8
conversion. With --workdir the trained QAT student there is timed instead of the default.

Runtimes, per photo (batch 1, median of --runs after warm-up):
  keras_cpu             the plain graph as a tf.function (--threads intra-op threads)
  tflite_xnnpack_1t/2t  the int8 model, tf.lite.Interpreter with XNNPACK, 1 and 2 threads
  tfjs_wasm_node        the TF.js graph model in Node, @tensorflow/tfjs-backend-wasm. Single
                        threaded: tfjs-backend-wasm 4.22 uses its threaded binary only where
                        Web Workers and cross-origin isolation exist; Node has neither, so
                        there is no threaded TF.js wasm figure here.
Teacher: the IMAGE tower (encode_image) of open_clip ViT-B-16 (BioCLIP's architecture, random
weights: same cost) in a torch subprocess at 224, in the same run: timed before and after the
students, the ratios use the mean of the two medians (load averages recorded beside them).

Headline ratios (goals from the issue, measured here, not asserted):
  latency.speedup_vs_teacher_224_by_runtime.<rt>  teacher image tower ms / student ms at 224
  latency.tfjs_over_tflite_224                    TF.js wasm ms / TFLite 1-thread ms (goal <= 2)
  sizes.size_ratio_teacher_over_tfjs              teacher IMAGE tower fp32 bytes / TF.js bytes
  sizes.download_bytes_*                          model bytes + device label bank bytes: what an
                                                  app downloads (bank: --label_bank_dir's files,
                                                  else the int8 layout's bytes for --bank_species)
A per-kernel TF.js wasm profile of the default model at 224 goes to --profile_out.
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
flags.DEFINE_string("workdir", None, "Training workdir whose qat/model.h5 is timed as the "
                    "default student; default: the --config student with random weights.")
flags.DEFINE_string("config", "bioclip_lite_tf/configs/default.py", "The shipped student's "
                    "config (used when --workdir is not given).")
flags.DEFINE_list("neighbours", ["mobilenet_v3_large:0.75", "mobilenet_v3_small:1.0"],
                  "Other students to time, as model_name:alpha (the config's other settings).")
flags.DEFINE_integer("embed_dim", 512, "Embedding width D of the built student (BioCLIP: 512).")
flags.DEFINE_list("resolutions", ["160", "192", "224", "256"], "Student input sizes.")
flags.DEFINE_integer("runs", 5, "Timed runs per runtime and resolution (median).")
flags.DEFINE_integer("teacher_runs", 3, "Timed runs of the teacher at 224 (median).")
flags.DEFINE_integer("calibration", 8, "Synthetic photos calibrating each int8 model.")
flags.DEFINE_list("tflite_threads", ["1", "2"], "XNNPACK thread counts to time.")
flags.DEFINE_integer("threads", 1, "CPU threads for Keras and torch.")
flags.DEFINE_string("teacher_architecture", "ViT-B-16", "open_clip architecture of the teacher.")
flags.DEFINE_string("label_bank_dir", None, "A device label bank directory (EXPORT/labels) whose "
                    "files are counted as the app's download beside the model.")
flags.DEFINE_integer("bank_species", 454103, "Without --label_bank_dir: the species count whose "
                     "int8 bank size (rows + per-row scales) is reported (TreeOfLife-10M: 454,103).")
flags.DEFINE_string("out", "bench/results/latency.json", "Where to write the JSON.")
flags.DEFINE_string("profile_out", "bench/results/tfjs_kernel_profile.json", "Per-kernel TF.js "
                    "wasm profile of the default student at 224 (empty: skip).")


def magnitude_prune(model, sparsity: float, min_params: int) -> float:
  """Zeroes the smallest-|w| `sparsity` of every Conv2D/Dense kernel with >= min_params weights,
  as the prune phase leaves them. Returns the overall sparsity of those kernels."""
  import numpy as np
  zeros = total = 0
  for layer in model.layers:
    kernel = getattr(layer, "kernel", None)
    if kernel is None or type(layer).__name__ not in ("Conv2D", "Dense"):
      continue
    w = kernel.numpy()
    if w.size < min_params:
      continue
    cut = np.quantile(np.abs(w), sparsity)
    w = np.where(np.abs(w) <= cut, 0.0, w).astype(w.dtype)
    kernel.assign(w)
    zeros += int((w == 0).sum())
    total += w.size
  return zeros / max(total, 1)


def build_student(config_path: str, embed_dim: int, name=None, alpha=None):
  """A random-weight QAT student of the config (model name / alpha overridden if given)."""
  import numpy as np
  from bioclip_lite_tf import config as config_lib, model as student_model
  from bioclip_lite_tf.optimize import quantization
  cfg = config_lib.load_config(config_path)
  cfg.model.resolution = 224
  cfg.model.init = "none"
  if name is not None:
    cfg.model.name = name
  if alpha is not None:
    cfg.model.alpha = float(alpha)
  core = student_model.build_student(cfg.model, embed_dim)
  folded = student_model.fold_batch_norms(core, cfg.model, embed_dim)
  # Fresh BNs fold to all-zero biases, which grappler removes (a graph no trained model has);
  # small random biases keep the graph the trained student's.
  rng = np.random.RandomState(0)
  for layer in folded.layers:
    weights = layer.get_weights()
    if len(weights) == 2 and weights[1].ndim == 1:
      layer.set_weights([weights[0], rng.normal(0, 0.01, weights[1].shape).astype("float32")])
  prune = cfg.get("prune") or {}
  target = float(prune.get("target_sparsity", 0.0))
  sparsity = magnitude_prune(folded, target, int(prune.get("min_params", 1024))) if target else 0.0
  return quantization.quantize(folded), {
      "config": config_path, "name": cfg.model.name, "alpha": cfg.model.alpha,
      "weights": "random init (non-zero biases), magnitude-pruned to the config's sparsity",
      "pruned_kernel_sparsity": sparsity}


def bank_bytes(embed_dim: int) -> dict:
  if FLAGS.label_bank_dir:
    files = sorted(os.listdir(FLAGS.label_bank_dir))
    return {"bytes": sum(os.path.getsize(os.path.join(FLAGS.label_bank_dir, f)) for f in files),
            "source": f"files of {FLAGS.label_bank_dir}: {files}"}
  n = FLAGS.bank_species
  return {"bytes": n * embed_dim + (-n * embed_dim) % 4 + 4 * n, "num_species": n,
          "source": "int8 rows + float32 per-row scales (docs/FORMATS.md section 4) for "
                    f"{n} species x D={embed_dim}; names not counted"}


def time_student(plain, resolutions, calibration, tmp, profile_resolution=None):
  """{runtime: {R: ms}}, sizes at 224 and the TF.js kernel profile at profile_resolution."""
  import gzip
  import numpy as np
  from bioclip_lite_tf.evaluate import latency as eval_latency
  from bioclip_lite_tf.export import tflite as export_tflite
  from bioclip_lite_tf.keras import tf
  threads = [int(t) for t in FLAGS.tflite_threads]
  latency = {"keras_cpu": {}} | {f"tflite_xnnpack_{t}t": {} for t in threads}
  latency["tfjs_wasm_node"] = {}
  sizes, profile, errors = {}, None, []
  for r in resolutions:
    model = eval_latency.model_at_resolution(plain, r)
    latency["keras_cpu"][str(r)] = eval_latency.keras_latency(model, FLAGS.runs)
    photos = tf.image.resize(calibration, (r, r), method="bicubic", antialias=True).numpy()
    photos = np.clip(photos, 0, 255).astype(np.float32)
    content = export_tflite.convert_int8(model, lambda: (photos[i:i + 1]
                                                         for i in range(len(photos))))
    for t in threads:
      latency[f"tflite_xnnpack_{t}t"][str(r)] = eval_latency.tflite_latency(content, FLAGS.runs, t)
    tfjs_dir = os.path.join(tmp, f"tfjs{r}")
    eval_latency.convert_tfjs_at(model, tfjs_dir)
    if r == 224:
      files = [os.path.join(tfjs_dir, f) for f in sorted(os.listdir(tfjs_dir))]
      sizes["tfjs_bytes"] = sum(os.path.getsize(f) for f in files)
      sizes["tfjs_gzip_bytes"] = sum(len(gzip.compress(open(f, "rb").read(), 9)) for f in files)
      sizes["tflite_bytes"] = len(content)
    try:
      want_profile = r == profile_resolution
      bench = eval_latency.tfjs_bench(tfjs_dir, r, FLAGS.runs, "wasm", profile=want_profile)
      latency["tfjs_wasm_node"][str(r)] = bench["latency_ms_median"]
      if want_profile:
        profile = bench.get("kernel_profile")
    except eval_latency.NodeRunnerError as e:
      errors.append(str(e))
    logging.info("latency at %d: %s", r, ", ".join(f"{k}={v.get(str(r), float('nan')):.2f}ms"
                                                   for k, v in latency.items()))
  return latency, sizes, profile, errors


def main(argv):
  del argv
  from bioclip_lite_tf.keras import tf
  if FLAGS.threads > 0:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  from bioclip_lite_tf import export
  from bioclip_lite_tf.evaluate import latency as eval_latency
  from bioclip_lite_tf.export import plain_graph as export_graph

  start = time.time()
  resolutions = [int(r) for r in FLAGS.resolutions]
  calibration = export.synthetic_photos(FLAGS.calibration, 224, seed=1)
  students = [("default", None, None)] + [
      (spec, *spec.split(":", 1)) for spec in FLAGS.neighbours]
  per_student, errors, profile = {}, [], None
  # The teacher is timed before and after the students (on a shared machine the load moves
  # during a run); the ratios use the mean of the two medians, and both are recorded.
  teacher_before = eval_latency.teacher_latency(FLAGS.teacher_runs, 224, FLAGS.threads,
                                                FLAGS.teacher_architecture)
  teacher_before["load_average_1m"] = os.getloadavg()[0]
  for key, name, alpha in students:
    if key == "default" and FLAGS.workdir:
      qat = export.load_qat_model(FLAGS.workdir)
      info = {"workdir": os.path.abspath(FLAGS.workdir), "weights": "trained"}
    else:
      qat, info = build_student(FLAGS.config, FLAGS.embed_dim, name, alpha)
    plain = eval_latency.model_at_resolution(export_graph.plain_inference_model(qat).model, 224)
    counts = export_graph.count_params(plain)
    info.update(params=counts["params"], embed_dim=export.model_embed_dim(plain),
                keras_fp32_bytes=4 * counts["params"])
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
      lat, sizes, prof, errs = time_student(plain, resolutions, calibration, tmp,
                                            224 if key == "default" else None)
    sizes["keras_fp32_bytes"] = info["keras_fp32_bytes"]
    info["load_average_1m_after"] = os.getloadavg()[0]
    per_student[key] = {"student": info, "latency_ms": lat, "sizes": sizes}
    errors += errs
    profile = prof if key == "default" else profile
    logging.info("%s done after %.0f s", key, time.time() - start)

  teacher = eval_latency.teacher_latency(FLAGS.teacher_runs, 224, FLAGS.threads,
                                         FLAGS.teacher_architecture)
  teacher["load_average_1m"] = os.getloadavg()[0]
  teacher["latency_ms_before_students"] = teacher_before["latency_ms"]
  teacher["latency_ms_after_students"] = teacher["latency_ms"]
  teacher["load_average_1m_before_students"] = teacher_before["load_average_1m"]
  teacher["latency_ms"] = (teacher_before["latency_ms"] + teacher["latency_ms"]) / 2
  bank = bank_bytes(FLAGS.embed_dim)
  for entry in per_student.values():
    lat, sizes = entry["latency_ms"], entry["sizes"]
    entry["speedup_vs_teacher_224_by_runtime"] = {
        rt: teacher["latency_ms"] / v["224"] for rt, v in lat.items() if v.get("224")}
    tfl = lat.get("tflite_xnnpack_1t", {})
    entry["tfjs_over_tflite"] = {r: lat["tfjs_wasm_node"][r] / tfl[r]
                                 for r in lat["tfjs_wasm_node"] if tfl.get(r)}
    if sizes.get("tfjs_bytes"):
      sizes["size_ratio_teacher_over_tfjs"] = teacher["fp32_bytes"] / sizes["tfjs_bytes"]
      sizes["size_ratio_teacher_over_tflite"] = teacher["fp32_bytes"] / sizes["tflite_bytes"]
      sizes["download_bytes_tfjs"] = sizes["tfjs_bytes"] + bank["bytes"]
      sizes["download_bytes_tflite"] = sizes["tflite_bytes"] + bank["bytes"]

  default = per_student["default"]
  by_runtime = default["speedup_vs_teacher_224_by_runtime"]
  result = {
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "machine": results_io.machine(),
      "threads": {"keras_cpu": FLAGS.threads, "tfjs_wasm_node": 1,
                  "tfjs_wasm_node_threads": "not available in Node (no Web Workers)",
                  "teacher_torch_cpu": teacher["threads"]}
                 | {f"tflite_xnnpack_{t}t": int(t) for t in FLAGS.tflite_threads},
      "student": dict(default["student"], config=FLAGS.config if not FLAGS.workdir
                      else FLAGS.workdir),
      "teacher": teacher | {"measured": "image tower only (encode_image); fp32_bytes: image "
                                         "tower parameters x 4"},
      "label_bank": bank,
      "latency": {
          "ms": default["latency_ms"] | {"teacher_torch_cpu": {"224": teacher["latency_ms"]}},
          "speedup_vs_teacher_224": max(by_runtime.values()) if by_runtime else None,
          "speedup_vs_teacher_224_by_runtime": by_runtime,
          "tfjs_over_tflite": default["tfjs_over_tflite"],
          "tfjs_over_tflite_224": default["tfjs_over_tflite"].get("224"),
      },
      "sizes": default["sizes"],
      "neighbours": {k: v for k, v in per_student.items() if k != "default"},
      "goals": {"speedup_vs_teacher_224": ">= 25 (TFLite and TF.js wasm)",
                "tfjs_over_tflite_224": "<= 2", "size_ratio_teacher_over_tfjs": ">= 100"},
      "errors": errors,
      "seconds": round(time.time() - start, 1),
  }
  results_io.write_result(FLAGS.out, result)
  if FLAGS.profile_out and profile:
    results_io.write_result(FLAGS.profile_out, {
        "created": result["created"], "machine": result["machine"],
        "student": result["student"], "resolution": 224, "backend": "wasm (Node)",
        "latency_ms_median": default["latency_ms"]["tfjs_wasm_node"].get("224"),
        **profile})
  print(json.dumps({k: result["latency"][k] for k in ("speedup_vs_teacher_224_by_runtime",
                                                      "tfjs_over_tflite_224")}, indent=2))
  return 1 if errors else 0


if __name__ == "__main__":
  app.run(main)
