"""SavedModels of the student: the serving one (uint8 photos of any size) and the core one that
the TF.js converter reads."""
from __future__ import annotations

from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.model import with_preprocessing


def model_resolution(model: keras.Model) -> int:
  """R of a model whose input is [N, R, R, 3]; ValueError for any other input shape."""
  shape = model.inputs[0].shape
  if shape[1] is None or shape[1] != shape[2]:
    raise ValueError(f"model input shape {shape}: expected [N, R, R, 3] with fixed R")
  return int(shape[1])


def model_embed_dim(model: keras.Model) -> int:
  return int(model.outputs[0].shape[-1])


def save_serving_saved_model(core: keras.Model, resolution: int, path: str) -> None:
  """SavedModel whose `serving_default` takes uint8 photos of any size (batch of N):
  uint8 [N, H, W, 3] -> {"embedding": float32 [N, D]}, squashed by the student's own
  with_preprocessing."""
  model = with_preprocessing(core, resolution)

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="photo")])
  def serve(photo):
    return {"embedding": model(photo, training=False)}

  tf.saved_model.save(model, path, signatures={"serving_default": serve})


def save_core_saved_model(core: keras.Model, path: str) -> None:
  """SavedModel of the core (float32 [N, R, R, 3] 0..255 -> embedding), the TF.js converter's
  input."""
  resolution = model_resolution(core)

  @tf.function(input_signature=[tf.TensorSpec([None, resolution, resolution, 3], tf.float32,
                                               name="image")])
  def serve(image):
    return {"embedding": core(image, training=False)}

  tf.saved_model.save(core, path, signatures={"serving_default": serve})
