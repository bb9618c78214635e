"""BioCLIP Lite student (TensorFlow / tf_keras side).

Import Keras only through `bioclip_lite_tf.keras`; it sets TF_USE_LEGACY_KERAS=1 before TensorFlow
is imported, which tfmot (Keras 2 only) requires. This package never imports torch or
teacher_cache.
"""
from bioclip_lite_tf import keras as _keras_import_point  # noqa: F401  (sets the env first)

__all__ = []
