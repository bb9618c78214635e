r"""Evaluate the exported student: report.json, plots, MODEL_CARD.md.

  python -m bioclip_lite_tf.evaluate --workdir=WORKDIR --export_dir=EXPORT \
      --data_dir=TFDS_DIR --out_dir=REPORT

Reads the QAT student (WORKDIR/qat/model.h5), the export directory (docs/FORMATS.md section 4)
and the built tree_of_life_distill dataset (validation split, label bank, teacher.json).
Writes REPORT/ (format version 1):

  report.json       every key of DESIGN.md's report.json schema (report_schema.REQUIRED), plus
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
import json
import os
import sys
import time
from typing import Dict, Optional

import numpy as np
from absl import app, flags, logging

from bioclip_lite_tf.keras import keras, tf  # noqa: F401  (one tf_keras import point)
from bioclip_lite_tf import (device_label_bank, eval_data, eval_latency, eval_metrics, export,
                             export_graph, export_tflite, model_card, plots, report_schema)

PARTS_DIR = "parts"


class EvaluationInputError(ValueError):
  """Bad input to the evaluator (missing/mismatched export, dataset, checkpoint): exit 2."""


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=False, default=float)
  os.replace(tmp, path)


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
  for name, rel in [("tfjs", export.TFJS_DIR), ("tflite", export.TFLITE_PATH),
                    ("saved_model", export.SAVED_MODEL_DIR), ("label_bank", export.LABELS_DIR)]:
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
    manifest_path = os.path.join(export_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
      raise EvaluationInputError(f"{manifest_path}: missing; run python -m "
                                 f"bioclip_lite_tf.export --out_dir={export_dir} first")
    with open(manifest_path) as f:
      self.manifest = json.load(f)
    try:
      self.qat = export.load_qat_model(workdir, phase)
    except export.ExportInputError as e:
      raise EvaluationInputError(str(e)) from e
    self.plain = export_graph.plain_inference_model(self.qat).model
    self.resolution = export.model_resolution(self.plain)
    self.embed_dim = export.model_embed_dim(self.plain)
    for key, value in (("embed_dim", self.embed_dim), ("resolution", self.resolution)):
      if self.manifest.get(key) != value:
        raise EvaluationInputError(
            f"{manifest_path} says {key}={self.manifest.get(key)} but the student in "
            f"{export.qat_model_path(workdir, phase)} has {key}={value}; re-export it")
    try:
      self.dataset_dir = eval_data.find_dataset_dir(data_dir)
      self.teacher = eval_data.read_teacher(self.dataset_dir)
    except eval_data.DatasetNotFoundError as e:
      raise EvaluationInputError(str(e)) from e
    self.dataset_bank = device_label_bank.read_source_label_bank(
        os.path.join(self.dataset_dir, "label_bank"))
    if self.dataset_bank.embed_dim != self.embed_dim:
      raise EvaluationInputError(
          f"the dataset's label bank is {self.dataset_bank.embed_dim}-d but the student outputs "
          f"{self.embed_dim}-d embeddings; they were made with different teachers")
    self._choose_bank()
    self.aggregator = eval_metrics.RankAggregator(
        device_label_bank.species_ancestors(self.taxa),
        {r: len(self.taxa[r].names) for r in eval_metrics.RANKS})
    self.parity_photos = None

  def _choose_bank(self):
    """Accuracy uses the shipped (device) label bank when it is the dataset's taxonomy."""
    labels = os.path.join(self.export_dir, export.LABELS_DIR)
    self.bank_note = "dataset label bank (float32)"
    self.taxa = self.dataset_bank.taxa
    self.species_embeddings = np.asarray(self.dataset_bank.species_embeddings, np.float32)
    self.logit_scale = self.dataset_bank.logit_scale
    if os.path.isfile(os.path.join(labels, device_label_bank.JSON_NAME)):
      device = device_label_bank.read_device_label_bank(labels)
      if device.embed_dim != self.embed_dim:
        raise EvaluationInputError(
            f"{labels}: label bank is {device.embed_dim}-d, the student outputs "
            f"{self.embed_dim}-d; the export's label bank does not match its model")
      if device.taxa["species"].names == self.dataset_bank.taxa["species"].names:
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
      with open(path) as f:
        return json.load(f)
    start = time.time()
    result = fn()
    result["seconds"] = round(time.time() - start, 2)
    _write_json(path, result)
    logging.info("section %s: %.1fs", name, time.time() - start)
    return result

  def accuracy(self, max_examples: int, parity_examples: int) -> dict:
    split = eval_data.eval_split(self.dataset_dir)
    acc = eval_metrics.AccuracyAccumulator(self.aggregator)
    kept = []
    seen = 0
    for photos, labels in eval_data.iter_examples(self.dataset_dir, split, self.resolution,
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
      for photos, _ in eval_data.iter_examples(self.dataset_dir, "train", self.resolution,
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
    tfjs_dir = os.path.join(self.export_dir, export.TFJS_DIR)
    for backend, key in (("wasm", "tfjs_vs_keras"), ("cpu", "tfjs_cpu_vs_keras")):
      try:
        out[key] = eval_metrics.parity(reference, eval_latency.tfjs_embed(tfjs_dir, photos,
                                                                          backend),
                                       self.species_embeddings)
        out[key]["backend"] = backend
      except eval_latency.NodeRunnerError as e:
        errors.append(f"tfjs {backend}: {e}")
        out[key] = {"n": 0, "cosine_min": None, "top1_agreement": None}
    with open(os.path.join(self.export_dir, export.TFLITE_PATH), "rb") as f:
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
        os.path.join(self.export_dir, export.LABELS_DIR), 224, log=logging.info)
    try:
      teacher = eval_latency.teacher_latency(teacher_runs, 224, threads, architecture)
      student["latency_ms"]["teacher_torch_cpu"] = {"224": teacher["latency_ms"]}
      student["threads"]["teacher_torch_cpu"] = teacher["threads"]
      student["teacher"] = teacher
    except Exception as e:  # pylint: disable=broad-except
      student["errors"].append(f"teacher: {e}")
      student["latency_ms"]["teacher_torch_cpu"] = {"224": None}
    return student

  def memory_rss(self) -> dict:
    try:
      return eval_latency.keras_peak_rss(self.workdir, self.phase)
    except RuntimeError as e:
      return {"peak_rss_bytes": None, "error": str(e)}

  # -- assembly -------------------------------------------------------------------------------

  def report(self, acc, par, lat, rss) -> dict:
    counts = export_graph.count_params(self.plain)
    sizes = artifact_sizes(self.export_dir)
    teacher_bytes = (lat.get("teacher") or {}).get("fp32_bytes")
    speedup = None
    lat_ms = lat["latency_ms"]
    t224 = lat_ms.get("teacher_torch_cpu", {}).get("224")
    splits = eval_data.split_sizes(self.dataset_dir)
    report = {
        "format_version": report_schema.REPORT_FORMAT_VERSION,
        "model": {
            "params": counts["params"], "kernel_params": counts["kernel_params"],
            "sparsity": counts["sparsity"], "resolution": self.resolution,
            "embed_dim": self.embed_dim,
            "keras_fp32_bytes": 4 * counts["params"],
            "tfjs_bytes": sizes.get("tfjs", {}).get("bytes"),
            "tfjs_gzip_bytes": sizes.get("tfjs", {}).get("gzip_bytes"),
            "tflite_bytes": sizes.get("tflite", {}).get("bytes"),
            "tflite_gzip_bytes": sizes.get("tflite", {}).get("gzip_bytes"),
            "saved_model_bytes": sizes.get("saved_model", {}).get("bytes"),
            "label_bank_bytes": sizes.get("label_bank", {}).get("bytes"),
            "label_bank_gzip_bytes": sizes.get("label_bank", {}).get("gzip_bytes"),
            "teacher_fp32_bytes": teacher_bytes,
        },
        "parity": {k: v for k, v in par.items() if k not in ("seconds",)},
        "latency_ms": lat_ms,
        "accuracy": acc["accuracy"],
        "hierarchy": acc["hierarchy"],
        "memory": {
            "tfjs_peak_bytes": {"224": None, **lat["memory"].get("tfjs_peak_bytes", {})},
            "tfjs_resident_bytes": lat["memory"].get("tfjs_resident_bytes"),
            "tflite_arena_bytes": lat["memory"].get("tflite_arena_bytes"),
            "tflite_arena_unshared_bytes": lat["memory"].get("tflite_arena_unshared_bytes"),
            "keras_peak_rss_bytes": rss.get("peak_rss_bytes"),
            "keras_baseline_rss_bytes": rss.get("baseline_rss_bytes"),
        },
        "data": {
            "num_train": splits.get("train", 0), "num_eval": acc["accuracy"]["n"],
            "eval_split": acc["split"], "splits": splits,
            "teacher": {"id": self.teacher.get("id"),
                        "real_weights": self.teacher.get("real_weights"),
                        "logit_scale": self.teacher.get("logit_scale"),
                        "embed_dim": self.teacher.get("embed_dim")},
            "label_bank": acc["label_bank"],
            "num_species": len(self.taxa["species"].names),
        },
        "ratios": {},
        "latency_threads": lat.get("threads"),
        "errors": list(par.get("errors", [])) + list(lat.get("errors", [])),
        "export": {"dir": os.path.abspath(self.export_dir),
                   "manifest_created": self.manifest.get("created")},
    }
    r = report["ratios"]
    if t224:
      for runtime, per_res in lat_ms.items():
        if runtime != "teacher_torch_cpu" and per_res.get("224"):
          r[f"speedup_vs_teacher_224.{runtime}"] = t224 / per_res["224"]
      speedup = max((v for k, v in r.items() if k.startswith("speedup")), default=None)
    r["speedup_vs_teacher_224_best"] = speedup
    if teacher_bytes and report["model"]["tfjs_bytes"]:
      r["size_ratio_teacher_over_tfjs"] = teacher_bytes / report["model"]["tfjs_bytes"]
    if report["model"]["tfjs_bytes"]:
      r["tfjs_over_keras_fp32"] = report["model"]["tfjs_bytes"] / report["model"][
          "keras_fp32_bytes"]
    return report


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


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("workdir", None, "Training workdir holding qat/model.h5.")
  flags.DEFINE_string("export_dir", None, "Export directory written by bioclip_lite_tf.export.")
  flags.DEFINE_string("data_dir", None, "Built tree_of_life_distill dataset (TFDS data dir or "
                      "its version dir).")
  flags.DEFINE_string("out_dir", None, "Where to write report.json, plots and MODEL_CARD.md.")
  flags.DEFINE_string("phase", "qat", "Which phase's model.h5 is the Keras reference.")
  flags.DEFINE_integer("max_eval_examples", 0, "Evaluate at most this many validation photos "
                       "(0 = all).")
  flags.DEFINE_integer("parity_examples", 256, "Photos run through TF.js and TFLite for parity.")
  flags.DEFINE_list("latency_resolutions", ["128", "160", "192", "224", "256"],
                    "Input sizes at which the student's latency is measured (224, the "
                    "teacher's, is always added).")
  flags.DEFINE_integer("latency_runs", 20, "Timed runs per runtime and resolution (median).")
  flags.DEFINE_integer("teacher_runs", 5, "Timed runs of the teacher at 224 (median).")
  flags.DEFINE_integer("threads", 1, "CPU threads for every runtime (Keras intra-op, TFLite, "
                       "torch teacher; TF.js wasm in Node is single-threaded). One thread "
                       "everywhere keeps the student/teacher ratio fair and stable on a shared "
                       "machine; 0 leaves each runtime's default.")
  flags.DEFINE_string("teacher_architecture", "ViT-B-16", "open_clip architecture timed as the "
                      "teacher (BioCLIP is ViT-B-16).")
  flags.DEFINE_bool("force", False, "Redo sections finished by an earlier run.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  for name in ("workdir", "export_dir", "data_dir", "out_dir"):
    if not getattr(FLAGS, name):
      print(f"error: --{name} is required", file=sys.stderr)
      return 2
  try:
    resolutions = [int(r) for r in FLAGS.latency_resolutions]
  except ValueError:
    print(f"error: --latency_resolutions={FLAGS.latency_resolutions} must be integers",
          file=sys.stderr)
    return 2
  if FLAGS.threads > 0:
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
  try:
    report = evaluate(FLAGS.workdir, FLAGS.export_dir, FLAGS.data_dir, FLAGS.out_dir,
                      FLAGS.phase, FLAGS.max_eval_examples, FLAGS.parity_examples, resolutions,
                      FLAGS.latency_runs, FLAGS.teacher_runs, FLAGS.threads,
                      FLAGS.teacher_architecture, FLAGS.force)
  except (EvaluationInputError, device_label_bank.LabelBankFormatError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  p = report["parity"]
  print(f"report written to {FLAGS.out_dir}/report.json: species top-1 student vs teacher "
        f"{report['accuracy']['student_vs_teacher']['top1']['species']:.3f}, TF.js cosine min "
        f"{p['tfjs_vs_keras'].get('cosine_min')}, TFLite top-1 agreement "
        f"{p['tflite_vs_keras']['top1_agreement']:.4f}")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
