"""`best` as the npm package computes it (react-bio-clip/src/bio_clip_model.ts, `answer`), and
the coverage-accuracy curve it traces over thresholds.

best: if the photo's best species cosine (similarity = top species logit / logit_scale) is below
the species similarity floor, the package abstains (best = null). Otherwise it walks from species
up to kingdom and answers the first rank whose top-1 taxon has probability >= threshold; if no
rank clears it, best = null.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from formats.ranks import RANKS

DEFAULT_THRESHOLD = 0.5            # react-bio-clip DEFAULT_THRESHOLD
DEFAULT_SIMILARITY_FLOOR = 0.2     # react-bio-clip DEFAULT_SPECIES_SIMILARITY_FLOOR
DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(21))


def best_depth(rank_top1_prob: np.ndarray, threshold: float,
               similarity: Optional[np.ndarray] = None,
               floor: Optional[float] = DEFAULT_SIMILARITY_FLOOR) -> np.ndarray:
  """rank_top1_prob float [N, 7] (top-1 taxon probability per rank) -> int64 [N]: depth of the
  answered rank, -1 when `best` is null."""
  p = np.asarray(rank_top1_prob)
  clears = p >= threshold
  deepest = p.shape[1] - 1 - np.argmax(clears[:, ::-1], axis=1)
  out = np.where(clears.any(axis=1), deepest, -1).astype(np.int64)
  if similarity is not None and floor is not None:
    out[np.asarray(similarity) < floor] = -1
  return out


def abstention_curve(rank_top1_prob: np.ndarray, rank_top1: np.ndarray, truth: np.ndarray,
                     similarity: Optional[np.ndarray] = None,
                     floor: Optional[float] = DEFAULT_SIMILARITY_FLOOR,
                     thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                     teacher: Optional[np.ndarray] = None) -> List[Dict]:
  """One point per threshold: {threshold, answered_share, answered_share_by_rank {rank: share of
  all photos answered at that rank}, accuracy_at_answered_rank {rank: share of those whose
  answered taxon is the true one (None when none answered there)}, accuracy_answered (over all
  answered photos)}, plus teacher agreement when `teacher` int [N, 7] is given."""
  rank_top1, truth = np.asarray(rank_top1), np.asarray(truth)
  n = len(rank_top1)
  rows = np.arange(n)
  points = []
  for t in thresholds:
    depth = best_depth(rank_top1_prob, t, similarity, floor)
    answered = depth >= 0
    d = np.where(answered, depth, 0)
    correct = answered & (rank_top1[rows, d] == truth[rows, d])
    point = {"threshold": float(t),
             "answered_share": float(answered.mean()) if n else None,
             "answered_share_by_rank": {}, "accuracy_at_answered_rank": {},
             "accuracy_answered": (float(correct.sum() / answered.sum())
                                   if answered.any() else None)}
    if teacher is not None:
      agree = answered & (rank_top1[rows, d] == np.asarray(teacher)[rows, d])
      point["teacher_agreement_at_answered_rank"] = {}
    for i, rank in enumerate(RANKS):
      at = depth == i
      point["answered_share_by_rank"][rank] = float(at.mean()) if n else None
      point["accuracy_at_answered_rank"][rank] = (float(correct[at].mean()) if at.any()
                                                  else None)
      if teacher is not None:
        point["teacher_agreement_at_answered_rank"][rank] = (float(agree[at].mean())
                                                             if at.any() else None)
    points.append(point)
  return points
