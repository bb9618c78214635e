"""Evaluate's metrics: the shared implementation (bioclip_lite_tf.metrics, also used by training's
validation) plus runtime parity, which only evaluate measures."""
from __future__ import annotations

from typing import Dict

import numpy as np

from bioclip_lite_tf.metrics import (MetricsAccumulator, RankAggregator,  # noqa: F401
                                     embedding_cosine, softmax, topk)


def parity(reference: np.ndarray, other: np.ndarray, species_embeddings: np.ndarray
           ) -> Dict[str, float]:
  """Agreement of two embedders on the same photos. reference/other float32 [N, D]."""
  ref = np.asarray(reference, np.float64)
  oth = np.asarray(other, np.float64)
  cos = embedding_cosine(ref, oth)
  top_ref = (ref @ species_embeddings.T).argmax(1)
  top_oth = (oth @ species_embeddings.T).argmax(1)
  return {"n": int(len(ref)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
          "max_abs_diff": float(np.max(np.abs(ref - oth))),
          "top1_agreement": float(np.mean(top_ref == top_oth))}
