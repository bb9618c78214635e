"""MetricsAccumulator: batches of student logits (and the teacher's cached top-K, the true labels,
embeddings) in; the accuracy, hierarchy, abstention and embedding_cosine sections of report.json
out. Training's validation and evaluate both use it, so one run gives one set of numbers
(given the same label bank: see bioclip_lite_tf/README.md, "Training vs evaluate").

Per photo it keeps only small arrays (rank top-5 rows, rank top-1 probabilities, the cosine), so
memory grows by ~0.3 kB per photo whatever the number of species.
"""
from __future__ import annotations

import collections
from typing import Dict, List, Optional, Sequence

import numpy as np

from formats.ranks import RANKS
from bioclip_lite_tf.metrics import abstention, hierarchy
from bioclip_lite_tf.metrics.ranks import (RankAggregator, softmax, teacher_rank_topk,
                                           teacher_topk_probs, topk)

TOP = 5


def embedding_cosine(student: np.ndarray, teacher: np.ndarray) -> np.ndarray:
  """float [N, D] x float [N, D] -> float64 [N] cosine per row (both normalized here)."""
  a = np.asarray(student, np.float64)
  b = np.asarray(teacher, np.float64)
  den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
  return np.sum(a * b, axis=1) / np.maximum(den, 1e-30)


def _pad(a: np.ndarray, k: int) -> np.ndarray:
  if a.shape[1] >= k:
    return a[:, :k]
  return np.concatenate([a, -np.ones((len(a), k - a.shape[1]), a.dtype)], axis=1)


def _share(mask: np.ndarray) -> Optional[float]:
  return float(mask.mean()) if mask.size else None


class MetricsAccumulator:
  """aggregator: RankAggregator of the label bank the logits were scored against;
  logit_scale: to turn the top species logit back into the cosine `best`'s floor is on."""

  def __init__(self, aggregator: RankAggregator, logit_scale: float):
    self.agg = aggregator
    self.logit_scale = float(logit_scale)
    self._parts = collections.defaultdict(list)
    self.n = 0

  def update(self, species_logits: np.ndarray, truth: Optional[np.ndarray] = None,
             teacher_topk_indices: Optional[np.ndarray] = None,
             teacher_topk_logits: Optional[np.ndarray] = None,
             student_embedding: Optional[np.ndarray] = None,
             teacher_embedding: Optional[np.ndarray] = None,
             teacher_logsumexp: Optional[np.ndarray] = None) -> None:
    """species_logits float [B, S]; truth int [B, 7] (a row with a negative entry has no
    truth); teacher top-K int/float [B, K]; embeddings float [B, D]."""
    logits = np.asarray(species_logits, np.float32)
    b = len(logits)
    if b == 0:
      return
    probs = softmax(logits)
    s_top, s_p1 = [], []
    for rank in RANKS:
      rp = self.agg.rank_probs(probs, rank)
      t = topk(rp, TOP)
      s_top.append(_pad(t, TOP))
      s_p1.append(np.take_along_axis(rp, t[:, :1], axis=1)[:, 0])
    P = self._parts
    P["s_top"].append(np.stack(s_top, 1).astype(np.int32))            # [B, 7, 5]
    P["s_p1"].append(np.stack(s_p1, 1).astype(np.float32))            # [B, 7]
    P["similarity"].append(logits.max(axis=1) / self.logit_scale)
    P["truth"].append(np.asarray(truth, np.int32) if truth is not None
                      else -np.ones((b, len(RANKS)), np.int32))
    if teacher_topk_indices is not None:
      tp = teacher_topk_probs(teacher_topk_logits, teacher_logsumexp)
      P["t_top"].append(np.stack([teacher_rank_topk(teacher_topk_indices, tp,
                                                    self.agg.ancestors[r], TOP)
                                  for r in RANKS], 1).astype(np.int32))
    if student_embedding is not None and teacher_embedding is not None:
      P["cosine"].append(embedding_cosine(student_embedding, teacher_embedding))
    self.n += b

  def arrays(self) -> Dict[str, np.ndarray]:
    return {k: np.concatenate(v) for k, v in self._parts.items()}

  def result(self, names: Optional[Dict[str, Sequence[str]]] = None, confused_rank="family",
             confused_top=20, thresholds=abstention.DEFAULT_THRESHOLDS) -> Dict[str, dict]:
    """{accuracy, hierarchy, abstention, embedding_cosine}; names {rank: taxon names} label the
    most-confused pairs (rows otherwise)."""
    if not self.n:
      return {"accuracy": {"n": 0}, "hierarchy": {}, "abstention": {}, "embedding_cosine": {}}
    a = self.arrays()
    s_top, truth = a["s_top"], a["truth"]
    s1 = s_top[:, :, 0]                                              # [N, 7]
    has_truth = np.all(truth >= 0, axis=1)
    t_top = a.get("t_top")
    per_rank = lambda m: {r: _share(m[:, i]) for i, r in enumerate(RANKS)}  # noqa: E731
    acc = {"n": self.n, "n_with_truth": int(has_truth.sum())}
    ty = truth[has_truth]
    acc["student_vs_truth"] = {
        "top1": per_rank(s1[has_truth] == ty),
        "top5": per_rank(np.any(s_top[has_truth] == ty[:, :, None], axis=2))}
    if t_top is not None:
      t1 = t_top[:, :, 0]
      acc["student_vs_teacher"] = {"top1": per_rank(s1 == t1),
                                   "top5": per_rank(np.any(s_top == t1[:, :, None], axis=2))}
      acc["teacher_vs_truth"] = {
          "top1": per_rank(t1[has_truth] == ty),
          "top5": per_rank(np.any(t_top[has_truth] == ty[:, :, None], axis=2))}
      counts = np.bincount(t1[:, -1][t1[:, -1] >= 0])
      acc["majority_baseline_species"] = float(counts.max() / counts.sum()) if counts.size else None
    hier = self._hierarchy(s_top, s1, a["s_p1"], a["similarity"], truth, has_truth, t_top,
                           names, confused_rank, confused_top)
    curve = abstention.abstention_curve(
        a["s_p1"][has_truth], s1[has_truth], ty, a["similarity"][has_truth],
        thresholds=thresholds, teacher=None if t_top is None else t_top[has_truth, :, 0])
    absn = {"threshold_default": abstention.DEFAULT_THRESHOLD,
            "similarity_floor": abstention.DEFAULT_SIMILARITY_FLOOR,
            "n": int(has_truth.sum()), "curve": curve,
            "definition": "best = the deepest rank whose top-1 probability >= threshold, null "
                          "when none does or the top species cosine is under the floor "
                          "(react-bio-clip's rule); accuracy is against the true labels"}
    cos = a.get("cosine")
    emb = ({"n": int(len(cos)), "mean": float(cos.mean()), "p5": float(np.percentile(cos, 5)),
            "min": float(cos.min())} if cos is not None and len(cos) else
           {"n": 0, "mean": None, "p5": None, "min": None})
    return {"accuracy": acc, "hierarchy": hier, "abstention": absn, "embedding_cosine": emb}

  def _hierarchy(self, s_top, s1, s_p1, similarity, truth, has_truth, t_top, names,
                 confused_rank, confused_top) -> Dict:
    anc = self.agg.matrix
    out = {}
    # Consistency: is the top-1 species inside the top-1 taxon of every rank?
    inside = anc[:, s1[:, -1]].T == s1                               # [N, 7]
    out["consistency"] = float(np.all(inside, 1).mean())
    out["per_rank"] = {r: float(inside[:, i].mean()) for i, r in enumerate(RANKS)}
    if t_top is not None:
      t1 = t_top[:, :, 0]
      t_inside = anc[:, np.maximum(t1[:, -1], 0)].T == t1
      out["teacher_consistency"] = float(np.all(t_inside, 1).mean())
      out["teacher_per_rank"] = {r: float(t_inside[:, i].mean()) for i, r in enumerate(RANKS)}
    out["definition"] = ("consistency: share of photos whose top-1 species lies inside the top-1 "
                         "taxon of every higher rank (rank probabilities = sums of species "
                         "probabilities, so this can be < 1). mistake_severity: mean LCA height "
                         "(0 same species .. 7 different kingdoms) of top-1 and true species "
                         "over top-1 mistakes; hdist_at_k: mean LCA height of the top-k species "
                         "and the truth; precision/recall: hierarchical (ancestor sets) of "
                         "`best` at the default threshold")
    true_lin = truth[has_truth].astype(np.int64)
    pred_species = s1[has_truth, -1]
    sev = hierarchy.mistake_severity(hierarchy.species_lineage(anc, pred_species), true_lin)
    out["mistake_severity"] = sev["mean"]
    out["mistakes"] = sev["mistakes"]
    out["mistake_severity_histogram"] = sev["histogram"]
    out["hdist_at_1"] = hierarchy.hierarchical_distance_at_k(s_top[has_truth, -1, :1], anc,
                                                              true_lin)
    valid5 = s_top[has_truth, -1, :]
    k5 = int(np.sum(valid5[0] >= 0)) if len(valid5) else 0
    out["hdist_at_5"] = hierarchy.hierarchical_distance_at_k(valid5[:, :k5], anc, true_lin)
    depth = abstention.best_depth(s_p1[has_truth], abstention.DEFAULT_THRESHOLD,
                                  similarity[has_truth])
    lineages = hierarchy.taxon_lineages(anc)
    pred_lin = -np.ones_like(true_lin)
    rows_t = s1[has_truth]
    for d in range(len(RANKS)):
      at = depth == d
      pred_lin[at, :d + 1] = lineages[d][rows_t[at, d]]
    pr = hierarchy.hierarchical_precision_recall(depth, pred_lin, true_lin)
    out["precision"], out["recall"], out["f1"] = pr["precision"], pr["recall"], pr["f1"]
    # The most confused pairs at one rank (true taxon, predicted taxon), by count.
    d = RANKS.index(confused_rank)
    pairs = collections.Counter(
        (int(t), int(p)) for t, p in zip(true_lin[:, d], rows_t[:, d]) if t != p)
    label = (lambda i: names[confused_rank][i]) if names else (lambda i: str(i))  # noqa: E731
    out["confused_pairs"] = {
        "rank": confused_rank,
        "pairs": [{"truth": label(t), "predicted": label(p), "count": c}
                  for (t, p), c in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
                  [:confused_top]]}
    return out
