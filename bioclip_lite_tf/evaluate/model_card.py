"""MODEL_CARD.md written from report.json (numbers only from the report, never typed in)."""
from __future__ import annotations

from formats import atomic
from formats.ranks import RANKS


def _f(value, spec=".3f", none="n/a"):
  if value is None:
    return none
  return format(value, spec)


def _mb(value):
  return "n/a" if value is None else f"{value / 1e6:.2f} MB"


def _about(report: dict) -> list:
  m, data = report["model"], report["data"]
  teacher = data.get("teacher") or {}
  weights_line = ("real BioCLIP weights" if teacher.get("real_weights") else
                  "a RANDOM-WEIGHT stand-in of the teacher architecture: the teacher targets, "
                  "and so every accuracy number below, say nothing about real-world accuracy")
  return [
      "# BioCLIP Lite student: model card",
      "",
      "Written by `python -m bioclip_lite_tf.evaluate` from report.json.",
      "",
      "## What it is",
      "",
      f"- A MobileNetV3 student distilled from the teacher `{teacher.get('id')}` "
      f"({weights_line}).",
      f"- Input: an RGB photo squashed (no crop, bicubic) to {m.get('resolution')}x"
      f"{m.get('resolution')}; output: a {m.get('embed_dim')}-d unit embedding in the "
      "teacher's space, classified zero-shot against the teacher's text embeddings of "
      f"{data.get('num_species')} species (rank probabilities are sums of species "
      "probabilities).",
      f"- {m['params']:,} parameters, {_f(m['sparsity'], '.1%')} of kernel weights zero; "
      "8-bit per-tensor weights (quantization-aware training), float activations in TF.js.",
      "",
      "## Files and sizes",
      "",
      "| artifact | bytes | gzipped |",
      "|---|---|---|",
      f"| Keras fp32 weights (reference) | {_mb(m.get('keras_fp32_bytes'))} | |",
      f"| TF.js graph model (uint8 weights) | {_mb(m.get('tfjs_bytes'))} | "
      f"{_mb(m.get('tfjs_gzip_bytes'))} |",
      f"| TFLite int8 | {_mb(m.get('tflite_bytes'))} | {_mb(m.get('tflite_gzip_bytes'))} |",
      f"| device label bank | {_mb(m.get('label_bank_bytes'))} | "
      f"{_mb(m.get('label_bank_gzip_bytes'))} |",
      f"| teacher fp32 weights, image tower | {_mb(m.get('teacher_fp32_bytes'))} | |",
      "",
  ]


def _accuracy(report: dict) -> list:
  data, acc = report["data"], report["accuracy"]
  lines = [
      "## Evaluation data",
      "",
      f"{acc['n']} photos of the `{data.get('eval_split')}` split ({data.get('num_train')} "
      f"training photos). Label bank used: {data.get('label_bank')}.",
      "",
      "| rank | student vs teacher top-1 | top-5 | student vs truth top-1 | "
      "teacher vs truth top-1 |",
      "|---|---|---|---|---|",
  ]
  for r in RANKS:
    lines.append(f"| {r} | {_f(acc['student_vs_teacher']['top1'][r])} | "
                 f"{_f(acc['student_vs_teacher']['top5'][r])} | "
                 f"{_f(acc['student_vs_truth']['top1'][r])} | "
                 f"{_f(acc['teacher_vs_truth']['top1'][r])} |")
  lines += [
      "",
      f"Hierarchical consistency (top-1 species inside the top-1 taxon of every rank): "
      f"{_f(report['hierarchy']['consistency'])} (the teacher, by the same definition on its "
      f"cached top-K: {_f(report['hierarchy'].get('teacher_consistency'))}).",
      "",
  ]
  return lines


STEP_LABELS = (("float", "Keras float (end of the float phase)"),
               ("pruned", "Keras pruned (end of the prune phase)"),
               ("qat", "Keras QAT (the exported graph)"), ("tfjs", "TF.js (Node, wasm)"),
               ("tflite_int8", "TFLite int8"))


def _hierarchy_and_steps(report: dict) -> list:
  h, emb = report["hierarchy"], report.get("embedding_cosine") or {}
  absn = report.get("abstention") or {}
  lines = [
      "## Hierarchical metrics (against the true labels)",
      "",
      f"- Mistake severity (mean LCA height of top-1 and true species over "
      f"{h.get('mistakes')} top-1 mistakes; 1 = same genus .. 7 = different kingdom): "
      f"{_f(h.get('mistake_severity'), '.2f')}.",
      f"- Hierarchical distance@1: {_f(h.get('hdist_at_1'), '.2f')}; @5: "
      f"{_f(h.get('hdist_at_5'), '.2f')} (Bertinetto et al., CVPR 2020).",
      f"- Hierarchical precision {_f(h.get('precision'))}, recall {_f(h.get('recall'))} of "
      f"`best` at threshold {absn.get('threshold_default')} (ancestor-set overlap, Silla & "
      "Freitas).",
      f"- Student-teacher embedding cosine: mean {_f(emb.get('mean'))}, 5th percentile "
      f"{_f(emb.get('p5'))} over {emb.get('n')} photos.",
      "",
  ]
  curve = absn.get("curve") or []
  if curve:
    lines += ["`best` (deepest rank whose top-1 probability clears the threshold; species "
              f"cosine floor {absn.get('similarity_floor')}):", "",
              "| threshold | answered | " + " | ".join(RANKS) + " | accuracy of answers |",
              "|---" * (len(RANKS) + 3) + "|"]
    for p in curve:
      if round(p["threshold"] * 20) % 2:
        continue
      lines.append(f"| {p['threshold']:.2f} | {_f(p['answered_share'], '.2f')} | " +
                   " | ".join(_f(p["answered_share_by_rank"][r], ".2f") for r in RANKS) +
                   f" | {_f(p['accuracy_answered'])} |")
    lines.append("")
  steps = report.get("compression_steps") or {}
  lines += [
      "## What each compression step costs (same photos, against the teacher)",
      "",
      "| step | n | species top-1 agreement | top-5 | embedding cosine mean | p5 |",
      "|---|---|---|---|---|---|",
  ]
  for key, label in STEP_LABELS:
    row = steps.get(key) or {}
    lines.append(f"| {label} | {row.get('n', 0)} | {_f(row.get('species_top1_agreement'))} | "
                 f"{_f(row.get('species_top5_agreement'))} | "
                 f"{_f(row.get('embedding_cosine_mean'))} | {_f(row.get('embedding_cosine_p5'))} |")
  lines += ["", "Species are scored against the shipped label bank "
            f"({report['data'].get('label_bank')}); training's validation scores against the "
            "dataset's float32 bank, which can move a near-tie photo (see "
            "bioclip_lite_tf/README.md, \"Training vs evaluate\").", ""]
  return lines


def _parity(report: dict) -> list:
  par = report["parity"]
  lines = [
      "## Runtime parity (same photos, against the Keras graph with QAT weights)",
      "",
      "| runtime | n | cosine min | species top-1 agreement |",
      "|---|---|---|---|",
  ]
  for key, label in (("tfjs_vs_keras", "TF.js (wasm, Node)"), ("tfjs_cpu_vs_keras",
                                                                "TF.js (cpu, Node)"),
                     ("tflite_vs_keras", "TFLite int8")):
    p = par.get(key)
    if p:
      lines.append(f"| {label} | {p.get('n')} | {_f(p.get('cosine_min'), '.7f')} | "
                   f"{_f(p.get('top1_agreement'), '.4f')} |")
  return lines + [""]


def _latency_and_memory(report: dict) -> list:
  lines = ["## Latency per photo (ms, batch 1, median) and memory", "",
            "| runtime | " + " | ".join(sorted({r for v in report["latency_ms"].values()
                                               for r in v}, key=int)) + " |"]
  resolutions = sorted({r for v in report["latency_ms"].values() for r in v}, key=int)
  lines.append("|---" * (len(resolutions) + 1) + "|")
  for runtime, per_res in sorted(report["latency_ms"].items()):
    lines.append(f"| {runtime} | " + " | ".join(_f(per_res.get(r), ".2f", "") for r in
                                                 resolutions) + " |")
  mem = report["memory"]
  ratios = report.get("ratios", {})
  lines += [
      "",
      f"Speed-up over the teacher at 224 (best student runtime): "
      f"{_f(ratios.get('speedup_vs_teacher_224_best'), '.1f')}x. "
      f"Teacher image-tower fp32 bytes / TF.js bytes: {_f(ratios.get('size_ratio_teacher_over_tfjs'), '.0f')}x.",
      "",
      f"Memory: TF.js peak tensor bytes during one classify at 224 (weights included) "
      f"{_mb((mem.get('tfjs_peak_bytes') or {}).get('224'))}; TFLite arena at 224 "
      f"{_mb(mem.get('tflite_arena_bytes'))}; peak RSS of a Keras process that loads the "
      f"student and classifies one photo {_mb(mem.get('keras_peak_rss_bytes'))}.",
      "",
      "Latency threads: " + str(report.get("latency_threads")) + ". Measured on the machine "
      "that ran the evaluation; other jobs sharing its cores add noise.",
      "",
  ]
  return lines


def _limits(report: dict) -> list:
  lines = [
      "## Limits",
      "",
      "- The student only knows the species in its label bank; photos of other species get the "
      "nearest ones.",
      "- Accuracy is measured against the teacher's cached predictions and the dataset's labels,"
      " on the photos above only.",
  ]
  if not (report["data"].get("teacher") or {}).get("real_weights"):
    lines.append("- The teacher had random weights: use this export to test the plumbing, not "
                 "to identify organisms.")
  if report.get("errors"):
    lines += ["", "## Errors during evaluation", ""] + [f"- {e}" for e in report["errors"]]
  return lines


def render(report: dict) -> str:
  """MODEL_CARD.md's text: what it is, sizes, accuracy, parity, latency and memory, limits."""
  lines = (_about(report) + _accuracy(report) + _hierarchy_and_steps(report) + _parity(report)
           + _latency_and_memory(report) + _limits(report))
  return "\n".join(lines) + "\n"


def write(report: dict, path: str) -> str:
  atomic.write_text(path, render(report))
  return path
