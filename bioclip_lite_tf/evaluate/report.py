"""report.json assembled from the evaluation's sections (accuracy, parity, latency, memory).

The keys are listed in report_schema.REQUIRED (docs/FORMATS.md); this module only arranges
what the sections measured.
"""
from __future__ import annotations

import os
from typing import Dict

from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf.evaluate import report_schema
from bioclip_lite_tf.export import plain_graph


def _model_section(ev, lat) -> Dict:
  counts = plain_graph.count_params(ev.plain)
  sizes = ev.artifact_sizes()
  return {
      "params": counts["params"], "kernel_params": counts["kernel_params"],
      "sparsity": counts["sparsity"], "resolution": ev.resolution,
      "embed_dim": ev.embed_dim,
      "keras_fp32_bytes": 4 * counts["params"],
      "tfjs_bytes": sizes.get("tfjs", {}).get("bytes"),
      "tfjs_gzip_bytes": sizes.get("tfjs", {}).get("gzip_bytes"),
      "tflite_bytes": sizes.get("tflite", {}).get("bytes"),
      "tflite_gzip_bytes": sizes.get("tflite", {}).get("gzip_bytes"),
      "saved_model_bytes": sizes.get("saved_model", {}).get("bytes"),
      "label_bank_bytes": sizes.get("label_bank", {}).get("bytes"),
      "label_bank_gzip_bytes": sizes.get("label_bank", {}).get("gzip_bytes"),
      # The teacher's IMAGE tower (what the student replaces on a device), not both towers.
      "teacher_fp32_bytes": (lat.get("teacher") or {}).get("fp32_bytes"),
      "teacher_all_towers_fp32_bytes": (lat.get("teacher") or {}).get("all_towers_fp32_bytes"),
  }


def _memory_section(lat, rss) -> Dict:
  return {
      "tfjs_peak_bytes": {"224": None, **lat["memory"].get("tfjs_peak_bytes", {})},
      "tfjs_resident_bytes": lat["memory"].get("tfjs_resident_bytes"),
      "tflite_arena_bytes": lat["memory"].get("tflite_arena_bytes"),
      "tflite_arena_unshared_bytes": lat["memory"].get("tflite_arena_unshared_bytes"),
      "keras_peak_rss_bytes": rss.get("peak_rss_bytes"),
      "keras_baseline_rss_bytes": rss.get("baseline_rss_bytes"),
  }


def _data_section(ev, acc) -> Dict:
  splits = data_lib.split_sizes(ev.dataset_dir)
  return {
      "num_train": splits.get("train", 0), "num_eval": acc["accuracy"]["n"],
      "eval_split": acc["split"], "splits": splits,
      "teacher": {"id": ev.teacher.get("id"),
                  "real_weights": ev.teacher.get("real_weights"),
                  "logit_scale": ev.teacher.get("logit_scale"),
                  "embed_dim": ev.teacher.get("embed_dim")},
      "label_bank": acc["label_bank"],
      "num_species": len(ev.tables[-1]),
  }


def _ratios(lat_ms: Dict, model: Dict) -> Dict:
  r = {}
  speedup = None
  t224 = lat_ms.get("teacher_torch_cpu", {}).get("224")
  if t224:
    for runtime, per_res in lat_ms.items():
      if runtime != "teacher_torch_cpu" and per_res.get("224"):
        r[f"speedup_vs_teacher_224.{runtime}"] = t224 / per_res["224"]
    speedup = max((v for k, v in r.items() if k.startswith("speedup")), default=None)
  r["speedup_vs_teacher_224_best"] = speedup
  if model["teacher_fp32_bytes"] and model["tfjs_bytes"]:
    # teacher image tower fp32 bytes / TF.js model bytes
    r["size_ratio_teacher_over_tfjs"] = model["teacher_fp32_bytes"] / model["tfjs_bytes"]
  if model["tfjs_bytes"] and model["label_bank_bytes"]:
    # What an app downloads: the model and the device label bank together.
    r["download_bytes_tfjs"] = model["tfjs_bytes"] + model["label_bank_bytes"]
    if model["tflite_bytes"]:
      r["download_bytes_tflite"] = model["tflite_bytes"] + model["label_bank_bytes"]
  if model["tfjs_bytes"]:
    r["tfjs_over_keras_fp32"] = model["tfjs_bytes"] / model["keras_fp32_bytes"]
  return r


def assemble_report(ev, acc, par, lat, rss) -> dict:
  """report.json from an Evaluation `ev` and its four sections' results."""
  model = _model_section(ev, lat)
  return {
      "format_version": report_schema.REPORT_FORMAT_VERSION,
      "model": model,
      "parity": {k: v for k, v in par.items() if k not in ("seconds", "parts_version")},
      "latency_ms": lat["latency_ms"],
      "accuracy": acc["accuracy"],
      "hierarchy": acc["hierarchy"],
      "abstention": acc["abstention"],
      "embedding_cosine": acc["embedding_cosine"],
      "compression_steps": acc["compression_steps"],
      "memory": _memory_section(lat, rss),
      "data": _data_section(ev, acc),
      "ratios": _ratios(lat["latency_ms"], model),
      "latency_threads": lat.get("threads"),
      "errors": (list(acc.get("compression_errors", [])) + list(par.get("errors", []))
                 + list(lat.get("errors", []))),
      "export": {"dir": os.path.abspath(ev.export_dir),
                 "manifest_created": ev.manifest.get("created")},
  }
