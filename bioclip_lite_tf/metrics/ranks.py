"""Species probabilities, their sums per rank, and rank-level top-k (student and teacher).

Zero-shot classification as docs/ARCHITECTURE.md defines it: species logits are
`logit_scale * embedding @ species_text_embeddings.T`, softmax over the label bank's species,
and the probability of a higher taxon is the sum of its species' probabilities (parent links).

The teacher's predictions are its cached top-K species: its species distribution is the softmax
over those K logits (the mass outside the top K is not cached and is taken as 0), or, when the
cache carries `teacher_logsumexp` (the normalizer over ALL species), exp(logit - logsumexp), which
leaves the uncached mass out of every taxon. A rank's teacher ranking sorts taxa by summed mass,
ties to the lower taxon row.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from formats.ranks import RANKS


def softmax(logits: np.ndarray) -> np.ndarray:
  """Row softmax in float64, returned as float32. logits [B, S]."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def topk(scores: np.ndarray, k: int) -> np.ndarray:
  """int64 [B, min(k, N)] indices of the largest scores per row, best first (ties: lower index)."""
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  key = np.take_along_axis(scores, part, axis=1)
  # Sort by score descending, then index ascending (lexsort: last key is primary).
  order = np.lexsort((part, -key), axis=1)
  return np.take_along_axis(part, order, axis=1)


class RankAggregator:
  """Sums species probabilities into each rank's taxa.

  ancestors: {rank: int [S]} the row at that rank of each species' ancestor;
  sizes: {rank: number of taxa}.
  """

  def __init__(self, ancestors: Dict[str, np.ndarray], sizes: Dict[str, int]):
    self.ancestors = {r: np.asarray(a, np.int64) for r, a in ancestors.items()}
    self.sizes = dict(sizes)
    self.matrix = np.stack([self.ancestors[r] for r in RANKS])   # int64 [7, S]
    self._order = {}
    for rank in RANKS:
      anc = self.ancestors[rank]
      order = np.argsort(anc, kind="stable")
      sorted_anc = anc[order]
      starts = np.flatnonzero(np.r_[True, sorted_anc[1:] != sorted_anc[:-1]])
      self._order[rank] = (order, starts, sorted_anc[starts])

  @classmethod
  def from_matrix(cls, ancestors: np.ndarray, sizes=None) -> "RankAggregator":
    """From int [7, S] (row d = depth d); sizes default to max row + 1 per rank."""
    ancestors = np.asarray(ancestors)
    if sizes is None:
      sizes = [int(a.max()) + 1 for a in ancestors]
    return cls(dict(zip(RANKS, ancestors)), dict(zip(RANKS, (int(s) for s in sizes))))

  def rank_probs(self, species_probs: np.ndarray, rank: str) -> np.ndarray:
    """float32 [B, S] species probabilities -> float32 [B, N_rank]."""
    if rank == "species":
      return species_probs
    order, starts, taxa = self._order[rank]
    out = np.zeros((species_probs.shape[0], self.sizes[rank]), np.float32)
    out[:, taxa] = np.add.reduceat(species_probs[:, order], starts, axis=1)
    return out


def teacher_topk_probs(topk_logits: np.ndarray, logsumexp: Optional[np.ndarray] = None
                       ) -> np.ndarray:
  """float [B, K] scaled logits -> float64 [B, K] probabilities (see the module docstring)."""
  z = np.asarray(topk_logits, np.float64)
  if logsumexp is None:
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)
  return np.exp(z - np.asarray(logsumexp, np.float64)[:, None])


def teacher_rank_topk(topk_indices: np.ndarray, probs: np.ndarray, ancestors_row: np.ndarray,
                      k: int) -> np.ndarray:
  """The teacher's top-k taxa of one rank: int64 [B, k], -1 past the taxa it has mass on.

  topk_indices int [B, K] species rows (negative = padding), probs [B, K] their probabilities,
  ancestors_row int [S] that rank's row of each species.
  """
  idx = np.asarray(topk_indices, np.int64)
  valid = idx >= 0
  rows = np.where(valid, np.asarray(ancestors_row)[np.where(valid, idx, 0)], -1)   # [B, K]
  p = np.where(valid, probs, 0.0)
  same = (rows[:, :, None] == rows[:, None, :]) & valid[:, None, :]
  mass = np.einsum("bkj,bj->bk", same, p)                                       # [B, K]
  # Keep the first entry of each taxon, rank by (-mass, row).
  first = np.ones_like(valid)
  kk = rows.shape[1]
  for j in range(1, kk):
    first[:, j] = ~np.any(rows[:, :j] == rows[:, j:j + 1], axis=1)
  keep = first & valid
  big = np.iinfo(np.int64).max
  row_key = np.where(keep, rows, big)
  mass_key = np.where(keep, -mass, np.inf)
  order = np.lexsort((row_key, mass_key), axis=1)
  ranked = np.take_along_axis(np.where(keep, rows, -1), order, axis=1)
  if ranked.shape[1] < k:
    ranked = np.concatenate([ranked, -np.ones((len(ranked), k - ranked.shape[1]), np.int64)], 1)
  return ranked[:, :k]
