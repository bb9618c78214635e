"""Evaluation: metrics against brute force, the report schema, and the CLI end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bioclip_lite_tf.evaluate import metrics as eval_metrics, plots, report_schema
from bioclip_lite_tf.testing import export_fixtures as export_testing
from formats.ranks import RANKS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def _tree():
  """A 7-rank tree: 2 kingdoms ... 12 species, as ancestor arrays."""
  sizes = {"kingdom": 2, "phylum": 3, "class": 4, "order": 5, "family": 6, "genus": 8,
           "species": 12}
  rng = np.random.RandomState(0)
  parents = {}
  prev = None
  for rank in RANKS:
    n = sizes[rank]
    if prev is None:
      parents[rank] = -np.ones(n, int)
    else:  # every parent gets at least one child
      p = np.concatenate([np.arange(sizes[prev]), rng.randint(0, sizes[prev], n - sizes[prev])])
      parents[rank] = np.sort(p)
    prev = rank
  anc = {"species": np.arange(12)}
  for i in range(len(RANKS) - 1, 0, -1):
    anc[RANKS[i - 1]] = parents[RANKS[i]][anc[RANKS[i]]]
  return anc, sizes


def test_rank_probabilities_are_sums_of_species():
  anc, sizes = _tree()
  agg = eval_metrics.RankAggregator(anc, sizes)
  probs = eval_metrics.softmax(np.random.RandomState(1).randn(5, 12) * 3)
  for rank in RANKS:
    got = agg.rank_probs(probs, rank)
    brute = np.zeros((5, sizes[rank]))
    for s in range(12):
      brute[:, anc[rank][s]] += probs[:, s]
    np.testing.assert_allclose(got, brute, atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)


def test_accuracy_counts_against_brute_force():
  anc, sizes = _tree()
  agg = eval_metrics.RankAggregator(anc, sizes)
  rng = np.random.RandomState(2)
  logits = rng.randn(40, 12) * 4
  truth_species = rng.randint(0, 12, 40)
  truth = np.stack([anc[r][truth_species] for r in RANKS], 1)
  # a teacher whose top-K is the student's own ranking: student == teacher at species level
  topk_idx = np.argsort(-logits, 1)[:, :5]
  topk_logits = np.take_along_axis(logits, topk_idx, 1)
  acc = eval_metrics.MetricsAccumulator(agg, 1.0)
  acc.update(logits[:25], truth[:25], topk_idx[:25], topk_logits[:25])
  acc.update(logits[25:], truth[25:], topk_idx[25:], topk_logits[25:])
  res = acc.result()
  assert res["accuracy"]["n"] == 40
  assert res["accuracy"]["student_vs_teacher"]["top1"]["species"] == 1.0
  species_top1 = logits.argmax(1)
  assert res["accuracy"]["student_vs_truth"]["top1"]["species"] == np.mean(
      species_top1 == truth_species)
  # genus from summed probabilities, by brute force
  probs = eval_metrics.softmax(logits)
  genus_p = np.zeros((40, sizes["genus"]))
  for s in range(12):
    genus_p[:, anc["genus"][s]] += probs[:, s]
  assert res["accuracy"]["student_vs_truth"]["top1"]["genus"] == pytest.approx(
      np.mean(genus_p.argmax(1) == truth[:, 5]))
  top5 = np.argsort(-genus_p, 1)[:, :5]
  assert res["accuracy"]["student_vs_truth"]["top5"]["genus"] == pytest.approx(
      np.mean([t in row for t, row in zip(truth[:, 5], top5)]))
  # consistency: species inside the argmax taxon at every rank
  consistent = np.ones(40, bool)
  for rank in RANKS:
    rp = np.zeros((40, sizes[rank]))
    for s in range(12):
      rp[:, anc[rank][s]] += probs[:, s]
    consistent &= anc[rank][species_top1] == rp.argmax(1)
  assert res["hierarchy"]["consistency"] == pytest.approx(consistent.mean())


def test_inconsistent_prediction_is_detected():
  # two genera: A has 3 species at 0.2 each, B has one species at 0.4 -> genus A, species B
  anc = {r: np.array([0, 0, 0, 1]) for r in RANKS}
  anc["species"] = np.arange(4)
  anc["kingdom"] = np.zeros(4, int)
  sizes = {r: 2 for r in RANKS}
  sizes["kingdom"], sizes["species"] = 1, 4
  acc = eval_metrics.MetricsAccumulator(eval_metrics.RankAggregator(anc, sizes), 1.0)
  logits = np.log(np.array([[0.2, 0.2, 0.2, 0.4]]))
  acc.update(logits, np.array([[0, 0, 0, 0, 0, 0, 0]]), np.array([[3, 0]]),
             np.array([[1.0, 0.5]]))
  assert acc.result()["hierarchy"]["consistency"] == 0.0
  assert acc.result()["hierarchy"]["per_rank"]["kingdom"] == 1.0
  # The teacher's top-2 (species 3 at logit 1.0, species 0 at 0.5) puts 0.62 on genus B, the
  # genus of its top species: consistent.
  assert acc.result()["hierarchy"]["teacher_consistency"] == 1.0
  acc2 = eval_metrics.MetricsAccumulator(eval_metrics.RankAggregator(anc, sizes), 1.0)
  # Teacher top-4 spread like the student above: genus A (3 x 0.2) beats species 3's genus.
  acc2.update(logits, np.array([[0, 0, 0, 0, 0, 0, 0]]), np.array([[3, 0, 1, 2]]),
              np.log(np.array([[0.4, 0.2, 0.2, 0.2]])))
  assert acc2.result()["hierarchy"]["teacher_consistency"] == 0.0
  assert acc2.result()["hierarchy"]["teacher_per_rank"]["genus"] == 0.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "bioclip_export_workspace")
  return export_testing.exported_workspace(root)


def _evaluate(paths, out_dir, *extra):
  return subprocess.run(
      [sys.executable, "-m", "bioclip_lite_tf.evaluate", f"--workdir={paths['train']}",
       f"--export_dir={paths['export']}", f"--data_dir={paths['tfds']}", f"--out_dir={out_dir}",
       *extra], capture_output=True, text=True, cwd=REPO, timeout=1800)


def test_evaluate_cli_writes_full_report(exported, tmp_path):
  out = tmp_path / "report"
  proc = _evaluate(exported, out, "--latency_resolutions=224", "--latency_runs=3",
                   "--teacher_runs=1", "--parity_examples=64")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "report.json") as f:
    report = json.load(f)
  assert report_schema.missing_keys(report) == []
  assert report["errors"] == []
  assert report["data"]["teacher"]["real_weights"] is False
  assert report["data"]["num_eval"] == report["data"]["splits"]["validation"]
  assert report["parity"]["tfjs_vs_keras"]["cosine_min"] >= 0.99999
  assert report["parity"]["tfjs_vs_keras"]["n"] == 64
  for rank in RANKS:
    assert 0.0 <= report["accuracy"]["student_vs_teacher"]["top1"][rank] <= \
        report["accuracy"]["student_vs_teacher"]["top5"][rank] <= 1.0
  # kingdom is coarser than species: a hit at species implies a hit at kingdom
  acc = report["accuracy"]["teacher_vs_truth"]["top1"]
  assert acc["kingdom"] >= acc["species"]
  lat = report["latency_ms"]
  assert lat["teacher_torch_cpu"]["224"] > lat["keras_cpu"]["224"] > 0
  assert report["memory"]["tfjs_peak_bytes"]["224"] > report["memory"]["tfjs_resident_bytes"]
  assert report["memory"]["tflite_arena_bytes"] > 224 * 224 * 3  # at least the input
  # the subprocess's own peak (not the evaluator's, which fork would pass on): loading the
  # student and classifying adds to the TensorFlow-import baseline
  assert report["memory"]["keras_peak_rss_bytes"] > report["memory"]["keras_baseline_rss_bytes"]
  assert report["model"]["tfjs_bytes"] < report["model"]["keras_fp32_bytes"]
  # The new metrics and the cost of each compression step, every step on the same photos.
  h = report["hierarchy"]
  assert 0 <= h["hdist_at_1"] <= 7 and 0 <= h["hdist_at_5"] <= 7
  assert h["mistake_severity"] is None or 1 <= h["mistake_severity"] <= 7
  assert h["mistakes"] == sum(h["mistake_severity_histogram"].values())
  curve = report["abstention"]["curve"]
  shares = [c["answered_share"] for c in curve]
  assert shares == sorted(shares, reverse=True)   # a higher threshold never answers more
  for c in curve:
    assert sum(c["answered_share_by_rank"].values()) == pytest.approx(c["answered_share"])
  assert report["embedding_cosine"]["p5"] <= report["embedding_cosine"]["mean"]
  steps = report["compression_steps"]
  assert set(steps) == {"float", "pruned", "qat", "tfjs", "tflite_int8"}
  n_eval = report["data"]["num_eval"]
  for step, row in steps.items():
    assert row["n"] == n_eval, step
    assert 0 <= row["species_top1_agreement"] <= 1 and -1 <= row["embedding_cosine_mean"] <= 1
  # The exported graph's rows equal the report's main figures; TF.js computes the same graph.
  assert steps["qat"]["species_top1_agreement"] == \
      report["accuracy"]["student_vs_teacher"]["top1"]["species"]
  assert steps["qat"]["embedding_cosine_mean"] == report["embedding_cosine"]["mean"]
  assert steps["tfjs"]["embedding_cosine_mean"] == pytest.approx(
      steps["qat"]["embedding_cosine_mean"], abs=1e-5)
  assert steps["float"]["embedding_cosine_mean"] != steps["pruned"]["embedding_cosine_mean"]
  # Every plot is written, a real non-empty PNG, and only those.
  pngs = sorted(p.name for p in out.glob("*.png"))
  assert pngs == sorted(name for name, _ in plots.PLOTS) and len(pngs) == 7
  for name in pngs:
    with open(out / name, "rb") as f:
      data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
  card = (out / "MODEL_CARD.md").read_text()
  assert "RANDOM-WEIGHT" in card and "ViT-B-16" in card
  assert "What each compression step costs" in card and "TFLite int8" in card
  # a second run resumes: every section is read back, nothing recomputed
  proc = _evaluate(exported, out, "--latency_resolutions=224", "--latency_runs=3",
                   "--teacher_runs=1", "--parity_examples=64")
  assert proc.returncode == 0
  assert proc.stderr.count("done earlier") == 4


def test_evaluate_cli_bad_input_exits_2(exported, tmp_path):
  paths = dict(exported, export=str(tmp_path / "no_export"))
  proc = _evaluate(paths, tmp_path / "r1")
  assert proc.returncode == 2 and "manifest.json" in proc.stderr
  paths = dict(exported, train=str(tmp_path / "no_run"))
  proc = _evaluate(paths, tmp_path / "r2")
  assert proc.returncode == 2 and os.path.join("qat", "model.h5") in proc.stderr
