"""Export the QAT student for devices: TF.js (uint8), TFLite int8, SavedModel, label bank.

Reads WORKDIR/qat/model.h5 (the quantization-aware student, docs/FORMATS.md section 3) and,
from --data_dir (a built tree_of_life_distill dataset), its label bank, teacher.json and
validation photos for TFLite calibration. Writes the export directory (format version 1,
docs/FORMATS.md section 4, formats.export_manifest):

  manifest.json                 ties it together (embed_dim, resolution, preprocessing, teacher,
                                format versions, sha256 + bytes of every file)
  tfjs/model.json, *.bin        graph model; on-grid weights stored uint8 (lossless, see
                                export.tfjs), float32 [N,R,R,3] 0..255 -> float32 [N,D] unit rows
  tflite/model_int8.tflite      int8 ops but the final L2 norm, float32 in/out (export.tflite)
  saved_model/                  `serving_default`: uint8 [N,H,W,3] any size -> float32 [N,D]
  labels/label_bank.json, label_bank.bin, names.bin (+ common_names.bin)  device label bank
                                (formats.device_label_bank, format version 2)

Everything is built in a staging directory next to EXPORT and renamed into place at the end,
so an interrupted export never leaves a directory that looks complete; re-running redoes it
(the whole export takes seconds to minutes, there is nothing worth resuming).
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from typing import Dict, Optional

import numpy as np
from absl import logging

from formats import atomic, export_manifest, hashing
from formats.export_manifest import LABELS_DIR, SAVED_MODEL_DIR, TFJS_DIR, TFLITE_PATH
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf.export import device_bank, plain_graph, saved_model, tfjs, tflite
from bioclip_lite_tf.keras import keras
from bioclip_lite_tf.train import workdir as workdir_lib

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FORMAT_VERSION = export_manifest.FORMAT_VERSION


class ExportInputError(ValueError):
  """Bad input to the exporter (missing checkpoint, mismatched label bank, ...): exit 2."""


def qat_model_path(workdir: str, phase: str = "qat") -> str:
  return workdir_lib.model_path(workdir, phase)


def load_qat_model(workdir: str, phase: str = "qat") -> keras.Model:
  """Loads WORKDIR/<phase>/model.h5 (raises ExportInputError naming the file when missing)."""
  try:
    return workdir_lib.load_phase_model(workdir, phase)
  except FileNotFoundError as e:
    raise ExportInputError(
        f"no {phase.upper()} checkpoint: {qat_model_path(workdir, phase)} does not exist. Train "
        f"first (python -m bioclip_lite_tf.train --workdir={workdir} ...), or point --workdir "
        "at a finished training run.") from e


def model_resolution(model: keras.Model) -> int:
  try:
    return saved_model.model_resolution(model)
  except ValueError as e:
    raise ExportInputError(str(e)) from e


model_embed_dim = saved_model.model_embed_dim


def representative_photos(data_dir: Optional[str], resolution: int, count: int
                          ) -> Dict[str, object]:
  """Calibration photos float32 [n, R, R, 3] 0..255 from the dataset's validation split
  (train if it is empty); synthetic photos only when no dataset is given."""
  if data_dir:
    dataset_dir = data_lib.find_dataset_dir(data_dir)
    split = data_lib.eval_split(dataset_dir)
    batches = [p for p, _ in data_lib.iter_examples(dataset_dir, split, resolution, count)]
    photos = np.concatenate(batches)[:count]
    if len(photos) < count:  # few validation photos: top up from train
      extra = [p for p, _ in data_lib.iter_examples(dataset_dir, "train", resolution,
                                                     count - len(photos))]
      if extra:
        photos = np.concatenate([photos] + extra)[:count]
    return {"photos": photos, "source": f"{dataset_dir}:{split}"}
  logging.warning("no --data_dir: calibrating TFLite on synthetic photos (not for release)")
  return {"photos": synthetic_photos(count, resolution), "source": "synthetic"}


def synthetic_photos(n: int, resolution: int, seed: int = 0) -> np.ndarray:
  """float32 [n, R, R, 3] in 0..255: smooth colour fields with blobs, so images differ in ways a
  convnet notices (pure noise makes every embedding nearly the same). The calibration fallback
  when an export is given no dataset."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:resolution, 0:resolution].astype(np.float32) / resolution
  out = np.empty((n, resolution, resolution, 3), np.float32)
  for i in range(n):
    base = rng.uniform(0, 255, 3)
    grad = rng.uniform(-120, 120, (2, 3))
    img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1]
    for _ in range(3):
      cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
      mask = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
      img[mask] = rng.uniform(0, 255, 3)
    out[i] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
  return out


@dataclasses.dataclass
class _Inputs:
  """What an export is made from: the plain graph of the QAT student and the label bank."""
  plain: plain_graph.PlainModel
  resolution: int
  embed_dim: int
  source_bank: Optional[device_bank.SourceLabelBank]
  bank_dir: Optional[str]
  teacher: dict
  normalization: Dict[str, list]   # {mean, std} of the student's own input normalization


def _read_inputs(workdir, data_dir, label_bank_dir, phase, qat_model) -> _Inputs:
  qat = qat_model if qat_model is not None else load_qat_model(workdir, phase)
  plain = plain_graph.plain_inference_model(qat)
  resolution = model_resolution(plain.model)
  embed_dim = model_embed_dim(plain.model)
  logging.info("plain inference graph: R=%d D=%d, %d quantized weights (%d not per-tensor), "
               "%d BatchNorms as add-mul", resolution, embed_dim, len(plain.quantized_weights),
               len([w for w in plain.quantized_weights if not w.per_tensor]),
               len(plain.folded_batchnorms))
  bank_dir = label_bank_dir or (os.path.join(data_lib.find_dataset_dir(data_dir), "label_bank")
                                if data_dir else None)
  teacher, source_bank = {}, None
  if bank_dir:
    source_bank = device_bank.read_source_label_bank(bank_dir)
    if source_bank.embed_dim != embed_dim:
      raise ExportInputError(
          f"label bank {bank_dir} holds {source_bank.embed_dim}-d text embeddings but the "
          f"student at {qat_model_path(workdir, phase)} outputs {embed_dim}-d embeddings; they "
          "must come from the same teacher")
    teacher = source_bank.teacher
  if data_dir:
    teacher = data_lib.read_teacher(data_lib.find_dataset_dir(data_dir)) or teacher
  return _Inputs(plain, resolution, embed_dim, source_bank, bank_dir, teacher,
                 model_normalization(qat))


def _write_models(inputs: _Inputs, staging: str, scratch: str, data_dir,
                  num_representative: int) -> Dict[str, dict]:
  """Steps 1-3: TF.js, TFLite int8, the serving SavedModel. Returns their manifest entries."""
  core, resolution = inputs.plain.model, inputs.resolution
  core_sm = os.path.join(scratch, "core_saved_model")
  saved_model.save_core_saved_model(core, core_sm)
  logging.info("[1/4] converting to TF.js")
  tfjs_stats = tfjs.convert_saved_model(core_sm, os.path.join(staging, TFJS_DIR))
  logging.info("TF.js: %d weight tensors uint8, %d float32 (%d values)",
               tfjs_stats["uint8_tensors"], tfjs_stats["float32_tensors"],
               tfjs_stats["float32_values"])

  logging.info("[2/4] converting to TFLite int8 (%d calibration photos)", num_representative)
  calibration = representative_photos(data_dir, resolution, num_representative)
  photos = calibration["photos"]
  tflite_bytes = tflite.convert_int8(core, lambda: (photos[i:i + 1] for i in range(len(photos))))
  atomic.write_bytes(os.path.join(staging, TFLITE_PATH), tflite_bytes)

  logging.info("[3/4] writing the serving SavedModel")
  saved_model.save_serving_saved_model(core, resolution, os.path.join(staging, SAVED_MODEL_DIR))
  return {
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
  }


def _write_label_bank(inputs: _Inputs, staging: str, dtype: str, dims: int = 0
                      ) -> Optional[dict]:
  """Step 4: the device label bank, or None when no label bank was given."""
  if inputs.source_bank is None:
    logging.warning("[4/4] no --data_dir or --label_bank_dir: export has no label bank")
    return None
  logging.info("[4/4] writing the device label bank from %s", inputs.bank_dir)
  meta = device_bank.write_device_label_bank(inputs.source_bank,
                                             os.path.join(staging, LABELS_DIR), dtype, dims)
  return {"path": f"{LABELS_DIR}/{device_bank.device_format.JSON_NAME}",
          "format_version": meta["format_version"],
          "num_species": meta["num_species"],
          "dtype": meta["dtype"], "logit_scale": meta["logit_scale"],
          "stored_dim": meta["rows"]["stored_dim"],
          "projection": meta.get("projection") is not None}


def model_normalization(model) -> Dict[str, list]:
  """{mean, std} of the exported graph's own input normalization layer (CLIP's for a student
  trained from scratch, ImageNet's [-1, 1] for init='imagenet'; model.input_normalization)."""
  from bioclip_lite_tf.model import NORMALIZATION_NAME
  # Nested models and wrapped layers (QAT) included: submodules lists every layer below.
  for layer in [model] + list(model.submodules):
    inner = getattr(layer, "layer", layer)   # a wrapped layer (QAT) holds the original
    name = getattr(layer, "name", "")
    if (name == NORMALIZATION_NAME or getattr(inner, "name", "") == NORMALIZATION_NAME) and \
        hasattr(inner, "mean") and hasattr(inner, "std"):
      return {"mean": [float(m) for m in np.ravel(inner.mean)],
              "std": [float(s) for s in np.ravel(inner.std)]}
  raise ExportInputError(f"the student has no {NORMALIZATION_NAME!r} layer (its first layers: "
                         f"{[l.name for l in model.layers[:4]]}); is it a bioclip_lite_tf "
                         "student?")


def _manifest(inputs: _Inputs, models: Dict[str, dict], label_bank: Optional[dict],
              workdir: str, phase: str) -> dict:
  teacher = inputs.teacher
  plain = inputs.plain
  qat_path = qat_model_path(workdir, phase)
  return {
      "embed_dim": inputs.embed_dim,
      "resolution": inputs.resolution,
      "preprocessing": {"resize": "squash", "interpolation": "bicubic", "antialias": True,
                        **inputs.normalization,
                        "input": "float32 0..255 NHWC, already resized",
                        "normalization": "inside the model"},
      "teacher": {"id": teacher.get("id", ""), "real_weights": teacher.get("real_weights"),
                  "logit_scale": teacher.get("logit_scale"),
                  "embed_dim": teacher.get("embed_dim")},
      "models": models,
      "label_bank": label_bank,
      "quantization": {"scheme": "weights 8-bit per-tensor (QAT), activations float",
                       "quantized_weights": len(plain.quantized_weights),
                       "not_per_tensor": [f"{w.layer}/{w.weight}" for w in plain.quantized_weights
                                          if not w.per_tensor],
                       "batchnorms_as_add_mul": plain.folded_batchnorms},
      "source": {"workdir": os.path.abspath(workdir), "phase": phase,
                 "qat_model_sha256": (hashing.sha256_file(qat_path) if os.path.isfile(qat_path)
                                      else None)},
      "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def export(workdir: str, out_dir: str, data_dir: Optional[str] = None,
           label_bank_dir: Optional[str] = None, phase: str = "qat",
           label_bank_dtype: str = "int8", num_representative: int = 200,
           qat_model: Optional[keras.Model] = None, label_bank_dims: int = 0) -> dict:
  """Runs the whole export; returns manifest.json's content. See the module docstring.

  label_bank_dtype / label_bank_dims: how the species rows are stored (device_bank.
  write_device_label_bank; dims 0 = full width, else a PCA projection to that many dims).
  """
  start = time.time()
  inputs = _read_inputs(workdir, data_dir, label_bank_dir, phase, qat_model)
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.staging-", dir=parent)
  scratch = tempfile.mkdtemp(prefix=".export-scratch-", dir=parent)
  try:
    models = _write_models(inputs, staging, scratch, data_dir, num_representative)
    label_bank = _write_label_bank(inputs, staging, label_bank_dtype, label_bank_dims)
    manifest = export_manifest.write_manifest(
        staging, _manifest(inputs, models, label_bank, workdir, phase))
    atomic.replace_dir(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)
  logging.info("export written to %s in %.1fs", out_dir, time.time() - start)
  return manifest
