r"""Export the QAT student for devices: TF.js (uint8), TFLite int8, SavedModel, label bank.

  python -m bioclip_lite_tf.export --workdir=WORKDIR --out_dir=EXPORT [--data_dir=TFDS_DIR]

Reads WORKDIR/qat/model.h5 (the quantization-aware student, docs/FORMATS.md section 3) and,
from --data_dir (a built tree_of_life_distill dataset), its label bank, teacher.json and
validation photos for TFLite calibration. Writes the export directory (format version 1,
docs/FORMATS.md section 4, bioclip_lite_tf/README.md):

  manifest.json                 ties it together (embed_dim, resolution, preprocessing, teacher,
                                format versions, sha256 + bytes of every file)
  tfjs/model.json, *.bin        graph model; on-grid weights stored uint8 (lossless, see
                                export_tfjs), float32 [N,R,R,3] 0..255 -> float32 [N,D] unit rows
  tflite/model_int8.tflite      int8 ops but the final L2 norm, float32 in/out (export_tflite)
  saved_model/                  `serving_default`: uint8 [N,H,W,3] any size -> float32 [N,D]
  labels/label_bank.json, .bin  device label bank (see device_label_bank)

Everything is built in a staging directory next to EXPORT and renamed into place at the end,
so an interrupted export never leaves a directory that looks complete; re-running redoes it
(the whole export takes seconds to minutes, there is nothing worth resuming).
Exit status 2 for bad input: no QAT checkpoint, a label bank whose width does not match the
model, a --data_dir without a dataset.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Iterator, Optional

import numpy as np
from absl import app, flags, logging

from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf import device_label_bank, eval_data, export_graph, export_tfjs, export_tflite

FORMAT_VERSION = 1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TFJS_DIR = "tfjs"
TFLITE_PATH = os.path.join("tflite", "model_int8.tflite")
SAVED_MODEL_DIR = "saved_model"
LABELS_DIR = "labels"


class ExportInputError(ValueError):
  """Bad input to the exporter (missing checkpoint, mismatched label bank, ...): exit 2."""


# ---------------------------------------------------------------------------------------------
# Loading the QAT model.

def _quantize_scope():
  """A scope that knows the student's layers and quantize configs (and tfmot's)."""
  try:
    from bioclip_lite_tf import quantization  # the student's scheme
    return quantization.quantize_scope()
  except ImportError:  # pragma: no cover - only before the student package exists
    import tensorflow_model_optimization as tfmot
    return tfmot.quantization.keras.quantize_scope()


def qat_model_path(workdir: str, phase: str = "qat") -> str:
  return os.path.join(workdir, phase, "model.h5")


def load_qat_model(workdir: str, phase: str = "qat") -> keras.Model:
  """Loads WORKDIR/<phase>/model.h5 (raises ExportInputError naming the file when missing)."""
  path = qat_model_path(workdir, phase)
  if not os.path.isfile(path):
    raise ExportInputError(
        f"no {phase.upper()} checkpoint: {path} does not exist. Train first "
        f"(python -m bioclip_lite_tf.train --workdir={workdir} ...), or point --workdir at a "
        "finished training run.")
  # Same as bioclip_lite_tf.train.load_phase_model; train.py is not imported because it
  # defines absl flags (--workdir, ...) at import time, which would clash with ours.
  with _quantize_scope():
    return keras.models.load_model(path, compile=False)


def model_resolution(model: keras.Model) -> int:
  shape = model.inputs[0].shape
  if shape[1] is None or shape[1] != shape[2]:
    raise ExportInputError(f"model input shape {shape}: expected [N, R, R, 3] with fixed R")
  return int(shape[1])


def model_embed_dim(model: keras.Model) -> int:
  return int(model.outputs[0].shape[-1])


# ---------------------------------------------------------------------------------------------
# The pieces.

def serving_model(core: keras.Model, resolution: int) -> keras.Model:
  """uint8 [N, H, W, 3] any size -> float32 [N, D]: the student's own with_preprocessing."""
  from bioclip_lite_tf.model import with_preprocessing
  return with_preprocessing(core, resolution)


def save_serving_saved_model(core: keras.Model, resolution: int, path: str) -> None:
  """SavedModel whose `serving_default` takes uint8 photos of any size (batch of N)."""
  model = serving_model(core, resolution)

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


def representative_photos(data_dir: Optional[str], resolution: int, count: int
                          ) -> Dict[str, object]:
  """Calibration photos float32 [n, R, R, 3] 0..255 from the dataset's validation split
  (train if it is empty); synthetic photos only when no dataset is given."""
  if data_dir:
    dataset_dir = eval_data.find_dataset_dir(data_dir)
    split = eval_data.eval_split(dataset_dir)
    batches = [p for p, _ in eval_data.iter_examples(dataset_dir, split, resolution, count)]
    photos = np.concatenate(batches)[:count]
    if len(photos) < count:  # few validation photos: top up from train
      extra = [p for p, _ in eval_data.iter_examples(dataset_dir, "train", resolution,
                                                      count - len(photos))]
      if extra:
        photos = np.concatenate([photos] + extra)[:count]
    return {"photos": photos, "source": f"{dataset_dir}:{split}"}
  from bioclip_lite_tf.export_testing import synthetic_photos
  logging.warning("no --data_dir: calibrating TFLite on synthetic photos (not for release)")
  return {"photos": synthetic_photos(count, resolution), "source": "synthetic"}


def sha256_file(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def file_table(root: str) -> Dict[str, dict]:
  """{relative path: {sha256, bytes}} for every file under root (sorted, '/' separators)."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in sorted(files):
      full = os.path.join(dirpath, name)
      rel = os.path.relpath(full, root).replace(os.sep, "/")
      if rel == "manifest.json":
        continue
      out[rel] = {"sha256": sha256_file(full), "bytes": os.path.getsize(full)}
  return dict(sorted(out.items()))


def _label_bank_dir(data_dir: Optional[str], label_bank_dir: Optional[str]) -> Optional[str]:
  if label_bank_dir:
    return label_bank_dir
  if data_dir:
    return os.path.join(eval_data.find_dataset_dir(data_dir), "label_bank")
  return None


def export(workdir: str, out_dir: str, data_dir: Optional[str] = None,
           label_bank_dir: Optional[str] = None, phase: str = "qat",
           label_bank_dtype: str = "int8", num_representative: int = 200,
           qat_model: Optional[keras.Model] = None) -> dict:
  """Runs the whole export; returns manifest.json's content. See the module docstring."""
  start = time.time()
  qat = qat_model if qat_model is not None else load_qat_model(workdir, phase)
  plain = export_graph.plain_inference_model(qat)
  core = plain.model
  resolution = model_resolution(core)
  embed_dim = model_embed_dim(core)
  not_per_tensor = [f"{w.layer}/{w.weight}" for w in plain.quantized_weights if not w.per_tensor]
  logging.info("plain inference graph: R=%d D=%d, %d quantized weights (%d not per-tensor), "
               "%d BatchNorms as add-mul", resolution, embed_dim, len(plain.quantized_weights),
               len(not_per_tensor), len(plain.folded_batchnorms))

  bank_dir = _label_bank_dir(data_dir, label_bank_dir)
  teacher = {}
  source_bank = None
  if bank_dir:
    source_bank = device_label_bank.read_source_label_bank(bank_dir)
    if source_bank.embed_dim != embed_dim:
      raise ExportInputError(
          f"label bank {bank_dir} holds {source_bank.embed_dim}-d text embeddings but the "
          f"student at {qat_model_path(workdir, phase)} outputs {embed_dim}-d embeddings; they "
          "must come from the same teacher")
    teacher = source_bank.teacher
  if data_dir:
    teacher = eval_data.read_teacher(eval_data.find_dataset_dir(data_dir)) or teacher

  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
  scratch = tempfile.mkdtemp(prefix=".export-scratch-", dir=parent)
  try:
    # 1. TF.js from a SavedModel of the plain core.
    core_sm = os.path.join(scratch, "core_saved_model")
    save_core_saved_model(core, core_sm)
    logging.info("[1/4] converting to TF.js")
    tfjs_stats = export_tfjs.convert_saved_model(core_sm, os.path.join(staging, TFJS_DIR))
    logging.info("TF.js: %d weight tensors uint8, %d float32 (%d values)",
                 tfjs_stats["uint8_tensors"], tfjs_stats["float32_tensors"],
                 tfjs_stats["float32_values"])

    # 2. TFLite int8, calibrated on real photos.
    logging.info("[2/4] converting to TFLite int8 (%d calibration photos)", num_representative)
    calibration = representative_photos(data_dir, resolution, num_representative)
    photos = calibration["photos"]
    tflite_bytes = export_tflite.convert_int8(core, lambda: (photos[i:i + 1]
                                                             for i in range(len(photos))))
    os.makedirs(os.path.join(staging, "tflite"))
    with open(os.path.join(staging, TFLITE_PATH), "wb") as f:
      f.write(tflite_bytes)

    # 3. SavedModel that takes uint8 photos of any size.
    logging.info("[3/4] writing the serving SavedModel")
    save_serving_saved_model(core, resolution, os.path.join(staging, SAVED_MODEL_DIR))

    # 4. Device label bank.
    bank_meta = None
    if source_bank is not None:
      logging.info("[4/4] writing the device label bank from %s", bank_dir)
      bank_meta = device_label_bank.write_device_label_bank(
          source_bank, os.path.join(staging, LABELS_DIR), label_bank_dtype)
    else:
      logging.warning("[4/4] no --data_dir or --label_bank_dir: export has no label bank")

    manifest = {
        "format": "bioclip-lite-export",
        "format_version": FORMAT_VERSION,
        "embed_dim": embed_dim,
        "resolution": resolution,
        "preprocessing": {"resize": "squash", "interpolation": "bicubic", "antialias": True,
                          "mean": list(CLIP_MEAN), "std": list(CLIP_STD),
                          "input": "float32 0..255 NHWC, already resized",
                          "normalization": "inside the model"},
        "teacher": {"id": teacher.get("id", ""), "real_weights": teacher.get("real_weights"),
                    "logit_scale": teacher.get("logit_scale"),
                    "embed_dim": teacher.get("embed_dim")},
        "models": {
            "tfjs": {"path": f"{TFJS_DIR}/model.json", "format": "tfjs_graph_model",
                     "weights": "uint8 where on a per-tensor grid, else float32",
                     "uint8_tensors": tfjs_stats["uint8_tensors"],
                     "float32_tensors": tfjs_stats["float32_tensors"],
                     "float32_values": tfjs_stats["float32_values"],
                     "input": "float32 [N, R, R, 3]", "output": "float32 [N, D] unit rows"},
            "tflite": {"path": TFLITE_PATH,
                       "ops": "int8 except the final L2 normalization (float32)",
                       "input": "float32 [1, R, R, 3] 0..255", "output": "float32 [1, D]",
                       "calibration": calibration["source"],
                       "calibration_photos": int(len(photos))},
            "saved_model": {"path": SAVED_MODEL_DIR, "signature": "serving_default",
                            "input": "uint8 [N, H, W, 3] any size", "output": "embedding"},
        },
        "label_bank": None if bank_meta is None else {
            "path": f"{LABELS_DIR}/{device_label_bank.JSON_NAME}",
            "format_version": bank_meta["format_version"],
            "num_species": bank_meta["species_embeddings"]["shape"][0],
            "dtype": bank_meta["dtype"], "logit_scale": bank_meta["logit_scale"]},
        "quantization": {"scheme": "weights 8-bit per-tensor (QAT), activations float",
                         "quantized_weights": len(plain.quantized_weights),
                         "not_per_tensor": not_per_tensor,
                         "batchnorms_as_add_mul": plain.folded_batchnorms},
        "source": {"workdir": os.path.abspath(workdir), "phase": phase,
                   "qat_model_sha256": (sha256_file(qat_model_path(workdir, phase))
                                        if os.path.isfile(qat_model_path(workdir, phase))
                                        else None)},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest["files"] = file_table(staging)
    with open(os.path.join(staging, "manifest.json"), "w") as f:
      json.dump(manifest, f, indent=2)
    if os.path.exists(out_dir):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
      os.replace(out_dir, os.path.join(old, "x"))
      os.replace(staging, out_dir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
  logging.info("export written to %s in %.1fs", out_dir, time.time() - start)
  return manifest


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir holding qat/model.h5 (the "
                      "quantization-aware student written by bioclip_lite_tf.train).")
  flags.DEFINE_string("out_dir", None, "Export directory to write (replaced atomically).")
  flags.DEFINE_string("data_dir", None, "Built tree_of_life_distill dataset (TFDS data dir or "
                      "its version dir): label bank, teacher.json, calibration photos.")
  flags.DEFINE_string("label_bank_dir", None, "A label_bank/ directory to ship instead of the "
                      "dataset's (e.g. from python -m teacher_cache.label_bank).")
  flags.DEFINE_string("phase", "qat", "Which phase's model.h5 to export (qat for release).")
  flags.DEFINE_enum("label_bank_dtype", "int8", list(device_label_bank.DTYPES),
                    "Storage of the species text embeddings in the device label bank.")
  flags.DEFINE_integer("num_representative", 200, "Validation photos used to calibrate the "
                       "TFLite int8 activation ranges.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.workdir or not FLAGS.out_dir:
    print("error: --workdir and --out_dir are required", file=sys.stderr)
    return 2
  try:
    manifest = export(FLAGS.workdir, FLAGS.out_dir, FLAGS.data_dir, FLAGS.label_bank_dir,
                      FLAGS.phase, FLAGS.label_bank_dtype, FLAGS.num_representative)
  except (ExportInputError, device_label_bank.LabelBankFormatError,
          eval_data.DatasetNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sizes = {k: v["bytes"] for k, v in manifest["files"].items()}
  tfjs_bytes = sum(v for k, v in sizes.items() if k.startswith("tfjs/"))
  print(f"exported to {FLAGS.out_dir}: R={manifest['resolution']} D={manifest['embed_dim']}, "
        f"TF.js {tfjs_bytes} bytes, TFLite {sizes.get('tflite/model_int8.tflite')} bytes")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
