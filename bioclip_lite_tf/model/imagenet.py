"""ImageNet initialisation of the student from tf_keras.applications' MobileNetV3 .h5 files.

The files cannot be downloaded by this code (offline machines): `find_imagenet_weights` looks in
the Keras cache or takes an explicit path, and names --init=none when nothing is found.
"""
from __future__ import annotations

import os
from typing import List

from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.model.mobilenet_v3 import STUDENTS, ModelConfigError, config_value



def imagenet_weight_files(config) -> List[str]:
  """Candidate file names of tf_keras.applications' ImageNet weights for this config, best first.

  The with-top file also holds `Conv_2`; the no-top file stops at `Conv_1/BatchNorm`.
  """
  arch = STUDENTS[config_value(config, "name")]
  alpha = float(config_value(config, "alpha"))
  stem = f"weights_mobilenet_v3_{arch.keras_name}_224_{alpha}_float"
  return [stem + ".h5", stem + "_no_top_v2.h5"]


def keras_cache_dir() -> str:
  """Where tf_keras.utils.get_file puts downloads (`$KERAS_HOME/models` or ~/.keras/models)."""
  home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
  return os.path.join(home, "models")


def find_imagenet_weights(config, explicit_path: str = "") -> str:
  """Returns a local ImageNet weight file, or raises ModelConfigError naming --init=none."""
  if explicit_path:
    if not tf.io.gfile.exists(explicit_path):
      raise ModelConfigError(
          f"model.imagenet_weights={explicit_path!r} does not exist. Pass the path of a "
          "tf_keras.applications MobileNetV3 .h5 weight file, or train from scratch with "
          "--init=none.")
    return explicit_path
  candidates = [os.path.join(keras_cache_dir(), f) for f in imagenet_weight_files(config)]
  for path in candidates:
    if os.path.exists(path):
      return path
  raise ModelConfigError(
      "ImageNet initialisation needs the tf_keras.applications MobileNetV3 weights, and none "
      f"were found (looked for {candidates}). Official files exist for alpha 0.75 and 1.0. "
      "Copy one there, pass --imagenet_weights=PATH, or train from scratch with --init=none.")


def load_imagenet_weights(model: keras.Model, path: str) -> List[str]:
  """Loads matching layers by name from an applications .h5 file; returns the loaded layer names.

  Raises ModelConfigError when nothing matched (wrong file) or when a matched layer has a
  different shape (a different width multiplier), instead of silently training from noise.
  """
  import h5py  # local: only this path reads HDF5 directly
  with h5py.File(path, "r") as f:
    group = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
    shapes = {}
    for n in names:
      wnames = group[n].attrs["weight_names"]
      shapes[n] = [tuple(group[n][w.decode() if isinstance(w, bytes) else w].shape)
                   for w in wnames]
  ours = {layer.name: layer for layer in model.layers if layer.weights}
  matched = [n for n in names if n in ours and shapes[n]]
  if not matched:
    raise ModelConfigError(f"{path} holds no layer of the student by name; is it a MobileNetV3 "
                           "weight file from tf_keras.applications? Use --init=none to skip.")
  for n in matched:
    want = [tuple(w.shape) for w in ours[n].weights]
    if want != shapes[n]:
      raise ModelConfigError(
          f"{path}: layer {n!r} has weight shapes {shapes[n]} in the file but {want} in the "
          "student; the file is for another width multiplier (model.alpha) or architecture.")
  model.load_weights(path, by_name=True)
  return matched


def initialize(model: keras.Model, config) -> str:
  """Applies `config.init` ('imagenet' | 'none') to a freshly built core; returns a description."""
  init = config_value(config, "init", "imagenet")
  if init == "none":
    return "random (--init=none)"
  if init == "imagenet":
    path = find_imagenet_weights(config, config_value(config, "imagenet_weights", "") or "")
    loaded = load_imagenet_weights(model, path)
    return f"imagenet from {path} ({len(loaded)} layers)"
  raise ModelConfigError(f"unknown model.init {init!r}; use 'imagenet' or 'none'")
