"""Photo decoding on the TF side, pixel for pixel what the teacher saw.

The teacher (teacher_cache, PIL) decodes JPEGs with libjpeg's default integer DCT ("islow").
tf.io.decode_image uses a faster DCT that differs from it by about 1 level on average and up
to 6; tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") is libjpeg's islow, equal to PIL's decode
(tests/bioclip_lite_tf/test_data.py checks it on generated JPEGs). The TFDS dataset stores JPEG
bytes (other formats are transcoded once at build time); anything else still decodes.
"""
from __future__ import annotations

from bioclip_lite_tf.keras import tf


def decode_photo(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded photo bytes (scalar string) -> uint8 [H, W, 3], decoded as PIL decodes it."""
  image = tf.cond(
      tf.io.is_jpeg(encoded),
      lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
      lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
  image.set_shape([None, None, 3])
  return image
