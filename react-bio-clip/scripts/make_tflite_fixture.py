"""Writes the fixture of react-bio-clip/tflite's parity test (test/tflite.test.js).

Run from the repo root with the project's venv:

  .venv/bin/python react-bio-clip/scripts/make_tflite_fixture.py --out_dir=react-bio-clip/test/fixtures_tflite

What it writes under --out_dir (small: about 100 kB):

  export/                 an export directory (docs/FORMATS.md section 4) made by the project's
                          own export stage (bioclip_lite_tf.export.export on a tiny, briefly
                          trained QAT student, make_fixture.project_export) with its TFLite int8
                          model kept: manifest.json, tfjs/, tflite/model_int8.tflite, labels/
  photos/<name>.rgb       uint8 [h, w, 3] row-major photos (R x R ones, and one larger photo that
                          the package squashes itself)
  expected.json           per photo: its size and Python's `tf.lite.Interpreter` embedding of the
                          export's model_int8.tflite (float32 [D]) on the photo (the larger one
                          squash-resized first with the training resize, tf.image.resize bicubic
                          antialias); its top-5 species and logits against the device label bank
                          as formats/device_label_bank.py reads it back

The student is tiny and random-ish: the test is about the code path (TFLite runtime, the
Embedder seam, preprocessing and the shared scoring), not accuracy.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402

import make_fixture  # noqa: E402  (defines its own flags; only its functions are used)
from formats import atomic  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("tflite_out_dir", "react-bio-clip/test/fixtures_tflite",
                    "Directory the TFLite fixture is written to (replaced whole).")
flags.DEFINE_integer("tflite_resolution", 48, "Input resolution R of the fixture's export.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  from bioclip_lite_tf.export import tflite as export_tflite
  from bioclip_lite_tf.keras import tf
  r, d, seed = FLAGS.tflite_resolution, FLAGS.embed_dim, FLAGS.seed + 7
  if r < 32:
    print("error: --tflite_resolution must be >= 32", file=sys.stderr)
    return 2
  rng = np.random.default_rng(seed)
  out_dir = os.path.abspath(FLAGS.tflite_out_dir)
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".fixture-tflite-", dir=os.path.dirname(out_dir))
  os.chmod(staging, 0o755)
  export_dir = os.path.join(staging, "export")
  text = rng.normal(size=(len(make_fixture.SPECIES), d)).astype(np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  make_fixture.project_export(export_dir, r, d, text, 100.0, "int8", seed, drop=("saved_model",))
  with open(os.path.join(export_dir, "tflite", "model_int8.tflite"), "rb") as f:
    content = f.read()
  bank, scale = make_fixture.device_bank_embeddings(export_dir)

  photos = {name: pixels for name, pixels in make_fixture.make_photos(rng, r).items()}
  photos["noise"] = rng.integers(0, 256, (r, r, 3), dtype=np.uint8)
  os.makedirs(os.path.join(staging, "photos"))
  expected = {"resolution": r, "embed_dim": d, "logit_scale": scale,
              "reference": "tf.lite.Interpreter (TensorFlow " + tf.__version__ + ")", "photos": []}
  for name, pixels in photos.items():
    pixels = np.ascontiguousarray(pixels, np.uint8)
    with open(os.path.join(staging, "photos", name + ".rgb"), "wb") as f:
      f.write(pixels.tobytes())
    x = pixels.astype(np.float32)[None]
    if pixels.shape[:2] != (r, r):
      x = tf.image.resize(x, (r, r), method="bicubic", antialias=True).numpy().clip(0, 255)
    embedding = export_tflite.run(content, x.astype(np.float32), num_threads=1)[0]
    logits = scale * bank @ embedding
    top5 = np.argsort(-logits, kind="stable")[:5]
    expected["photos"].append({
        "name": name, "height": int(pixels.shape[0]), "width": int(pixels.shape[1]),
        "embedding": [float(v) for v in embedding], "top5_species": [int(i) for i in top5],
        "top5_logits": [float(logits[i]) for i in top5]})
  with open(os.path.join(staging, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
  atomic.replace_dir(staging, out_dir)
  total = sum(os.path.getsize(os.path.join(p, n)) for p, _, ns in os.walk(out_dir) for n in ns)
  logging.info("TFLite fixture written to %s (%d bytes)", out_dir, total)
  return 0


if __name__ == "__main__":
  app.run(main)
