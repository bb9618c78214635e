"""Hierarchical metrics on the 7-rank tree (the label bank's parent links).

LCA height of two species = 7 - the number of leading ranks (from kingdom down) at which their
taxa agree: 0 for the same species, 1 for the same genus, ..., 6 for the same kingdom only, 7
for different kingdoms (the tree's root). The taxonomy links every taxon to one parent, so the
ranks that agree are always a prefix; counting the prefix also holds on a tree whose rows are
not lineage-unique.

- Mistake severity: mean LCA height of (top-1 species, true species) over top-1 mistakes.
- Hierarchical distance@k: mean over photos of the mean LCA height of the top-k species and the
  true species (Bertinetto et al., "Making Better Mistakes", CVPR 2020); @1 counts correct
  answers as 0.
- Hierarchical precision/recall (Silla & Freitas 2011, micro-averaged): the predicted set is a
  predicted taxon with its ancestors, the true set the true species with its ancestors;
  hP = sum |P & T| / sum |P|, hR = sum |P & T| / sum |T|. With a prediction at every rank down
  to species both sets have 7 members and hP = hR; the report predicts with `best` (which stops
  at a higher rank when unsure, or answers nothing), where they differ.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

NUM_RANKS = 7


def species_lineage(ancestors: np.ndarray, species: np.ndarray) -> np.ndarray:
  """int [7, S], int [...] species rows -> int64 [..., 7] each one's taxon row per rank."""
  a = np.asarray(ancestors, np.int64)
  return np.moveaxis(a[:, np.asarray(species, np.int64)], 0, -1)


def taxon_lineages(ancestors: np.ndarray) -> List[np.ndarray]:
  """Per depth d, int64 [N_d, d + 1]: the lineage (kingdom .. itself) of each taxon at depth d.
  A taxon without species keeps -1 rows."""
  a = np.asarray(ancestors, np.int64)
  out = []
  for d in range(a.shape[0]):
    lin = -np.ones((int(a[d].max()) + 1, d + 1), np.int64)
    lin[a[d]] = a[:d + 1].T
    out.append(lin)
  return out


def lca_height(lineage_a: np.ndarray, lineage_b: np.ndarray) -> np.ndarray:
  """int [..., 7] x int [..., 7] -> int64 [...]: 7 - length of the agreeing prefix."""
  eq = np.asarray(lineage_a) == np.asarray(lineage_b)
  prefix = np.cumprod(eq, axis=-1).sum(axis=-1)
  return (eq.shape[-1] - prefix).astype(np.int64)


def mistake_severity(pred_lineage: np.ndarray, true_lineage: np.ndarray) -> Dict:
  """{mean (None without mistakes), mistakes, histogram {height: count} for heights 1..7}."""
  h = lca_height(pred_lineage, true_lineage)
  wrong = h[h > 0]
  hist = np.bincount(wrong, minlength=NUM_RANKS + 1)[1:]
  return {"mean": float(wrong.mean()) if len(wrong) else None, "mistakes": int(len(wrong)),
          "histogram": {str(i + 1): int(c) for i, c in enumerate(hist)}}


def hierarchical_distance_at_k(topk_species: np.ndarray, ancestors: np.ndarray,
                               true_lineage: np.ndarray) -> Optional[float]:
  """topk_species int [N, k] (best first), true_lineage int [N, 7] -> mean LCA height."""
  if len(topk_species) == 0:
    return None
  lin = species_lineage(ancestors, topk_species)                         # [N, k, 7]
  return float(lca_height(lin, np.asarray(true_lineage)[:, None, :]).mean())


def hierarchical_precision_recall(pred_depth: np.ndarray, pred_lineage: np.ndarray,
                                  true_lineage: np.ndarray) -> Dict:
  """pred_depth int [N]: depth of the predicted taxon (-1 = no answer); pred_lineage int
  [N, 7]: its lineage in the first depth+1 columns (the rest ignored); true_lineage [N, 7].

  Returns {precision (None when nothing was predicted), recall, f1, n}."""
  pred_depth = np.asarray(pred_depth)
  n = len(pred_depth)
  cols = np.arange(NUM_RANKS)[None, :]
  in_pred = cols <= pred_depth[:, None]                                 # [N, 7]
  # Taxa in both sets: the predicted ones that lie on the true path. Rows are per rank, so a
  # predicted taxon is an ancestor of the truth exactly when it equals the truth's row there.
  both = in_pred & (np.asarray(pred_lineage) == np.asarray(true_lineage))
  inter, predicted, true = int(both.sum()), int(in_pred.sum()), NUM_RANKS * n
  precision = inter / predicted if predicted else None
  recall = inter / true if n else None
  f1 = (2 * precision * recall / (precision + recall)
        if precision is not None and recall and precision + recall > 0 else None)
  return {"precision": precision, "recall": recall, "f1": f1, "n": n}
