"""The keys report.json must have (docs/FORMATS.md, "report.json"), and a checker.

`latency_ms` must hold at least one runtime with at least one resolution, and the runtimes
`keras_cpu` and `teacher_torch_cpu` at "224". Extra keys are welcome.
"""
from __future__ import annotations

from typing import List

from formats.ranks import RANKS

REPORT_FORMAT_VERSION = 1

REQUIRED = [
    "model.params", "model.sparsity", "model.keras_fp32_bytes", "model.tfjs_bytes",
    "model.tflite_bytes",
    "parity.tfjs_vs_keras.n", "parity.tfjs_vs_keras.cosine_min",
    "parity.tfjs_vs_keras.top1_agreement",
    "parity.tflite_vs_keras.n", "parity.tflite_vs_keras.cosine_min",
    "parity.tflite_vs_keras.top1_agreement",
    "latency_ms.keras_cpu.224", "latency_ms.teacher_torch_cpu.224",
    *[f"accuracy.student_vs_teacher.top1.{r}" for r in RANKS],
    *[f"accuracy.student_vs_teacher.top5.{r}" for r in RANKS],
    *[f"accuracy.student_vs_truth.top1.{r}" for r in RANKS],
    *[f"accuracy.teacher_vs_truth.top1.{r}" for r in RANKS],
    "hierarchy.consistency",
    "memory.tfjs_peak_bytes.224", "memory.tflite_arena_bytes", "memory.keras_peak_rss_bytes",
    "data.num_train", "data.num_eval", "data.teacher",
]


def missing_keys(report: dict) -> List[str]:
  """Dotted paths of REQUIRED that report lacks (a present key may hold null when a runtime
  could not run; evaluate records why under `errors`)."""
  missing = []
  for path in REQUIRED:
    node = report
    for part in path.split("."):
      if not isinstance(node, dict) or part not in node:
        missing.append(path)
        break
      node = node[part]
  return missing
