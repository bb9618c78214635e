"""Does TensorFlow decode JPEGs like PIL, the teacher's decoder?

The teacher (teacher_cache, open_clip's transforms) sees PIL's decode of each photo; the student's
tf.data pipeline decodes the same JPEG bytes in TensorFlow. Both wrap libjpeg(-turbo), but TF's
default IDCT is the fast integer one (JDCT_IFAST), PIL's the accurate one (JDCT_ISLOW).
This checks, on generated JPEGs (odd and even sizes, 4:2:0 / 4:2:2 / 4:4:4 chroma subsampling,
several qualities, progressive too), that
  - tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") gives PIL's pixels exactly, and
  - tf.io.decode_image (what training used) does not, so the test tells the two apart.
It imports only TensorFlow, PIL and numpy.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

# (height, width)
SIZES = ((224, 224), (225, 301), (97, 64), (480, 672))
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}
QUALITIES = (50, 75, 90, 95)


def _photo(height: int, width: int, seed: int) -> np.ndarray:
  """Smooth colour fields with hard edges and noise: detail in luma and chroma alike."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  img = np.empty((height, width, 3), np.float32)
  for c in range(3):
    a, b, p = rng.uniform(-1, 1, 3)
    img[..., c] = 128 + 90 * np.sin(a * xx / 9.0 + b * yy / 7.0 + 6 * p)
  img += ((xx + 2 * yy) > width)[..., None] * rng.uniform(-80, 80, 3)
  img += rng.normal(0, 12, img.shape)
  return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray, quality: int, subsampling: int, progressive: bool = False) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="JPEG", quality=quality, subsampling=subsampling,
                               progressive=progressive)
  return buf.getvalue()


def _pil(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.uint8)


CASES = [(size, name, quality) for size in SIZES for name in SUBSAMPLING for quality in QUALITIES]


@pytest.mark.parametrize("size,subsampling,quality", CASES,
                         ids=[f"{h}x{w}-{s}-q{q}" for (h, w), s, q in CASES])
def test_integer_accurate_decode_equals_pil(size, subsampling, quality):
  height, width = size
  data = _jpeg(_photo(height, width, seed=height * 7 + quality), quality, SUBSAMPLING[subsampling])
  want = _pil(data)
  got = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
  assert got.shape == want.shape
  diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
  assert diff.max() == 0, f"mean {diff.mean():.3f} max {diff.max()} levels"


def test_progressive_jpeg_too():
  data = _jpeg(_photo(240, 320, seed=1), 85, SUBSAMPLING["4:2:0"], progressive=True)
  got = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
  np.testing.assert_array_equal(got, _pil(data))


def test_default_decode_differs_from_pil():
  """tf.io.decode_image / decode_jpeg's default IDCT is not PIL's: the test above would catch a
  pipeline that still uses them."""
  diffs = []
  for (height, width), name in [((480, 672), "4:2:0"), ((224, 224), "4:4:4")]:
    data = _jpeg(_photo(height, width, seed=3), 90, SUBSAMPLING[name])
    default = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
    diffs.append(np.abs(default.astype(np.int16) - _pil(data).astype(np.int16)))
  assert max(int(d.max()) for d in diffs) > 0
