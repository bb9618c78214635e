"""The shared metrics (bioclip_lite_tf.metrics) against brute force on a small hand-made tree.

Brute force here = explicit loops over each species' ancestor list written out below, never the
vectorized code under test.
"""
import numpy as np
import pytest

from bioclip_lite_tf import metrics as M
from formats.ranks import RANKS

# A hand-made tree. Each species' lineage (kingdom .. species), as names: rows are assigned in
# order of first appearance per rank.
LINEAGES = [
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "philomelos"),
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Erithacus", "rubecula"),
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Paridae", "Parus", "major"),
    ("Animalia", "Chordata", "Aves", "Accipitriformes", "Accipitridae", "Buteo", "buteo"),
    ("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes"),
    ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa", "atalanta"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Prunus", "avium"),
]
S = len(LINEAGES)


def _rows():
  names = [dict() for _ in RANKS]
  anc = np.zeros((7, S), np.int64)
  for s, lin in enumerate(LINEAGES):
    for d in range(7):
      key = lin[:d + 1]                       # lineage-unique taxa
      anc[d, s] = names[d].setdefault(key, len(names[d]))
  return anc, [len(n) for n in names]


ANC, SIZES = _rows()


def brute_ancestor_set(s, depth=6):
  """The ancestors (with itself) of species s down to `depth`, as (depth, name-path) pairs."""
  return {(d, LINEAGES[s][:d + 1]) for d in range(depth + 1)}


def brute_lca_height(a, b):
  """Walk both ancestor lists from the kingdom down; height = 7 - ranks shared."""
  shared = 0
  for d in range(7):
    if LINEAGES[a][:d + 1] == LINEAGES[b][:d + 1]:
      shared += 1
    else:
      break
  return 7 - shared


def test_lca_height_matches_brute_force_for_every_pair():
  for a in range(S):
    for b in range(S):
      got = M.lca_height(M.species_lineage(ANC, a), M.species_lineage(ANC, b))
      assert got == brute_lca_height(a, b), (LINEAGES[a], LINEAGES[b])
  assert brute_lca_height(0, 1) == 1 and brute_lca_height(0, 7) == 7   # the tree is as meant


def _random_case(n=60, seed=0):
  rng = np.random.RandomState(seed)
  logits = rng.randn(n, S) * 3
  truth_species = rng.randint(0, S, n)
  truth = ANC[:, truth_species].T
  return logits, truth_species, truth


def _brute_probs(logits):
  out = []
  for row in logits:
    e = [np.exp(v - max(row)) for v in row]
    out.append([v / sum(e) for v in e])
  return out


def test_mistake_severity_and_hdist_match_brute_force():
  logits, truth_species, truth = _random_case()
  acc = M.MetricsAccumulator(M.RankAggregator.from_matrix(ANC, SIZES), 1.0)
  acc.update(logits[:20], truth[:20])
  acc.update(logits[20:], truth[20:])
  h = acc.result()["hierarchy"]
  probs = _brute_probs(logits)
  heights, hd1, hd5 = [], [], []
  for p, t in zip(probs, truth_species):
    order = sorted(range(S), key=lambda s: (-p[s], s))
    top1 = order[0]
    if top1 != t:
      heights.append(brute_lca_height(top1, t))
    hd1.append(brute_lca_height(top1, t))
    hd5.append(sum(brute_lca_height(s, t) for s in order[:5]) / 5)
  assert heights, "the random case must have mistakes"
  assert h["mistake_severity"] == pytest.approx(sum(heights) / len(heights))
  assert h["mistakes"] == len(heights)
  assert h["hdist_at_1"] == pytest.approx(sum(hd1) / len(hd1))
  assert h["hdist_at_5"] == pytest.approx(sum(hd5) / len(hd5))
  for height in range(1, 8):
    assert h["mistake_severity_histogram"][str(height)] == heights.count(height)


def _brute_best(p_species, threshold, similarity=None, floor=None):
  """The package's rule, written out: species up to kingdom, first top-1 with p >= threshold.
  Returns (depth, lineage path of the answered taxon) or None."""
  if floor is not None and similarity < floor:
    return None
  for d in range(6, -1, -1):
    mass = {}
    for s in range(S):
      key = LINEAGES[s][:d + 1]
      mass[key] = mass.get(key, 0.0) + p_species[s]
    # ties to the lower row = first appearance
    order = sorted(mass, key=lambda k: (-mass[k], ANC[d][[LINEAGES[s][:d + 1] for s in
                                                          range(S)].index(k)]))
    if mass[order[0]] >= threshold:
      return d, order[0]
  return None


def test_hierarchical_precision_recall_of_best_matches_brute_force():
  logits, truth_species, truth = _random_case(seed=3)
  logits = logits * 0.6                        # flatter: `best` stops at several ranks
  acc = M.MetricsAccumulator(M.RankAggregator.from_matrix(ANC, SIZES), 1.0)
  acc.update(logits, truth)
  h = acc.result()["hierarchy"]
  inter = predicted = true = 0
  depths = set()
  for p, t, row in zip(_brute_probs(logits), truth_species, logits):
    b = _brute_best(p, M.DEFAULT_THRESHOLD, max(row) / 1.0, M.DEFAULT_SIMILARITY_FLOOR)
    pred_set = set() if b is None else {(d, b[1][:d + 1]) for d in range(b[0] + 1)}
    depths.add(None if b is None else b[0])
    true_set = brute_ancestor_set(t)
    inter += len(pred_set & true_set)
    predicted += len(pred_set)
    true += len(true_set)
  assert len(depths) >= 3, depths               # the case exercises several answer depths
  assert h["precision"] == pytest.approx(inter / predicted)
  assert h["recall"] == pytest.approx(inter / true)
  assert h["precision"] != pytest.approx(h["recall"])


def test_abstention_curve_matches_brute_force():
  logits, truth_species, truth = _random_case(seed=5)
  logits = logits * 0.6
  scale = 10.0
  acc = M.MetricsAccumulator(M.RankAggregator.from_matrix(ANC, SIZES), scale)
  acc.update(logits, truth)
  curve = acc.result()["abstention"]["curve"]
  assert [c["threshold"] for c in curve] == pytest.approx([0.05 * i for i in range(21)])
  probs = _brute_probs(logits)
  for point in curve:
    answered = {d: [] for d in range(7)}
    for p, t, row in zip(probs, truth_species, logits):
      b = _brute_best(p, point["threshold"], max(row) / scale, M.DEFAULT_SIMILARITY_FLOOR)
      if b is not None:
        answered[b[0]].append(b[1] == LINEAGES[t][:b[0] + 1])
    for d, rank in enumerate(RANKS):
      assert point["answered_share_by_rank"][rank] == pytest.approx(len(answered[d]) / len(probs))
      if answered[d]:
        assert point["accuracy_at_answered_rank"][rank] == pytest.approx(
            sum(answered[d]) / len(answered[d]))
      else:
        assert point["accuracy_at_answered_rank"][rank] is None
  # threshold 0 answers every photo over the floor at species; the floor abstains the rest
  over_floor = np.mean(logits.max(1) / scale >= M.DEFAULT_SIMILARITY_FLOOR)
  assert curve[0]["answered_share_by_rank"]["species"] == pytest.approx(over_floor)
  assert 0 < over_floor < 1


def test_teacher_agreement_and_embedding_cosine_match_brute_force():
  logits, truth_species, truth = _random_case(seed=7)
  rng = np.random.RandomState(8)
  n, k = len(logits), 4
  t_idx = np.stack([rng.permutation(S)[:k] for _ in range(n)])
  t_logits = np.sort(rng.randn(n, k) * 2, axis=1)[:, ::-1]
  s_emb, t_emb = rng.randn(n, 6), rng.randn(n, 6)
  acc = M.MetricsAccumulator(M.RankAggregator.from_matrix(ANC, SIZES), 1.0)
  acc.update(logits, truth, t_idx, t_logits, s_emb, t_emb)
  res = acc.result()
  probs = _brute_probs(logits)
  top1 = {r: 0 for r in RANKS}
  top5 = {r: 0 for r in RANKS}
  for i in range(n):
    e = [np.exp(v - max(t_logits[i])) for v in t_logits[i]]
    tp = [v / sum(e) for v in e]
    for d, rank in enumerate(RANKS):
      t_mass, s_mass = {}, {}
      for j in range(k):
        key = LINEAGES[t_idx[i][j]][:d + 1]
        t_mass[key] = t_mass.get(key, 0.0) + tp[j]
      for s in range(S):
        key = LINEAGES[s][:d + 1]
        s_mass[key] = s_mass.get(key, 0.0) + probs[i][s]
      row = lambda key: [LINEAGES[s][:d + 1] for s in range(S)].index(key)  # noqa: E731
      t_best = sorted(t_mass, key=lambda key: (-t_mass[key], ANC[d][row(key)]))[0]
      s_order = sorted(s_mass, key=lambda key: (-s_mass[key], ANC[d][row(key)]))
      top1[rank] += s_order[0] == t_best
      top5[rank] += t_best in s_order[:5]
  for rank in RANKS:
    assert res["accuracy"]["student_vs_teacher"]["top1"][rank] == pytest.approx(top1[rank] / n)
    assert res["accuracy"]["student_vs_teacher"]["top5"][rank] == pytest.approx(top5[rank] / n)
  assert top1["kingdom"] < n                     # not trivially all-agreeing
  cos = []
  for a, b in zip(s_emb, t_emb):
    dot = sum(x * y for x, y in zip(a, b))
    cos.append(dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5))
  cos.sort()
  assert res["embedding_cosine"]["mean"] == pytest.approx(sum(cos) / n)
  # p5 with linear interpolation between order statistics (numpy's default definition)
  pos = 0.05 * (n - 1)
  lo = int(pos)
  p5 = cos[lo] + (pos - lo) * (cos[lo + 1] - cos[lo])
  assert res["embedding_cosine"]["p5"] == pytest.approx(p5)


def test_teacher_logsumexp_leaves_uncached_mass_out():
  # Teacher top-2 over species 0 and 7 (different kingdoms) with a normalizer that puts most
  # mass elsewhere: probabilities are exp(l - lse), not renormalized over the top-2.
  idx = np.array([[0, 7]])
  logits = np.array([[2.0, 1.0]])
  lse = np.array([np.log(np.exp(2.0) + np.exp(1.0) + 20.0)])
  p = M.teacher_topk_probs(logits, lse)
  assert p.sum() < 0.5
  np.testing.assert_allclose(p[0], np.exp(logits[0] - lse[0]))
  top = M.teacher_rank_topk(idx, p, ANC[0], 5)
  assert list(top[0]) == [ANC[0][0], ANC[0][7], -1, -1, -1]


def test_confused_pairs_count_true_and_predicted_family():
  logits, truth_species, truth = _random_case(seed=9)
  names = {r: [None] * SIZES[d] for d, r in enumerate(RANKS)}
  for s, lin in enumerate(LINEAGES):
    for d, r in enumerate(RANKS):
      names[r][ANC[d][s]] = lin[d]
  acc = M.MetricsAccumulator(M.RankAggregator.from_matrix(ANC, SIZES), 1.0)
  acc.update(logits, truth)
  pairs = acc.result(names=names)["hierarchy"]["confused_pairs"]["pairs"]
  probs = _brute_probs(logits)
  brute = {}
  for p, t in zip(probs, truth_species):
    mass = {}
    for s in range(S):
      mass[LINEAGES[s][4]] = mass.get(LINEAGES[s][4], 0.0) + p[s]
    pred = max(mass, key=lambda f: mass[f])
    if pred != LINEAGES[t][4]:
      brute[(LINEAGES[t][4], pred)] = brute.get((LINEAGES[t][4], pred), 0) + 1
  assert {(q["truth"], q["predicted"]): q["count"] for q in pairs} == brute
  assert [q["count"] for q in pairs] == sorted((q["count"] for q in pairs), reverse=True)
