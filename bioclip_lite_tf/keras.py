"""The one tf_keras import point for the whole TF side.

tfmot 0.8 works only with Keras 2 (tf_keras). TensorFlow decides which Keras `tf.keras` means at
import time from TF_USE_LEGACY_KERAS, so it must be set before the first `import tensorflow`.
Everything else in bioclip_lite_tf does `from bioclip_lite_tf.keras import keras`.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
  raise ImportError(
      "bioclip_lite_tf needs TF_USE_LEGACY_KERAS=1 (tfmot is Keras 2 only) but the environment "
      f"has TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r}; unset it or set it to 1.")

import tensorflow as tf  # noqa: E402  (must follow the environment variable)
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
