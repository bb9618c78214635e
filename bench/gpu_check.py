r"""GPU check: teacher and student throughput on one accelerator, no network, <= 8 minutes.

  bench/gpu_check.sh [--smoke] [--out=bench/results/gpu_check.json]    (the wrapper sets the
                                                                        env and a hard timeout)

Teacher (PyTorch, open_clip, RANDOM weights: no download; BioCLIP = ViT-B-16, BioCLIP 2 =
ViT-L-14), batch --teacher_batch, bf16 autocast on CUDA:
  forward_only  photos/s of encode_image on uint8 batches already on the host, normalized on
                the device (as teacher_cache.teachers.Teacher.normalize_pixels does).
  whole_stage   photos/s of generated JPEGs (--photo_w x --photo_h, ~TreeOfLife-10M's size)
                decoded and squash-resized by teacher_cache.teachers.decode_and_resize in a pool
                of --decode_processes processes, overlapped with the forward pass (next batch
                decodes while this one runs) - what the caching stage can reach on this host.
Student (tf_keras), the project's own model / losses / pruning / QAT code at --student_res with a
--num_species head (random frozen text embeddings), the default config's loss mix, AdamW:
  train step photos/s for float, prune and QAT, mixed precision off and on. "on" needs a
  mixed-precision field in configs/default.py (probed); without one it is recorded as
  "unsupported". Any measurement that errors is recorded with its error and the rest goes on.
--smoke: CPU, tiny (batch 2, the 2-layer test ViT, MobileNetV3 Small 0.35 at 64, 100 species),
for `make test`. Progress is printed as it goes; the JSON is written at the end and after each
measurement, so a timeout still leaves what was measured.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("smoke", False, "CPU, tiny sizes (for make test).")
flags.DEFINE_string("out", os.path.join(REPO, "bench", "results", "gpu_check.json"),
                    "Where to write the JSON.")
flags.DEFINE_integer("teacher_batch", 256, "Teacher photos per forward pass.")
flags.DEFINE_integer("teacher_iters", 6, "Timed forward passes per teacher (after 2 warm-up).")
flags.DEFINE_integer("stage_photos", 2048, "Photos through the whole teacher stage.")
flags.DEFINE_integer("photo_w", 500, "Generated JPEG width.")
flags.DEFINE_integer("photo_h", 375, "Generated JPEG height.")
flags.DEFINE_integer("decode_processes", 0, "Decode processes (0: CPU count).")
flags.DEFINE_integer("student_batch", 256, "Student train batch.")
flags.DEFINE_integer("student_res", 224, "Student resolution.")
flags.DEFINE_integer("student_steps", 10, "Timed student steps (after 2 warm-up).")
flags.DEFINE_integer("num_species", 454_103, "Species in the student's head.")
flags.DEFINE_integer("embed_dim", 512, "Teacher embedding width of the student's head.")
flags.DEFINE_bool("eager", None, "Run the student steps eagerly (default: only with --smoke, "
                  "where tracing three tfmot graphs on shared CPUs costs minutes).")
flags.DEFINE_float("budget_seconds", 360, "Skip what is left after this many seconds.")

T0 = time.monotonic()


def log(msg: str) -> None:
  print(f"[gpu_check {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def over_budget() -> bool:
  return time.monotonic() - T0 > FLAGS.budget_seconds


def _jpegs(n: int, w: int, h: int):
  import numpy as np
  from PIL import Image
  rng = np.random.default_rng(0)
  out = []
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  for i in range(min(n, 64)):  # 64 distinct photos, cycled (decode cost is what matters)
    c = rng.uniform(0, 255, (3, 3))
    img = (c[0] * xx[..., None] / w + c[1] * yy[..., None] / h + c[2]) / 3
    img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=90)
    out.append(buf.getvalue())
  return [out[i % len(out)] for i in range(n)]


def _decode(args):
  data, size = args
  from teacher_cache.teachers import decode_and_resize
  return decode_and_resize(data, size)


def teacher_figures(name: str, device: str, result: dict) -> dict:
  import numpy as np
  import open_clip
  import torch
  import teacher_cache.teachers  # noqa: F401  (registers the test model configs)
  from teacher_cache.teachers import decode_and_resize

  torch.manual_seed(0)
  model = open_clip.create_model(name, pretrained=None).eval().to(device)
  cfg = open_clip.get_model_preprocess_cfg(model)
  size = cfg.get("size", 224)
  size = size[0] if isinstance(size, (tuple, list)) else int(size)
  mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1)
  std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1)
  cuda = device.startswith("cuda")
  amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast(
      "cpu", dtype=torch.bfloat16, enabled=False)
  b = FLAGS.teacher_batch
  out = {"architecture": name, "weights": "random (pretrained=None)", "input_size": size,
         "batch": b, "autocast": "bf16" if cuda else "off (CPU smoke)"}

  def forward(host_uint8):
    x = torch.from_numpy(host_uint8)
    if cuda:
      x = x.pin_memory().to(device, non_blocking=True)
    x = (x.permute(0, 3, 1, 2).float().div(255) - mean) / std
    with torch.no_grad(), amp:
      return model.encode_image(x)

  def sync():
    if cuda:
      torch.cuda.synchronize()

  photos = _jpegs(max(b, 64), FLAGS.photo_w, FLAGS.photo_h)
  batch = np.stack([decode_and_resize(p, size) for p in photos[:b]])
  for _ in range(2):
    forward(batch)
  sync()
  t = time.perf_counter()
  for _ in range(FLAGS.teacher_iters):
    forward(batch)
  sync()
  out["forward_only_photos_per_second"] = round(b * FLAGS.teacher_iters / (time.perf_counter() - t), 2)
  log(f"{name}: forward only {out['forward_only_photos_per_second']} photos/s")
  if over_budget():
    out["whole_stage"] = "skipped: time budget"
    return out
  import multiprocessing
  procs = FLAGS.decode_processes or os.cpu_count() or 1
  n = FLAGS.stage_photos
  stream = _jpegs(n, FLAGS.photo_w, FLAGS.photo_h)
  with multiprocessing.get_context("spawn").Pool(procs) as pool:
    pool.map(_decode, [(stream[0], size)] * procs)  # start-up outside the timing
    t = time.perf_counter()
    it = pool.imap(_decode, [(p, size) for p in stream], chunksize=8)
    done = 0
    pending = None
    while done < n:
      rows = [next(it) for _ in range(min(b, n - done))]
      if pending is not None:
        pending.float().sum().item()  # wait for the previous batch's forward
      pending = forward(np.stack(rows))
      done += len(rows)
    sync()
    secs = time.perf_counter() - t
  out["whole_stage_photos_per_second"] = round(n / secs, 2)
  out["whole_stage"] = (f"{n} JPEGs {FLAGS.photo_w}x{FLAGS.photo_h} decoded by "
                        f"decode_and_resize in {procs} processes, overlapped with the forward")
  out["stage_over_forward"] = round(out["whole_stage_photos_per_second"]
                                    / out["forward_only_photos_per_second"], 3)
  log(f"{name}: whole stage {out['whole_stage_photos_per_second']} photos/s")
  del model
  if cuda:
    torch.cuda.empty_cache()
  return out


def _mixed_precision_field(cfg):
  """The config's mixed-precision switch, wherever helper code put it, or None."""
  for path in ("mixed_precision", "train.mixed_precision", "model.mixed_precision",
               "precision", "model.precision"):
    node = cfg
    ok = True
    for part in path.split("."):
      try:
        node = node[part]
      except (KeyError, TypeError, AttributeError):
        ok = False
        break
    if ok:
      return path
  return None


def student_figures(result: dict) -> dict:
  import numpy as np
  import tensorflow as tf
  import tf_keras as keras

  from bioclip_lite_tf import losses as losses_lib
  from bioclip_lite_tf import model as model_lib
  from bioclip_lite_tf.configs import default
  from bioclip_lite_tf.optimize import pruning, quantization

  cfg = default.get_config("small" if FLAGS.smoke else "")
  if FLAGS.smoke:
    cfg.model.alpha = 0.35
  cfg.model.resolution = FLAGS.student_res
  cfg.model.init = "none"
  field = _mixed_precision_field(cfg)
  s, d, b, k = FLAGS.num_species, FLAGS.embed_dim, FLAGS.student_batch, 10
  rng = np.random.default_rng(0)
  bank_np = rng.standard_normal((s, d)).astype(np.float32)
  bank_np /= np.linalg.norm(bank_np, axis=1, keepdims=True)
  counts = [max(1, int(round(f * s))) for f in (7e-6 * 2.2, 2.2e-4, 1.1e-3, 4.2e-3, 0.024, 0.17)] + [s]
  for r in range(5, -1, -1):
    counts[r] = min(counts[r], counts[r + 1])
  anc = np.stack([np.arange(s) * counts[r] // s for r in range(7)]).astype(np.int32)
  bank = losses_lib.LabelBankTensors(
      species_text_embeddings=tf.Variable(bank_np, trainable=False), ancestors=tf.constant(anc),
      rank_sizes=tuple(counts), logit_scale=100.0)
  del bank_np
  labels = anc[:, rng.integers(0, s, b)].T.astype(np.int32)
  temb = rng.standard_normal((b, d)).astype(np.float32)
  topk_logits = np.sort(rng.normal(20, 3, (b, k)))[:, ::-1].astype(np.float32)
  # the whole bank's normalizer (cache format 2): the top-k plus s - k species at logit ~10
  top_lse = np.log(np.exp(topk_logits - topk_logits[:, :1]).sum(1)) + topk_logits[:, 0]
  lse = np.logaddexp(top_lse, 10.0 + np.log(max(s - k, 1))).astype(np.float32)
  batch = {
      "image": tf.constant(rng.uniform(0, 255, (b, FLAGS.student_res, FLAGS.student_res, 3))
                           .astype(np.float32)),
      "teacher_embedding": tf.constant(temb / np.linalg.norm(temb, axis=1, keepdims=True)),
      "topk_species_indices": tf.constant(rng.integers(0, s, (b, k)).astype(np.int32)),
      "topk_species_logits": tf.constant(topk_logits.copy()),
      "teacher_logsumexp": tf.constant(lse),
      "labels": tf.constant(labels)}
  out = {"resolution": FLAGS.student_res, "batch": b, "tf_function": not FLAGS.eager, "num_species": s, "embed_dim": d,
         "model": f"{cfg.model.name} alpha {cfg.model.alpha}",
         "mixed_precision_config_field": field, "phases": {}}

  def build(phase):
    model = model_lib.build_student(cfg.model, d)
    if phase == "float":
      return model, []
    prunable = pruning.make_prunable(model, cfg, 1000)
    if phase == "prune":
      return prunable, pruning.prune_wrappers(prunable)
    stripped = pruning.strip_and_apply_masks(prunable)
    folded = model_lib.fold_batch_norms(stripped, cfg.model, d)
    return quantization.quantize(folded, cfg.qat.scheme, preserve_sparsity=True), []

  def measure(phase, mixed):
    policy = keras.mixed_precision.global_policy().name
    if mixed:
      keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
      model, wrappers = build(phase)
    finally:
      keras.mixed_precision.set_global_policy(policy)
    opt = keras.optimizers.AdamW(1e-4, weight_decay=1e-5)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)

    def step():
      for w in wrappers:
        w.pruning_step.assign(step_var)
      with tf.GradientTape() as tape:
        emb = tf.cast(model(batch["image"], training=True), tf.float32)
        outputs = losses_lib.StudentOutputs(emb, losses_lib.species_logits(emb, bank))
        values = losses_lib.total_loss(outputs, batch, bank, cfg.losses, b)
      variables = model.trainable_variables
      opt.apply_gradients(zip(tape.gradient(values["total"], variables), variables))
      step_var.assign_add(1)
      return values["total"]

    if not FLAGS.eager:
      step = tf.function(step)
    for _ in range(1 if FLAGS.smoke else 2):
      step().numpy()
    t = time.perf_counter()
    for _ in range(FLAGS.student_steps):
      loss = step()
    loss.numpy()
    secs = time.perf_counter() - t
    return {"photos_per_second": round(b * FLAGS.student_steps / secs, 2),
            "seconds_per_step": round(secs / FLAGS.student_steps, 4)}

  for phase in ("float", "prune", "qat"):
    for mixed in (False, True):
      key = f"{phase}_mixed_{'on' if mixed else 'off'}"
      if mixed and field is None:
        out["phases"][key] = {"status": "unsupported",
                              "reason": "configs/default.py has no mixed-precision field"}
        continue
      if over_budget():
        out["phases"][key] = {"status": "skipped: time budget"}
        continue
      try:
        out["phases"][key] = {"status": "ok", **measure(phase, mixed)}
      except Exception as e:  # pylint: disable=broad-except
        out["phases"][key] = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:400]}",
                              "where": traceback.format_exc().splitlines()[-3:]}
      log(f"student {key}: {out['phases'][key]}")
      result["student"] = out
      _write(result)
  return out


def _write(result: dict) -> None:
  from bench import results_io
  results_io.write_result(FLAGS.out, result)


def main(argv):
  del argv
  if FLAGS.smoke:
    for name, value in (("teacher_batch", 2), ("teacher_iters", 1), ("stage_photos", 4),
                        ("photo_w", 96), ("photo_h", 72), ("decode_processes", 1),
                        ("student_batch", 2), ("student_res", 64), ("student_steps", 1),
                        ("num_species", 100), ("embed_dim", 48)):
      if not FLAGS[name].present:
        FLAGS[name].value = value
  if FLAGS.eager is None:
    FLAGS.eager = FLAGS.smoke
  import torch
  from bench import results_io
  device = "cuda" if (torch.cuda.is_available() and not FLAGS.smoke) else "cpu"
  gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
  commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()
  result = {"benchmark": "gpu_check", "smoke": FLAGS.smoke, "device": device, "gpu": gpu,
            "git_commit": commit, "teachers": {},
            "machine": results_io.machine(torch=torch.__version__)}
  log(f"device {device} ({gpu}), smoke={FLAGS.smoke}")
  teachers = ([("tiny (BioCLIP stand-in)", "bioclip-lite-test-tiny")] if FLAGS.smoke else
              [("bioclip (ViT-B-16)", "ViT-B-16"), ("bioclip2 (ViT-L-14)", "ViT-L-14")])
  for label, name in teachers:
    if over_budget():
      result["teachers"][label] = {"status": "skipped: time budget"}
      continue
    try:
      result["teachers"][label] = {"status": "ok", **teacher_figures(name, device, result)}
    except Exception as e:  # pylint: disable=broad-except
      result["teachers"][label] = {"status": "error",
                                   "error": f"{type(e).__name__}: {str(e)[:400]}"}
      log(f"{name}: error {e}")
    _write(result)
  try:
    student_figures(result)
  except Exception as e:  # pylint: disable=broad-except
    result["student"] = {"status": "error", "error": f"{type(e).__name__}: {str(e)[:400]}"}
    log(f"student: error {e}")
  result["seconds"] = round(time.monotonic() - T0, 1)
  _write(result)
  log(f"wrote {FLAGS.out}")
  return 0


if __name__ == "__main__":
  app.run(main)
