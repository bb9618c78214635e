"""Accuracy, hierarchy and parity metrics (numpy only), accumulated batch by batch.

Zero-shot classification as docs/ARCHITECTURE.md defines it: species logits are
`logit_scale * embedding @ species_text_embeddings.T`, softmax over the label bank's species,
and the probability of a higher taxon is the sum of its species' probabilities (parent links).

The teacher's predictions are its cached top-K species (`topk_species_indices`, logits
`topk_species_logits`, already scaled): its species distribution is the softmax over those K
logits (the mass outside the top K is not cached and is taken as 0), summed up the same links.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from formats.ranks import RANKS


def softmax(logits: np.ndarray) -> np.ndarray:
  """Row softmax in float64, returned as float32. logits [B, S]."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class RankAggregator:
  """Sums species probabilities into each rank's taxa.

  ancestors: {rank: int32 [S]} the row at that rank of each species' ancestor;
  sizes: {rank: number of taxa}.
  """

  def __init__(self, ancestors: Dict[str, np.ndarray], sizes: Dict[str, int]):
    self.ancestors = {r: np.asarray(a, np.int64) for r, a in ancestors.items()}
    self.sizes = dict(sizes)
    self._order = {}
    for rank in RANKS:
      anc = self.ancestors[rank]
      order = np.argsort(anc, kind="stable")
      sorted_anc = anc[order]
      starts = np.flatnonzero(np.r_[True, sorted_anc[1:] != sorted_anc[:-1]])
      self._order[rank] = (order, starts, sorted_anc[starts])

  def rank_probs(self, species_probs: np.ndarray, rank: str) -> np.ndarray:
    """float32 [B, S] species probabilities -> float32 [B, N_rank]."""
    if rank == "species":
      return species_probs
    order, starts, taxa = self._order[rank]
    out = np.zeros((species_probs.shape[0], self.sizes[rank]), np.float32)
    out[:, taxa] = np.add.reduceat(species_probs[:, order], starts, axis=1)
    return out

  def sparse_rank_scores(self, indices: np.ndarray, probs: np.ndarray, rank: str
                         ) -> Sequence[Dict[int, float]]:
    """Per row, {taxon: summed prob} from a sparse species distribution (indices/probs [B, K])."""
    anc = self.ancestors[rank]
    out = []
    for idx, p in zip(indices, probs):
      scores: Dict[int, float] = {}
      for s, v in zip(idx, p):
        if s < 0:
          continue
        t = int(anc[s])
        scores[t] = scores.get(t, 0.0) + float(v)
      out.append(scores)
    return out


def topk(scores: np.ndarray, k: int) -> np.ndarray:
  """int64 [B, min(k, N)] indices of the largest scores per row, best first."""
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
  return np.take_along_axis(part, order, axis=1)


def _top_sparse(scores: Dict[int, float], k: int):
  return [t for t, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


class AccuracyAccumulator:
  """Counts over batches; `result()` gives the report's accuracy and hierarchy sections."""

  def __init__(self, aggregator: RankAggregator):
    self.agg = aggregator
    self.n = 0
    self.counts = {key: {r: 0 for r in RANKS} for key in (
        "student_vs_teacher_top1", "student_vs_teacher_top5", "student_vs_truth_top1",
        "student_vs_truth_top5", "teacher_vs_truth_top1", "teacher_vs_truth_top5",
        "consistent_with_species", "teacher_consistent_with_species")}
    self.fully_consistent = 0
    self.teacher_fully_consistent = 0

  def update(self, species_logits: np.ndarray, truth: np.ndarray,
             teacher_topk_indices: np.ndarray, teacher_topk_logits: np.ndarray) -> None:
    """species_logits float32 [B, S] (student); truth int32 [B, 7]; teacher top-K [B, K]."""
    probs = softmax(species_logits)
    teacher_probs = softmax(teacher_topk_logits)
    b = probs.shape[0]
    student_species_top1 = probs.argmax(axis=1)
    teacher_species_top1 = np.take_along_axis(
        teacher_topk_indices, teacher_topk_logits.argmax(axis=1)[:, None], axis=1)[:, 0]
    consistent_all = np.ones(b, bool)
    teacher_consistent_all = np.ones(b, bool)
    for depth, rank in enumerate(RANKS):
      rank_p = self.agg.rank_probs(probs, rank)
      s_top5 = topk(rank_p, 5)
      s_top1 = s_top5[:, 0]
      t_scores = self.agg.sparse_rank_scores(teacher_topk_indices, teacher_probs, rank)
      t_top = [_top_sparse(sc, 5) for sc in t_scores]
      t_top1 = np.array([t[0] for t in t_top])
      y = truth[:, depth]
      c = self.counts
      c["student_vs_teacher_top1"][rank] += int(np.sum(s_top1 == t_top1))
      c["student_vs_teacher_top5"][rank] += int(np.sum(np.any(s_top5 == t_top1[:, None], 1)))
      c["student_vs_truth_top1"][rank] += int(np.sum(s_top1 == y))
      c["student_vs_truth_top5"][rank] += int(np.sum(np.any(s_top5 == y[:, None], 1)))
      c["teacher_vs_truth_top1"][rank] += int(np.sum(t_top1 == y))
      c["teacher_vs_truth_top5"][rank] += int(sum(int(yy) in t for yy, t in zip(y, t_top)))
      # Is the predicted species inside the predicted taxon of this rank?
      inside = self.agg.ancestors[rank][student_species_top1] == s_top1
      c["consistent_with_species"][rank] += int(np.sum(inside))
      consistent_all &= inside
      # The same question for the teacher, so the student's figure has a reference: with a
      # flat species distribution (e.g. a random-weight teacher) the largest taxon wins the sums.
      t_inside = self.agg.ancestors[rank][teacher_species_top1] == t_top1
      c["teacher_consistent_with_species"][rank] += int(np.sum(t_inside))
      teacher_consistent_all &= t_inside
    self.fully_consistent += int(np.sum(consistent_all))
    self.teacher_fully_consistent += int(np.sum(teacher_consistent_all))
    self.n += b

  def result(self) -> Dict[str, dict]:
    n = max(self.n, 1)
    frac = lambda key: {r: self.counts[key][r] / n for r in RANKS}  # noqa: E731
    return {
        "accuracy": {
            "n": self.n,
            "student_vs_teacher": {"top1": frac("student_vs_teacher_top1"),
                                   "top5": frac("student_vs_teacher_top5")},
            "student_vs_truth": {"top1": frac("student_vs_truth_top1"),
                                 "top5": frac("student_vs_truth_top5")},
            "teacher_vs_truth": {"top1": frac("teacher_vs_truth_top1"),
                                 "top5": frac("teacher_vs_truth_top5")},
        },
        "hierarchy": {
            "consistency": self.fully_consistent / n,
            "per_rank": frac("consistent_with_species"),
            "teacher_consistency": self.teacher_fully_consistent / n,
            "teacher_per_rank": frac("teacher_consistent_with_species"),
            "definition": "share of photos whose top-1 species lies inside the top-1 taxon of "
                          "every higher rank (rank probabilities = sums of species "
                          "probabilities, so this can be < 1)",
        },
    }


def parity(reference: np.ndarray, other: np.ndarray, species_embeddings: np.ndarray
           ) -> Dict[str, float]:
  """Agreement of two embedders on the same photos. reference/other float32 [N, D]."""
  ref = np.asarray(reference, np.float64)
  oth = np.asarray(other, np.float64)
  cos = np.sum(ref * oth, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(oth, axis=1))
  top_ref = (ref @ species_embeddings.T).argmax(1)
  top_oth = (oth @ species_embeddings.T).argmax(1)
  return {"n": int(len(ref)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
          "max_abs_diff": float(np.max(np.abs(ref - oth))),
          "top1_agreement": float(np.mean(top_ref == top_oth))}
