r"""Evaluate the exported student: report.json, plots, MODEL_CARD.md.

  python -m bioclip_lite_tf.evaluate --workdir=WORKDIR --export_dir=EXPORT \
      --data_dir=TFDS_DIR --out_dir=REPORT

Reads the QAT student (WORKDIR/qat/model.h5), the export directory (docs/FORMATS.md section 4)
and the built tree_of_life_distill dataset (validation split, label bank, teacher.json).
Writes REPORT/ (format version 1):

  report.json       every key of report_schema.REQUIRED (docs/FORMATS.md), plus
                    extras (gzipped sizes, parity details, per-rank hierarchy, errors)
  accuracy.png      top-1 per rank: student vs teacher, student vs truth, teacher vs truth
  latency.png       latency per photo vs resolution per runtime (teacher at 224 as a line)
  size.png          bytes per artifact (raw and gzipped), teacher fp32 for scale
  MODEL_CARD.md     written from report.json
  parts/*.json      finished sections; a re-run skips them (resume), --force redoes them

The Keras reference for parity is the plain inference graph (QAT weights, float activations,
export_graph), which is what the exported models compute.
"""
from __future__ import annotations

import gzip
import os
import time
from typing import Dict

import numpy as np
from absl import logging

from formats import atomic, export_manifest
from formats import device_label_bank as device_format
from formats.export_manifest import LABELS_DIR, SAVED_MODEL_DIR, TFJS_DIR, TFLITE_PATH
from formats.ranks import RANKS
from formats.taxonomy import species_ancestors
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf.evaluate import latency as eval_latency
from bioclip_lite_tf.evaluate import metrics as eval_metrics
from bioclip_lite_tf.evaluate import model_card, plots, report_schema
from bioclip_lite_tf.evaluate.report import assemble_report
from bioclip_lite_tf.export import device_bank, plain_graph
from bioclip_lite_tf.export import tflite as export_tflite
from bioclip_lite_tf.export.exporter import (ExportInputError, load_qat_model, model_embed_dim,
                                             model_resolution, qat_model_path)

PARTS_DIR = "parts"


class EvaluationInputError(ValueError):
  """Bad input to the evaluator (missing/mismatched export, dataset, checkpoint): exit 2."""


def _write_json(path: str, obj) -> None:
  atomic.write_json(path, obj, sort_keys=False, default=float)


def _gzip_bytes(paths) -> int:
  total = 0
  for p in paths:
    with open(p, "rb") as f:
      total += len(gzip.compress(f.read(), 9))
  return total


def _files_under(path: str):
  if os.path.isfile(path):
    return [path]
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)


def artifact_sizes(export_dir: str) -> Dict[str, Dict[str, int]]:
  """{artifact: {bytes, gzip_bytes}} for tfjs, tflite, saved_model, label bank."""
  out = {}
  for name, rel in [("tfjs", TFJS_DIR), ("tflite", TFLITE_PATH),
                    ("saved_model", SAVED_MODEL_DIR), ("label_bank", LABELS_DIR)]:
    path = os.path.join(export_dir, rel)
    if not os.path.exists(path):
      continue
    files = _files_under(path)
    out[name] = {"bytes": int(sum(os.path.getsize(f) for f in files)),
                 "gzip_bytes": int(_gzip_bytes(files))}
  return out


class Evaluation:
  """One evaluation run; each section is cached in OUT/parts/<name>.json."""

  def __init__(self, workdir, export_dir, data_dir, out_dir, phase="qat", force=False):
    self.workdir, self.export_dir, self.data_dir, self.out_dir = (workdir, export_dir,
                                                                  data_dir, out_dir)
    self.phase, self.force = phase, force
    os.makedirs(os.path.join(out_dir, PARTS_DIR), exist_ok=True)
    manifest_path = os.path.join(export_dir, export_manifest.MANIFEST)
    if not os.path.isfile(manifest_path):
      raise EvaluationInputError(f"{manifest_path}: missing; run python -m "
                                 f"bioclip_lite_tf.export --out_dir={export_dir} first")
    self.manifest = export_manifest.read_manifest(export_dir)
    try:
      self.qat = load_qat_model(workdir, phase)
    except ExportInputError as e:
      raise EvaluationInputError(str(e)) from e
    self.plain = plain_graph.plain_inference_model(self.qat).model
    self.resolution = model_resolution(self.plain)
    self.embed_dim = model_embed_dim(self.plain)
    for key, value in (("embed_dim", self.embed_dim), ("resolution", self.resolution)):
      if self.manifest.get(key) != value:
        raise EvaluationInputError(
            f"{manifest_path} says {key}={self.manifest.get(key)} but the student in "
            f"{qat_model_path(workdir, phase)} has {key}={value}; re-export it")
    try:
      self.dataset_dir = data_lib.find_dataset_dir(data_dir)
      self.teacher = data_lib.read_teacher(self.dataset_dir)
    except data_lib.DataError as e:
      raise EvaluationInputError(str(e)) from e
    self.dataset_bank = device_bank.read_source_label_bank(
        os.path.join(self.dataset_dir, "label_bank"))
    if self.dataset_bank.embed_dim != self.embed_dim:
      raise EvaluationInputError(
          f"the dataset's label bank is {self.dataset_bank.embed_dim}-d but the student outputs "
          f"{self.embed_dim}-d embeddings; they were made with different teachers")
    self._choose_bank()
    self.aggregator = eval_metrics.RankAggregator(
        dict(zip(RANKS, species_ancestors({t.rank: t.parents for t in self.tables}))),
        {t.rank: len(t) for t in self.tables})
    self.parity_photos = None

  def _choose_bank(self):
    """Accuracy uses the shipped (device) label bank when it is the dataset's taxonomy."""
    labels = os.path.join(self.export_dir, LABELS_DIR)
    self.bank_note = "dataset label bank (float32)"
    self.tables = self.dataset_bank.tables
    self.species_embeddings = np.asarray(self.dataset_bank.species_embeddings, np.float32)
    self.logit_scale = self.dataset_bank.logit_scale
    if os.path.isfile(os.path.join(labels, device_format.JSON_NAME)):
      device = device_format.read_device_label_bank(labels)
      if device.embed_dim != self.embed_dim:
        raise EvaluationInputError(
            f"{labels}: label bank is {device.embed_dim}-d, the student outputs "
            f"{self.embed_dim}-d; the export's label bank does not match its model")
      if device.table("species").names == self.dataset_bank.table("species").names:
        self.species_embeddings = device.species_embeddings
        self.logit_scale = device.logit_scale
        self.bank_note = f"export's device label bank ({device.meta['dtype']})"
      else:
        self.bank_note = ("dataset label bank (float32): the export ships a different species "
                          "list")

  # -- sections -------------------------------------------------------------------------------

  def section(self, name, fn):
    path = os.path.join(self.out_dir, PARTS_DIR, f"{name}.json")
    if os.path.isfile(path) and not self.force:
      logging.info("section %s: done earlier (%s), skipped", name, path)
      return atomic.read_json(path)
    start = time.time()
    result = fn()
    result["seconds"] = round(time.time() - start, 2)
    _write_json(path, result)
    logging.info("section %s: %.1fs", name, time.time() - start)
    return result

  def accuracy(self, max_examples: int, parity_examples: int) -> dict:
    split = data_lib.eval_split(self.dataset_dir)
    acc = eval_metrics.AccuracyAccumulator(self.aggregator)
    kept = []
    seen = 0
    for photos, labels in data_lib.iter_examples(self.dataset_dir, split, self.resolution,
                                                  max_examples or None):
      emb = self.plain.predict_on_batch(photos)
      logits = self.logit_scale * (np.asarray(emb) @ self.species_embeddings.T)
      acc.update(logits, labels["taxon"], labels["topk_species_indices"],
                 labels["topk_species_logits"])
      if seen < parity_examples:
        kept.append(photos[:parity_examples - seen])
      seen += len(photos)
      if (seen // len(photos)) % 20 == 0:
        logging.info("accuracy: %d photos", seen)
    if seen < parity_examples and split != "train":
      # Parity needs no labels; a small validation split is topped up with training photos so
      # that agreement rates are measured on enough photos to mean something.
      for photos, _ in data_lib.iter_examples(self.dataset_dir, "train", self.resolution,
                                               parity_examples - seen):
        kept.append(photos)
    if kept:
      np.save(os.path.join(self.out_dir, PARTS_DIR, "parity_photos.npy"), np.concatenate(kept))
    out = acc.result()
    out["split"] = split
    out["label_bank"] = self.bank_note
    return out

  def _parity_photos(self) -> np.ndarray:
    path = os.path.join(self.out_dir, PARTS_DIR, "parity_photos.npy")
    if not os.path.isfile(path):
      raise EvaluationInputError(f"{path}: missing (the accuracy section writes it); rerun "
                                 "with --force")
    return np.load(path)

  def parity(self) -> dict:
    photos = self._parity_photos()
    reference = self.plain.predict(photos, batch_size=32, verbose=0)
    out = {"reference": "Keras plain inference graph: QAT weights, float activations"}
    errors = []
    tfjs_dir = os.path.join(self.export_dir, TFJS_DIR)
    for backend, key in (("wasm", "tfjs_vs_keras"), ("cpu", "tfjs_cpu_vs_keras")):
      try:
        out[key] = eval_metrics.parity(reference, eval_latency.tfjs_embed(tfjs_dir, photos,
                                                                          backend),
                                       self.species_embeddings)
        out[key]["backend"] = backend
      except eval_latency.NodeRunnerError as e:
        errors.append(f"tfjs {backend}: {e}")
        out[key] = {"n": 0, "cosine_min": None, "top1_agreement": None}
    with open(os.path.join(self.export_dir, TFLITE_PATH), "rb") as f:
      content = f.read()
    out["tflite_vs_keras"] = eval_metrics.parity(reference, export_tflite.run(content, photos),
                                                 self.species_embeddings)
    # Also against the QAT model with its own activation fake-quants (when it has any).
    qat_out = self.qat.predict(photos, batch_size=32, verbose=0)
    out["keras_qat_activations_vs_keras"] = eval_metrics.parity(reference, qat_out,
                                                                self.species_embeddings)
    out["errors"] = errors
    return out

  def latency(self, resolutions, runs, teacher_runs, threads, architecture) -> dict:
    photos = self._parity_photos()[:64]
    student = eval_latency.student_latency(
        self.plain, resolutions, runs, photos, threads,
        os.path.join(self.export_dir, LABELS_DIR), 224, log=logging.info)
    try:
      teacher = eval_latency.teacher_latency(teacher_runs, 224, threads, architecture)
      student["latency_ms"]["teacher_torch_cpu"] = {"224": teacher["latency_ms"]}
      student["threads"]["teacher_torch_cpu"] = teacher["threads"]
      student["teacher"] = teacher
    except eval_latency.TeacherTimingError as e:
      student["errors"].append(f"teacher: {e}")
      student["latency_ms"]["teacher_torch_cpu"] = {"224": None}
    return student

  def memory_rss(self) -> dict:
    try:
      return eval_latency.keras_peak_rss(self.workdir, self.phase)
    except RuntimeError as e:
      return {"peak_rss_bytes": None, "error": str(e)}

  def artifact_sizes(self) -> Dict[str, Dict[str, int]]:
    return artifact_sizes(self.export_dir)

  def report(self, acc, par, lat, rss) -> dict:
    return assemble_report(self, acc, par, lat, rss)


def evaluate(workdir, export_dir, data_dir, out_dir, phase="qat", max_eval_examples=0,
             parity_examples=256, latency_resolutions=(128, 160, 192, 224, 256),
             latency_runs=20, teacher_runs=5, threads=1, teacher_architecture="ViT-B-16",
             force=False) -> dict:
  """Runs every section (resuming finished ones) and writes REPORT/. Returns report.json."""
  # 224 is the teacher's input size: the schema's latency_ms.<runtime>."224" always exists.
  latency_resolutions = sorted(set(int(r) for r in latency_resolutions) | {224})
  ev = Evaluation(workdir, export_dir, data_dir, out_dir, phase, force)
  acc = ev.section("accuracy", lambda: ev.accuracy(max_eval_examples, parity_examples))
  par = ev.section("parity", ev.parity)
  lat = ev.section("latency", lambda: ev.latency(latency_resolutions, latency_runs,
                                                 teacher_runs, threads, teacher_architecture))
  rss = ev.section("memory_rss", ev.memory_rss)
  report = ev.report(acc, par, lat, rss)
  missing = report_schema.missing_keys(report)
  if missing:  # a bug in this file, not bad input
    raise AssertionError(f"report.json would lack {missing}")
  _write_json(os.path.join(out_dir, "report.json"), report)
  plots.write_all(report, out_dir)
  model_card.write(report, os.path.join(out_dir, "MODEL_CARD.md"))
  return report


