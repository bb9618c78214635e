"""Evaluation of an export: metrics, latency, memory, the report, the model card and plots.
`python -m bioclip_lite_tf.evaluate` is the CLI (__main__); these modules define no flags
(evaluate/memory.py is the one-shot subprocess that measures peak RSS)."""
from bioclip_lite_tf.evaluate.evaluation import (Evaluation, EvaluationInputError,  # noqa: F401
                                                 artifact_sizes, evaluate)
