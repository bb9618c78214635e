"""PNG plots of report.json (matplotlib, Agg backend: no display needed).

accuracy.png  top-1 per rank: student vs teacher, student vs truth, teacher vs truth
latency.png   ms per photo vs input resolution, one line per runtime (teacher at 224 dashed)
size.png      bytes per artifact, raw and gzipped, log scale, teacher fp32 for scale
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


def write_all(report: dict, out_dir: str) -> List[str]:
  return [accuracy_plot(report, os.path.join(out_dir, "accuracy.png")),
          latency_plot(report, os.path.join(out_dir, "latency.png")),
          size_plot(report, os.path.join(out_dir, "size.png"))]
