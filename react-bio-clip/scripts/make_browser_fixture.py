"""Writes the browser (WebGL) test fixture: a real-architecture export and Keras's answers.

Run from the repo root with the project's venv (`make test-browser` does):

  .venv/bin/python react-bio-clip/scripts/make_browser_fixture.py --out_dir=runs/browser_fixture

Unlike make_fixture.py (a tiny conv net), the student here is the real one: MobileNetV3 Small
from bioclip_lite_tf.model.build_student (squeeze-excite, hard-swish, residual blocks) at a small
width and resolution, BN-folded (model.fold_batch_norms), made quantization-aware with the
project's per-tensor scheme (quantization.quantize), after BN statistics from data and a
short float distillation run (export_fixtures.briefly_trained_student, the test fixtures' one
builder), and exported with bioclip_lite_tf.export.export (TF.js uint8
weights, device label bank), exactly as `python -m bioclip_lite_tf.export` does after training.
The label bank is export_testing.write_label_bank's generated tree (its species rows are random
unit vectors).

Under --out_dir:
  export/                   the export directory (manifest.json, tfjs/, labels/, ...)
  photos/<name>.rgb         uint8 [H, W, 3] row-major RGB (R x R photos and larger ones)
  photos/demo.png           a larger photo for the demo page (PNG: lossless, so the browser
                            decodes exactly these pixels)
  photos/demo.jpg           the same as JPEG (quality 90, 4:2:0), and demo.jpg.pil.rgb: PIL's
                            decode of it, to measure the browser's JPEG decoder against PIL
  expected.json             per photo: height, width, keras (the Keras QAT model's embedding of
                            squash_resize(photo), float32 [D]), reference (the exporter's
                            weights-only parity reference), keras_top1 (species row); plus the
                            same for demo.png, and the label bank's species count
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bioclip_lite_tf import export  # noqa: E402
from bioclip_lite_tf.configs import demo  # noqa: E402
from bioclip_lite_tf.export import plain_graph as export_graph  # noqa: E402
from bioclip_lite_tf.model.layers import squash_resize  # noqa: E402
from bioclip_lite_tf.testing import export_fixtures as export_testing  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "runs/browser_fixture", "Directory written (replaced atomically).")
flags.DEFINE_integer("resolution", 96, "Student input side R.")
flags.DEFINE_float("alpha", 0.5, "MobileNetV3 width multiplier.")
flags.DEFINE_integer("embed_dim", 128, "Embedding width D.")
flags.DEFINE_integer("num_photos", 24, "Test photos (half R x R, half larger, squashed).")
flags.DEFINE_integer("train_steps", 40, "Float distillation steps (batch 16) before BN folding.")
flags.DEFINE_integer("calibration_passes", 30,
                     "Training-mode forward passes that set BN statistics, then quantizer ranges.")
flags.DEFINE_integer("seed", 0, "Seed for weights, photos and the label bank.")

BRANCHING = (2, 2, 2, 2, 2, 3, 3)  # 2^5 * 9 = 288 species over 7 ranks


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """uint8 [H, W, 3]: colour fields, blobs, edges and noise (content a convnet tells apart)."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  img = np.zeros((height, width, 3), np.float32)
  for c in range(3):
    a, b, phase = rng.uniform(-1, 1, 3)
    img[..., c] = 128 + 70 * np.sin(a * xx / (0.05 * width) + b * yy / (0.07 * height) + 6 * phase)
  for _ in range(4):
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    radius = rng.uniform(0.08, 0.3) * min(height, width)
    img += (((yy - cy) ** 2 + (xx - cx) ** 2) < radius ** 2)[..., None] * rng.uniform(-90, 90, 3)
  img += rng.normal(0, 6, img.shape)
  return np.clip(np.round(img), 0, 255).astype(np.uint8)


def stand_in_teacher(photos: np.ndarray, embed_dim: int, seed: int) -> np.ndarray:
  """Unit targets [N, D] that depend on the photo: a fixed random projection of its 8 x 8 view."""
  n, h, w, _ = photos.shape
  coarse = photos.reshape(n, 8, h // 8, 8, w // 8, 3).mean(axis=(2, 4)).reshape(n, -1)
  coarse = (coarse - coarse.mean(0)) / (coarse.std(0) + 1e-6)
  projection = np.random.default_rng(seed + 1).normal(size=(coarse.shape[1], embed_dim))
  return export_testing.unit_rows((coarse @ projection).astype(np.float32))


def main(argv):
  del argv
  rng = np.random.default_rng(FLAGS.seed)
  r, d = FLAGS.resolution, FLAGS.embed_dim
  out_dir = os.path.abspath(FLAGS.out_dir)
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".browser-fixture-", dir=os.path.dirname(out_dir))
  os.chmod(staging, 0o755)
  with tempfile.TemporaryDirectory() as scratch:
    bank_dir = os.path.join(scratch, "label_bank")
    counts = export_testing.write_label_bank(bank_dir, d, branching=BRANCHING, seed=FLAGS.seed)
    species_text = np.load(os.path.join(bank_dir, "species.npy"))

    train = export.synthetic_photos(64, r, seed=FLAGS.seed)
    # The real student, BN statistics set from the photos, a short float run distilling a
    # stand-in teacher (a fixed random projection of each photo's 8 x 8 view, so targets differ
    # as photos do), then BN folding, QAT wrapping and quantizer ranges: the test fixtures' one
    # builder (export_fixtures.briefly_trained_student says why each step is needed).
    qat = export_testing.briefly_trained_student(
        r, FLAGS.alpha, d, train, stand_in_teacher(train, d, FLAGS.seed), steps=FLAGS.train_steps,
        calibration_passes=FLAGS.calibration_passes, seed=FLAGS.seed)
    export.export(workdir=scratch, out_dir=os.path.join(staging, "export"),
                  label_bank_dir=bank_dir, label_bank_dtype="int8", num_representative=8,
                  qat_model=qat)
  for unused in ("tflite", "saved_model"):  # the browser reads tfjs/, labels/, manifest.json
    shutil.rmtree(os.path.join(staging, "export", unused), ignore_errors=True)

  photos_dir = os.path.join(staging, "photos")
  os.makedirs(photos_dir)
  shapes = [(r, r)] * (FLAGS.num_photos // 2) + [
      (int(rng.integers(r + 1, 4 * r)), int(rng.integers(r + 1, 4 * r)))
      for _ in range(FLAGS.num_photos - FLAGS.num_photos // 2)]
  pictures = {f"photo{i:02d}": photo(rng, h, w) for i, (h, w) in enumerate(shapes)}
  pictures["demo"] = photo(rng, 3 * r + 17, 4 * r + 5)
  Image.fromarray(pictures["demo"]).save(os.path.join(photos_dir, "demo.png"))
  # A JPEG of it and PIL's decode of that JPEG (the teacher's decoder), to measure what the
  # browser's own JPEG decoder (the photo picker path) changes.
  Image.fromarray(pictures["demo"]).save(os.path.join(photos_dir, "demo.jpg"), quality=90)
  with Image.open(os.path.join(photos_dir, "demo.jpg")) as im:
    np.asarray(im.convert("RGB"), np.uint8).tofile(os.path.join(photos_dir, "demo.jpg.pil.rgb"))
  expected = {"resolution": r, "embed_dim": d, "num_species": int(counts["species"]),
              "architecture": f"MobileNetV3 {demo.get_config('runlocal').model.name} alpha {FLAGS.alpha}",
              "photos": []}
  for name, pixels in pictures.items():
    pixels.tofile(os.path.join(photos_dir, name + ".rgb"))
    squashed = squash_resize(pixels[None], r).numpy()
    keras_embedding = qat(squashed, training=False).numpy()[0]
    reference = export_graph.weights_only_reference(qat, squashed)[0]
    logits = species_text @ keras_embedding
    expected["photos"].append({
        "name": name, "height": int(pixels.shape[0]), "width": int(pixels.shape[1]),
        "keras": [float(v) for v in keras_embedding], "reference": [float(v) for v in reference],
        "keras_top1": int(np.argmax(logits))})
  embeddings = np.array([p["keras"] for p in expected["photos"]])
  cos = embeddings @ embeddings.T
  expected["mean_pairwise_cosine"] = float((cos.sum() - len(cos)) / (len(cos) ** 2 - len(cos)))
  with open(os.path.join(staging, "expected.json"), "w") as f:
    json.dump(expected, f)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.rename(staging, out_dir)
  logging.info("browser fixture written to %s (mean pairwise cosine of the embeddings %.3f)",
               out_dir, expected["mean_pairwise_cosine"])


if __name__ == "__main__":
  app.run(main)
