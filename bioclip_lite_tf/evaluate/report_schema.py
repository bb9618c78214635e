"""The keys report.json must have (docs/FORMATS.md, "report.json"), and a checker.

`latency_ms` must hold at least one runtime with at least one resolution, and the runtimes
`keras_cpu` and `teacher_torch_cpu` at "224". Extra keys are welcome.
"""
from __future__ import annotations

from typing import List

from formats.ranks import RANKS

REPORT_FORMAT_VERSION = 2   # 2: hierarchy.*, abstention, embedding_cosine, compression_steps

# float = end of the float phase, pruned = end of the prune phase, qat = the QAT student as
# exported (plain graph), tfjs = the TF.js graph model in Node, tflite_int8 = the TFLite model.
COMPRESSION_STEPS = ("float", "pruned", "qat", "tfjs", "tflite_int8")

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
    "hierarchy.mistake_severity", "hierarchy.hdist_at_1", "hierarchy.hdist_at_5",
    "hierarchy.precision", "hierarchy.recall",
    "abstention.curve",
    "embedding_cosine.mean", "embedding_cosine.p5",
    *[f"compression_steps.{step}.{key}" for step in COMPRESSION_STEPS
      for key in ("species_top1_agreement", "embedding_cosine_mean")],
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
