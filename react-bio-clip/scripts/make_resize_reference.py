"""Writes the camera-path pixel references: textured frames and what training makes of them.

Run from the repo root with the project's venv (the Makefile's test-browser / test-js do):

  .venv/bin/python react-bio-clip/scripts/make_resize_reference.py --out_dir=runs/resize_reference

For each frame it writes, under --out_dir (about 90 MB, never committed: made at test time):

  <name>.rgb           uint8 [H, W, 3] row-major: the frame (a camera frame or a decoded photo)
  <name>.train.f32     float32 [R, R, 3] little-endian: bioclip_lite_tf.model.layers.squash_resize of
                       it, i.e. exactly the student's training input for those pixels
  <name>.pil.u8        uint8 [R, R, 3]: PIL bicubic of it (the teacher's resize), for the record
  frames.json          {resolution, frames: [{name, height, width, texture}]}

Textures: 'textured' mixes smooth colour fields, hard edges and fine gratings (leaves, fur,
bark); 'dense' is high-frequency detail near the pixel pitch (grass, feathers far away), where
an un-antialiased resize aliases most. Sizes: 1080 x 1920 (a portrait phone video frame) and
4032 x 3024 (a 12 MP photo).
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bioclip_lite_tf.model.layers import squash_resize  # noqa: E402  (the training function itself)

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "runs/resize_reference", "Directory written (replaced).")
flags.DEFINE_integer("resolution", 224, "Model input side R.")
flags.DEFINE_integer("seed", 0, "Random seed of the textures.")

# (name, height, width, texture)
FRAMES = (("portrait_textured", 1920, 1080, "textured"),
          ("portrait_dense", 1920, 1080, "dense"),
          ("photo12mp_textured", 3024, 4032, "textured"),
          ("photo12mp_dense", 3024, 4032, "dense"),
          ("small_upscale", 150, 181, "textured"))


def texture(rng: np.random.Generator, height: int, width: int, kind: str) -> np.ndarray:
  """uint8 [H, W, 3]. Built in float32 row blocks to keep a 12 MP frame's memory small."""
  out = np.empty((height, width, 3), np.uint8)
  # Parameters first, so the picture does not depend on the block size.
  waves = [(rng.uniform(-1, 1, 2), rng.uniform(0.02, 0.2 if kind == "textured" else 1.4),
            rng.uniform(0, 6.3), rng.uniform(20, 70, 3)) for _ in range(6)]
  blobs = [(rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.05, 0.3) * min(height, width),
            rng.uniform(-100, 100, 3)) for _ in range(5)]
  edges = [(rng.uniform(-1, 1, 2), rng.uniform(0, max(height, width)), rng.uniform(-90, 90, 3))
           for _ in range(4)]
  checker = int(rng.integers(3, 9))
  noise_seed = int(rng.integers(1 << 30))
  xx = np.arange(width, dtype=np.float32)
  for top in range(0, height, 256):
    rows = min(256, height - top)
    yy = np.arange(top, top + rows, dtype=np.float32)[:, None]
    img = np.full((rows, width, 3), 128.0, np.float32)
    for (dx, dy), freq, phase, amp in waves:
      img += np.sin(freq * (dx * xx[None, :] + dy * yy) + phase)[..., None] * amp
    for cy, cx, radius, colour in blobs:
      img += np.exp(-((yy - cy) ** 2 + (xx[None, :] - cx) ** 2) / (2 * radius ** 2))[..., None] * colour
    for (dx, dy), offset, colour in edges:
      img += ((dx * xx[None, :] + dy * yy) > offset - max(height, width) / 2)[..., None] * colour
    if kind == "dense":
      img += (((xx[None, :].astype(np.int64) // checker + yy.astype(np.int64) // checker) % 2) * 60 - 30)[..., None]
    block_rng = np.random.default_rng([noise_seed, top])
    img += block_rng.normal(0, 6 if kind == "textured" else 25, img.shape)
    out[top:top + rows] = np.clip(np.round(img), 0, 255).astype(np.uint8)
  return out


def main(argv):
  del argv
  import shutil
  out_dir = os.path.abspath(FLAGS.out_dir)
  shutil.rmtree(out_dir, ignore_errors=True)
  os.makedirs(out_dir)
  rng = np.random.default_rng(FLAGS.seed)
  r = FLAGS.resolution
  entries = []
  for name, height, width, kind in FRAMES:
    frame = texture(rng, height, width, kind)
    frame.tofile(os.path.join(out_dir, name + ".rgb"))
    train = squash_resize(frame[None], r).numpy()[0].astype("<f4")
    train.tofile(os.path.join(out_dir, name + ".train.f32"))
    pil = np.asarray(Image.fromarray(frame).resize((r, r), Image.BICUBIC), np.uint8)
    pil.tofile(os.path.join(out_dir, name + ".pil.u8"))
    entries.append({"name": name, "height": height, "width": width, "texture": kind})
  with open(os.path.join(out_dir, "frames.json"), "w") as f:
    json.dump({"resolution": r, "frames": entries}, f, indent=1)
  print(f"wrote {len(entries)} frames to {out_dir}")


if __name__ == "__main__":
  app.run(main)
