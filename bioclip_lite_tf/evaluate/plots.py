"""PNG plots of report.json (matplotlib, Agg backend: no display needed).

accuracy.png            top-1 per rank: student vs teacher, student vs truth, teacher vs truth
per_rank_by_step.png    top-1 agreement with the teacher per rank, one bar per compression step
                        (Keras float, pruned, QAT, TF.js, TFLite int8)
coverage_accuracy.png   `best` over thresholds: share answered at each rank (stacked) and the
                        accuracy of the answers
mistake_severity.png    histogram of LCA heights of top-1 mistakes
latency.png             ms per photo vs input resolution, one line per runtime (teacher at 224
                        dashed)
confused_families.png   the 20 most-confused (true, predicted) family pairs
size.png                bytes per artifact, raw and gzipped, log scale, teacher fp32 for scale

Every plot reads report.json only.
"""
from __future__ import annotations

import os
from typing import List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from formats import atomic  # noqa: E402
from formats.ranks import RANKS  # noqa: E402


def _save(fig, path: str) -> str:
  tmp = f"{path}{atomic.TMP_MARK}{os.getpid()}.png"
  fig.savefig(tmp, dpi=110, bbox_inches="tight")
  plt.close(fig)
  os.replace(tmp, path)
  return path


def accuracy_plot(report: dict, path: str) -> str:
  acc = report["accuracy"]
  series = [("student vs teacher", acc["student_vs_teacher"]["top1"]),
            ("student vs truth", acc["student_vs_truth"]["top1"]),
            ("teacher vs truth", acc["teacher_vs_truth"]["top1"])]
  fig, ax = plt.subplots(figsize=(8, 4))
  width = 0.27
  for i, (label, values) in enumerate(series):
    xs = [j + (i - 1) * width for j in range(len(RANKS))]
    ax.bar(xs, [values[r] for r in RANKS], width, label=label)
  ax.set_xticks(range(len(RANKS)), RANKS)
  ax.set_ylim(0, 1)
  ax.set_ylabel("top-1 agreement")
  ax.set_title(f"Top-1 per rank on {report['data']['num_eval']} {report['data'].get('eval_split', '')} photos")
  ax.legend(loc="lower left")
  return _save(fig, path)


def latency_plot(report: dict, path: str) -> str:
  fig, ax = plt.subplots(figsize=(7, 4))
  for runtime, per_res in sorted(report["latency_ms"].items()):
    pts = sorted((int(r), v) for r, v in per_res.items() if v is not None)
    if not pts:
      continue
    if runtime.startswith("teacher"):
      for r, v in pts:
        ax.axhline(v, linestyle="--", color="grey")
        ax.annotate(f"{runtime} @{r}: {v:.0f} ms", (0.01, v), xycoords=("axes fraction", "data"),
                    va="bottom", fontsize=8)
      continue
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=runtime)
  ax.set_yscale("log")
  ax.set_xlabel("input resolution (pixels)")
  ax.set_ylabel("ms per photo (batch 1, median)")
  ax.set_title("Latency per photo")
  ax.legend()
  return _save(fig, path)


def size_plot(report: dict, path: str) -> str:
  m = report["model"]
  rows = [("Keras fp32 weights", m.get("keras_fp32_bytes"), None),
          ("TF.js", m.get("tfjs_bytes"), m.get("tfjs_gzip_bytes")),
          ("TFLite int8", m.get("tflite_bytes"), m.get("tflite_gzip_bytes")),
          ("label bank", m.get("label_bank_bytes"), m.get("label_bank_gzip_bytes")),
          ("teacher fp32", m.get("teacher_fp32_bytes"), None)]
  rows = [r for r in rows if r[1]]
  fig, ax = plt.subplots(figsize=(7, 4))
  ys = range(len(rows))
  ax.barh([y + 0.2 for y in ys], [r[1] for r in rows], 0.4, label="raw")
  ax.barh([y - 0.2 for y in ys], [r[2] or 0 for r in rows], 0.4, label="gzipped")
  ax.set_yticks(list(ys), [r[0] for r in rows])
  ax.set_xscale("log")
  ax.set_xlabel("bytes")
  ax.set_title("Size per artifact")
  ax.legend()
  return _save(fig, path)


STEP_LABELS = {"float": "Keras float", "pruned": "Keras pruned", "qat": "Keras QAT",
               "tfjs": "TF.js (Node, wasm)", "tflite_int8": "TFLite int8"}


def per_rank_by_step_plot(report: dict, path: str) -> str:
  steps = [(s, v) for s, v in report.get("compression_steps", {}).items()
           if v and v.get("top1_agreement_by_rank")]
  fig, ax = plt.subplots(figsize=(9, 4))
  width = 0.8 / max(len(steps), 1)
  for i, (step, row) in enumerate(steps):
    xs = [j + (i - (len(steps) - 1) / 2) * width for j in range(len(RANKS))]
    ax.bar(xs, [row["top1_agreement_by_rank"][r] for r in RANKS], width,
           label=f"{STEP_LABELS.get(step, step)} (cos {row['embedding_cosine_mean']:.3f})")
  ax.set_xticks(range(len(RANKS)), RANKS)
  ax.set_ylim(0, 1)
  ax.set_ylabel("top-1 agreement with the teacher")
  ax.set_title("Per rank, per compression step and runtime (same photos)")
  ax.legend(loc="lower left", fontsize=8)
  return _save(fig, path)


def coverage_accuracy_plot(report: dict, path: str) -> str:
  curve = report["abstention"]["curve"]
  ts = [p["threshold"] for p in curve]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  bottom = [0.0] * len(curve)
  for rank in reversed(RANKS):
    share = [p["answered_share_by_rank"][rank] or 0.0 for p in curve]
    ax1.fill_between(ts, bottom, [b + v for b, v in zip(bottom, share)], label=rank, step=None)
    bottom = [b + v for b, v in zip(bottom, share)]
  ax1.set_xlabel("threshold")
  ax1.set_ylabel("share of photos answered at the rank")
  ax1.set_ylim(0, 1)
  ax1.set_title("`best`: where it answers")
  ax1.legend(fontsize=7, loc="upper right")
  cover = [p["answered_share"] for p in curve]
  accs = [p["accuracy_answered"] for p in curve]
  pts = [(c, a) for c, a in zip(cover, accs) if a is not None]
  ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
  for (c, a), t in zip(pts, [t for t, a in zip(ts, accs) if a is not None]):
    if round(t * 20) % 4 == 0:
      ax2.annotate(f"{t:.2f}", (c, a), fontsize=7)
  ax2.set_xlabel("coverage (share answered)")
  ax2.set_ylabel("accuracy at the answered rank")
  ax2.set_xlim(0, 1.02)
  ax2.set_ylim(0, 1.02)
  ax2.set_title("Coverage against accuracy (labels: thresholds)")
  return _save(fig, path)


def mistake_severity_plot(report: dict, path: str) -> str:
  h = report["hierarchy"]
  hist = h.get("mistake_severity_histogram") or {}
  heights = [str(i) for i in range(1, 8)]
  names = ["genus", "family", "order", "class", "phylum", "kingdom", "root"]
  fig, ax = plt.subplots(figsize=(9, 4))
  ax.bar(range(7), [hist.get(k, 0) for k in heights])
  ax.set_xticks(range(7), [f"{k}\n(same {n})" if n != "root" else f"{k}\n(none)"
                           for k, n in zip(heights, names)], fontsize=8)
  ax.set_xlabel("LCA height of top-1 and true species")
  ax.set_ylabel("top-1 mistakes")
  sev = h.get("mistake_severity")
  ax.set_title(f"Mistake severity (mean {sev:.2f} over {h.get('mistakes')} mistakes)"
               if sev is not None else "Mistake severity (no mistakes)")
  return _save(fig, path)


def confused_families_plot(report: dict, path: str) -> str:
  cp = report["hierarchy"].get("confused_pairs") or {"pairs": [], "rank": "family"}
  pairs = cp["pairs"][:20]
  fig, ax = plt.subplots(figsize=(8, 0.3 * max(len(pairs), 3) + 1))
  ys = range(len(pairs))
  ax.barh(list(ys), [p["count"] for p in pairs])
  leaf = lambda name: str(name).split()[-1]  # noqa: E731  (lineage names end with the taxon)
  ax.set_yticks(list(ys), [f"{leaf(p['truth'])} -> {leaf(p['predicted'])}" for p in pairs],
                fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("photos")
  ax.set_title(f"Most confused {cp['rank']} pairs (true -> predicted)"
               + ("" if pairs else ": none"))
  return _save(fig, path)


PLOTS = (("accuracy.png", accuracy_plot), ("per_rank_by_step.png", per_rank_by_step_plot),
         ("coverage_accuracy.png", coverage_accuracy_plot),
         ("mistake_severity.png", mistake_severity_plot), ("latency.png", latency_plot),
         ("confused_families.png", confused_families_plot), ("size.png", size_plot))


def write_all(report: dict, out_dir: str) -> List[str]:
  return [fn(report, os.path.join(out_dir, name)) for name, fn in PLOTS]
