r"""Evaluate the exported student: report.json, plots, MODEL_CARD.md.

  python -m bioclip_lite_tf.evaluate --workdir=WORKDIR --export_dir=EXPORT \
      --data_dir=TFDS_DIR --out_dir=REPORT

Reads the QAT student (WORKDIR/qat/model.h5; float/ and prune/model.h5 for compression_steps),
the export directory (docs/FORMATS.md section 4) and the built tree_of_life_distill dataset
(validation split, label bank, teacher.json).
Writes REPORT/ (report format version 2):

  report.json       every key of report_schema.REQUIRED (docs/FORMATS.md), plus
                    extras (gzipped sizes, parity details, per-rank hierarchy, errors);
                    the accuracy section is one pass over the evaluation split that also runs
                    every compression step (float, pruned, QAT, TF.js, TFLite int8) on the
                    same photos: report.compression_steps
  *.png             plots of report.json (evaluate/plots.py lists them): per-rank top-1 per
                    compression step and runtime, the coverage-accuracy curve of `best`, the
                    mistake-severity histogram, latency against resolution per runtime, the 20
                    most-confused family pairs, top-1 per rank, sizes
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
# A finished section written by an evaluator with another version is redone, not reused.
PARTS_VERSION = report_schema.REPORT_FORMAT_VERSION


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



def _step_row(res, float_acc) -> dict:
  """compression_steps.<step>: species agreement and embedding cosine (None when it could not
  run), the per-rank top-1 agreement, and the figure against the dataset's float32 label bank
  (what training's validation reports) for the Keras steps."""
  if res is None:
    return {"n": 0, "species_top1_agreement": None, "embedding_cosine_mean": None,
            "top1_agreement_by_rank": None}
  a = res["accuracy"]
  row = {"n": a["n"],
         "species_top1_agreement": a["student_vs_teacher"]["top1"]["species"],
         "species_top5_agreement": a["student_vs_teacher"]["top5"]["species"],
         "embedding_cosine_mean": res["embedding_cosine"]["mean"],
         "embedding_cosine_p5": res["embedding_cosine"]["p5"],
         "top1_agreement_by_rank": a["student_vs_teacher"]["top1"],
         "student_vs_truth_top1_by_rank": a["student_vs_truth"]["top1"],
         "mistake_severity": res["hierarchy"]["mistake_severity"],
         "hdist_at_1": res["hierarchy"]["hdist_at_1"]}
  if float_acc is not None and float_acc.n:
    fa = float_acc.result()["accuracy"]
    row["species_top1_agreement_dataset_label_bank"] = fa["student_vs_teacher"]["top1"]["species"]
  return row


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
      done = atomic.read_json(path)
      if done.get("parts_version") == PARTS_VERSION:
        logging.info("section %s: done earlier (%s), skipped", name, path)
        return done
      logging.info("section %s: %s is from another evaluator version, redone", name, path)
    start = time.time()
    result = fn()
    result["seconds"] = round(time.time() - start, 2)
    result["parts_version"] = PARTS_VERSION
    _write_json(path, result)
    logging.info("section %s: %.1fs", name, time.time() - start)
    return result

  # The models of each compression step, run on the same evaluation photos.
  STEPS = ("float", "pruned", "qat", "tfjs", "tflite_int8")
  TFJS_CHUNK = 512   # photos per Node call (bounded memory at any split size)

  def _step_embedders(self, errors):
    """{step: photos float32 [B,R,R,3] -> float32 [B,D]} for the Keras and TFLite steps."""
    out = {"qat": lambda x: np.asarray(self.plain.predict_on_batch(x))}
    for step, phase in (("float", "float"), ("pruned", "prune")):
      try:
        model = load_qat_model(self.workdir, phase)
        out[step] = lambda x, m=model: np.asarray(m.predict_on_batch(x))
      except ExportInputError as e:
        errors.append(f"compression step {step}: {e}")
    tflite_path = os.path.join(self.export_dir, TFLITE_PATH)
    if os.path.isfile(tflite_path):
      with open(tflite_path, "rb") as f:
        interp = export_tflite.interpreter(f.read())
      inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]

      def tflite_embed(x):
        rows = []
        for image in x:
          interp.set_tensor(inp["index"], np.asarray(image[None], np.float32))
          interp.invoke()
          rows.append(interp.get_tensor(outp["index"])[0].copy())
        return np.stack(rows).astype(np.float32)
      out["tflite_int8"] = tflite_embed
    else:
      errors.append(f"compression step tflite_int8: {tflite_path} missing")
    return out

  def _logits(self, emb, species_embeddings=None):
    bank = self.species_embeddings if species_embeddings is None else species_embeddings
    return self.logit_scale * (np.asarray(emb, np.float32) @ bank.T)

  def accuracy(self, max_examples: int, parity_examples: int) -> dict:
    """One pass over the evaluation split: every metric of the QAT student (the exported graph)
    and, for each compression step, the same metrics on the same photos."""
    split = data_lib.eval_split(self.dataset_dir)
    errors = []
    embedders = self._step_embedders(errors)
    new_acc = lambda: eval_metrics.MetricsAccumulator(self.aggregator, self.logit_scale)  # noqa
    accs = {step: new_acc() for step in self.STEPS}
    # The dataset's float32 label bank: what training's validation scores against.
    float_bank = np.asarray(self.dataset_bank.species_embeddings, np.float32)
    float_accs = {step: new_acc() for step in ("float", "pruned", "qat")}
    tfjs_dir = os.path.join(self.export_dir, TFJS_DIR)
    tfjs_buffer = []
    tfjs_state = {"error": None}

    def update(acc, emb, labels, bank=None):
      acc.update(self._logits(emb, bank), labels["taxon"], labels["topk_species_indices"],
                 labels["topk_species_logits"], emb, labels["teacher_embedding"],
                 labels.get("teacher_logsumexp"))

    def flush_tfjs():
      if not tfjs_buffer or tfjs_state["error"]:
        tfjs_buffer.clear()
        return
      photos = np.concatenate([p for p, _ in tfjs_buffer])
      try:
        emb = eval_latency.tfjs_embed(tfjs_dir, photos, "wasm")
      except eval_latency.NodeRunnerError as e:
        tfjs_state["error"] = f"compression step tfjs: {e}"
        tfjs_buffer.clear()
        return
      start = 0
      for p, labels in tfjs_buffer:
        update(accs["tfjs"], emb[start:start + len(p)], labels)
        start += len(p)
      tfjs_buffer.clear()

    kept = []
    seen = 0
    for photos, labels in data_lib.iter_examples(self.dataset_dir, split, self.resolution,
                                                  max_examples or None):
      for step, embed in embedders.items():
        emb = embed(photos)
        update(accs[step], emb, labels)
        if step in float_accs:
          update(float_accs[step], emb, labels, float_bank)
      tfjs_buffer.append((photos, labels))
      if sum(len(p) for p, _ in tfjs_buffer) >= self.TFJS_CHUNK:
        flush_tfjs()
      if seen < parity_examples:
        kept.append(photos[:parity_examples - seen])
      seen += len(photos)
      if (seen // len(photos)) % 20 == 0:
        logging.info("accuracy: %d photos", seen)
    flush_tfjs()
    if tfjs_state["error"]:
      errors.append(tfjs_state["error"])
    if seen < parity_examples and split != "train":
      # Parity needs no labels; a small validation split is topped up with training photos so
      # that agreement rates are measured on enough photos to mean something.
      for photos, _ in data_lib.iter_examples(self.dataset_dir, "train", self.resolution,
                                               parity_examples - seen):
        kept.append(photos)
    if kept:
      np.save(os.path.join(self.out_dir, PARTS_DIR, "parity_photos.npy"), np.concatenate(kept))
    names = {t.rank: list(t.names) for t in self.tables}
    out = accs["qat"].result(names=names)
    out["compression_steps"] = {}
    for step in self.STEPS:
      res = accs[step].result() if accs[step].n else None
      out["compression_steps"][step] = _step_row(res, float_accs.get(step))
    out["split"] = split
    out["label_bank"] = self.bank_note
    out["compression_errors"] = errors
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


