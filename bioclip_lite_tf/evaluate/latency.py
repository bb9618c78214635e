"""Latency and memory of the student on each runtime, and of the teacher, in one process tree.

Runtimes (per photo, batch 1, median of `runs` after warm-up):
  keras_cpu          the plain inference graph (export_graph) as a tf.function, TF's CPU kernels
  tflite_xnnpack     the full-integer int8 model, tf.lite.Interpreter (XNNPACK delegate on)
  tfjs_wasm_node     the TF.js graph model in Node, @tensorflow/tfjs-backend-wasm
  teacher_torch_cpu  open_clip ViT-B-16 (BioCLIP's architecture; random weights cost the same)
                     image tower, in a subprocess: TensorFlow-side code never imports torch.
Other resolutions use the same weights: the student is fully convolutional up to a global
pool, so the graph is rebuilt with a new input size and converted again.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional

import numpy as np

from bioclip_lite_tf.export.saved_model import save_core_saved_model
from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.export import tflite as export_tflite
from bioclip_lite_tf.export import tfjs as export_tfjs

# The npm package runs the export itself (its own loader, dequantizer and classify()).
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JS_DIR = os.path.join(REPO, "react-bio-clip")
RUNNER = os.path.join(JS_DIR, "scripts", "run_tfjs.js")


class NodeRunnerError(RuntimeError):
  """The Node TF.js runner is missing or failed."""


class TeacherTimingError(RuntimeError):
  """The torch subprocess that times the teacher failed or timed out (torch/open_clip absent)."""


def node_available() -> Optional[str]:
  """Problem description when the Node runner cannot run, else None."""
  if shutil.which("node") is None:
    return "node is not on PATH"
  if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "@tensorflow", "tfjs")):
    return f"{JS_DIR}/node_modules is missing: run `make setup` (npm ci in {JS_DIR})"
  if not os.path.isfile(os.path.join(JS_DIR, "dist", "node", "index.js")):
    return f"{JS_DIR}/dist is missing: run `make setup` (npm run build in {JS_DIR})"
  return None


def run_node(args, timeout: float = 1800) -> dict:
  problem = node_available()
  if problem:
    raise NodeRunnerError(problem)
  proc = subprocess.run(["node", RUNNER] + list(args), capture_output=True, text=True,
                        timeout=timeout)
  if proc.returncode != 0:
    raise NodeRunnerError(f"node {RUNNER} {' '.join(args)} failed ({proc.returncode}): "
                          f"{proc.stderr.strip()[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def tfjs_embed(model_dir: str, photos: np.ndarray, backend: str = "wasm") -> np.ndarray:
  """Runs the TF.js model in Node on photos float32 [N, R, R, 3] -> float32 [N, D]."""
  with tempfile.TemporaryDirectory(prefix="tfjs-io-") as tmp:
    x_path, y_path = os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.f32")
    np.ascontiguousarray(photos, np.float32).tofile(x_path)
    info = run_node(["infer", f"--model_dir={model_dir}", f"--input={x_path}",
                     f"--shape={','.join(str(s) for s in photos.shape)}",
                     f"--output={y_path}", f"--backend={backend}"])
    return np.fromfile(y_path, np.float32).reshape(len(photos), info["dim"])


def model_at_resolution(model: keras.Model, resolution: int) -> keras.Model:
  """The same functional model and weights with input [N, resolution, resolution, 3]."""
  if model.inputs[0].shape[1] == resolution:
    return model
  inputs = keras.Input((resolution, resolution, model.inputs[0].shape[-1]),
                       dtype=model.inputs[0].dtype, name=model.inputs[0].name.split(":")[0])
  clone = keras.models.clone_model(model, input_tensors=inputs)
  clone.set_weights(model.get_weights())
  return clone


def _median_ms(fn, runs: int, warmup: int = 3) -> float:
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    fn()
    times.append((time.perf_counter() - t0) * 1e3)
  return float(np.median(times))


def keras_latency(model: keras.Model, runs: int) -> float:
  r = model.inputs[0].shape[1]
  x = tf.random.uniform([1, r, r, 3], 0, 255, seed=0)
  call = tf.function(lambda t: model(t, training=False))
  return _median_ms(lambda: call(x).numpy(), runs)


def tflite_latency(model_content: bytes, runs: int, num_threads: int) -> float:
  # XNNPACK's thread pool spins; with more threads than free cores (a shared machine) one
  # invoke went from 0.08 ms to 31 ms here, so the thread count is explicit.
  interp = export_tflite.interpreter(model_content, num_threads or None)
  inp = interp.get_input_details()[0]
  x = np.random.RandomState(0).uniform(0, 255, inp["shape"]).astype(np.float32)
  interp.set_tensor(inp["index"], x)
  return _median_ms(interp.invoke, runs)


def convert_tfjs_at(model: keras.Model, out_dir: str) -> None:
  """Writes the TF.js graph model of `model` (uint8 grid storage) into out_dir."""
  with tempfile.TemporaryDirectory(prefix="sm-") as sm:
    save_core_saved_model(model, os.path.join(sm, "m"))
    export_tfjs.convert_saved_model(os.path.join(sm, "m"), out_dir)


def tfjs_bench(model_dir: str, resolution: int, runs: int, backend: str = "wasm",
               label_bank_dir: Optional[str] = None, profile: bool = False) -> dict:
  """run_tfjs.js bench; profile=True adds `kernel_profile` (per-kernel times, tf.profile)."""
  args = ["bench", f"--model_dir={model_dir}", f"--resolution={resolution}", f"--runs={runs}",
          f"--backend={backend}"]
  if profile:
    args.append("--profile=1")
  if label_bank_dir and os.path.isfile(os.path.join(label_bank_dir, "label_bank.json")):
    args.append(f"--label_bank_dir={label_bank_dir}")
  return run_node(args)


TEACHER_SCRIPT = r"""
import json, sys, time
import torch, open_clip
cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
if cfg["threads"] > 0:
    torch.set_num_threads(cfg["threads"])
model, _, _ = open_clip.create_model_and_transforms(cfg["architecture"], pretrained=None)
model.eval()
params = sum(p.numel() for p in model.visual.parameters())
all_params = sum(p.numel() for p in model.parameters())
x = torch.rand(1, 3, cfg["resolution"], cfg["resolution"])
times = []
with torch.no_grad():
    for i in range(cfg["warmup"] + cfg["runs"]):
        t0 = time.perf_counter()
        model.encode_image(x)
        if i >= cfg["warmup"]:
            times.append((time.perf_counter() - t0) * 1e3)
times.sort()
print(json.dumps({"latency_ms": times[len(times) // 2], "params": params,
                  "fp32_bytes": 4 * params, "all_towers_params": all_params,
                  "all_towers_fp32_bytes": 4 * all_params, "threads": torch.get_num_threads(),
                  "architecture": cfg["architecture"]}))
"""


def teacher_latency(runs: int = 5, resolution: int = 224, threads: int = 1,
                    architecture: str = "ViT-B-16", python: str = sys.executable) -> dict:
  """Times the teacher's image tower in a torch subprocess (random weights, same cost).

  `params` / `fp32_bytes` count the image tower only (what the student replaces on a device);
  `all_towers_*` count image and text towers together, for reference.
  """
  cfg = {"runs": runs, "warmup": 2, "resolution": resolution, "threads": threads,
         "architecture": architecture}
  try:
    proc = subprocess.run([python, "-c", TEACHER_SCRIPT, json.dumps(cfg)], capture_output=True,
                          text=True, timeout=1800)
  except subprocess.TimeoutExpired as e:
    raise TeacherTimingError(f"teacher latency subprocess timed out after {e.timeout} s") from e
  if proc.returncode != 0:
    raise TeacherTimingError(f"teacher latency subprocess failed: {proc.stderr.strip()[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def keras_peak_rss(workdir: str, phase: str = "qat", python: str = sys.executable) -> dict:
  """Peak RSS of a fresh process that loads the student and classifies one photo."""
  proc = subprocess.run([python, "-m", "bioclip_lite_tf.evaluate.memory", f"--workdir={workdir}",
                         f"--phase={phase}"], capture_output=True, text=True, timeout=1800)
  if proc.returncode != 0:
    raise RuntimeError(f"eval_memory subprocess failed: {proc.stderr.strip()[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def student_latency(plain: keras.Model, resolutions, runs: int, calibration: np.ndarray,
                    num_threads: int = 1, label_bank_dir: Optional[str] = None,
                    memory_resolution: int = 224, log=print) -> Dict[str, dict]:
  """Latency per runtime and resolution, plus memory at memory_resolution.

  calibration: float32 [n, R0, R0, 3] photos; squashed again to each resolution to calibrate
  that resolution's int8 model. Returns {"latency_ms": {runtime: {"R": ms}}, "memory": {...},
  "errors": [...]}.
  """
  latency = {"keras_cpu": {}, "tflite_xnnpack": {}, "tfjs_wasm_node": {}}
  memory: Dict[str, object] = {"tfjs_peak_bytes": {}}
  errors = []
  wanted = sorted(set(int(r) for r in resolutions) | {int(memory_resolution)})
  for r in wanted:
    timed = r in set(int(x) for x in resolutions)
    model = model_at_resolution(plain, r)
    if timed:
      latency["keras_cpu"][str(r)] = keras_latency(model, runs)
    photos = tf.image.resize(calibration, (r, r), method="bicubic", antialias=True).numpy()
    photos = np.clip(photos, 0, 255).astype(np.float32)
    content = export_tflite.convert_int8(model, lambda: (photos[i:i + 1]
                                                         for i in range(len(photos))))
    if timed:
      latency["tflite_xnnpack"][str(r)] = tflite_latency(content, runs, num_threads)
    if r == memory_resolution:
      memory["tflite_arena_bytes"] = export_tflite.arena_bytes(content)["planned"]
      memory["tflite_arena_unshared_bytes"] = export_tflite.arena_bytes(content)["unshared"]
    with tempfile.TemporaryDirectory(prefix="tfjs-lat-") as tmp:
      try:
        convert_tfjs_at(model, os.path.join(tmp, "tfjs"))
        bench = tfjs_bench(os.path.join(tmp, "tfjs"), r, runs, "wasm", label_bank_dir)
        if timed:
          latency["tfjs_wasm_node"][str(r)] = bench["latency_ms_median"]
        if r == memory_resolution:
          memory["tfjs_peak_bytes"][str(r)] = bench["peak_bytes"]
          memory["tfjs_resident_bytes"] = bench["resident_bytes"]
      except NodeRunnerError as e:
        errors.append(str(e))
    log(f"latency at {r}: " + ", ".join(f"{k}={v.get(str(r), float('nan')):.2f}ms"
                                        for k, v in latency.items()))
  return {"latency_ms": latency, "memory": memory, "errors": errors,
          "threads": {"keras_cpu": int(tf.config.threading.get_intra_op_parallelism_threads())
                      or "TF default", "tflite_xnnpack": num_threads, "tfjs_wasm_node": 1}}
