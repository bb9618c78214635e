"""Each loss against a value computed by hand (numpy, written out term by term) on a tiny case."""
import math

import numpy as np
import pytest

from bioclip_lite_tf import losses
from bioclip_lite_tf.keras import tf

# A tiny tree: 2 kingdoms; 5 species; the genus rank has one taxon with no species (row 3),
# which must not produce NaN. ancestors[r, s] = row of species s at rank r.
RANK_SIZES = (2, 2, 2, 2, 3, 4, 5)
ANCESTORS = np.array([
    [0, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 0, 1, 1],
    [0, 0, 1, 2, 2],
    [0, 0, 1, 2, 2],   # genus 3 has no species
    [0, 1, 2, 3, 4],
], np.int32)


def _bank(dim=3, scale=10.0, seed=0):
  rng = np.random.default_rng(seed)
  text = rng.normal(size=(5, dim)).astype(np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  return losses.LabelBankTensors(tf.constant(text), tf.constant(ANCESTORS), RANK_SIZES, scale)


def _unit(x):
  x = np.asarray(x, np.float32)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _log_softmax(x, axis=-1):
  x = np.asarray(x, np.float64)
  m = x.max(axis=axis, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _outputs(emb, bank):
  emb = tf.constant(emb, tf.float32)
  return losses.StudentOutputs(emb, losses.species_logits(emb, bank))


def test_embedding_distillation_is_one_minus_cosine():
  bank = _bank()
  student = _unit([[1, 0, 0], [0, 1, 0]])
  teacher = _unit([[1, 1, 0], [0, 1, 0]])
  got = losses.embedding_distillation(_outputs(student, bank), {"teacher_embedding": teacher}, bank)
  np.testing.assert_allclose(got.numpy(), [1 - 1 / math.sqrt(2), 0.0], atol=1e-6)


def test_soft_label_kl_by_hand_with_temperature_squared():
  bank = _bank()
  emb = _unit([[0.3, -0.2, 0.9]])
  logits = 10.0 * emb @ bank.species_text_embeddings.numpy().T           # [1, 5]
  topk_idx = np.array([[3, 0]], np.int32)
  topk_logits = np.array([[8.0, 6.0]], np.float32)
  t = 2.0
  # Teacher: softmax over its 2 logits / T.
  p = np.exp([4.0, 3.0]) / np.exp([4.0, 3.0]).sum()
  # Student: log-softmax over all 5 species / T, read at the teacher's indices.
  log_q = _log_softmax(logits[0] / t)[[3, 0]]
  want = t * t * (p[0] * (math.log(p[0]) - log_q[0]) + p[1] * (math.log(p[1]) - log_q[1]))
  got = losses.soft_label_distillation(
      _outputs(emb, bank), {"topk_species_indices": topk_idx, "topk_species_logits": topk_logits},
      bank, temperature=t)
  np.testing.assert_allclose(got.numpy(), [want], rtol=1e-5)


def test_soft_label_is_zero_when_student_matches_teacher_on_its_support():
  # Student logits equal to the teacher's on the top-k and -inf-like elsewhere give KL = 0.
  bank = _bank()
  out = losses.StudentOutputs(tf.zeros((1, 3)), tf.constant([[5.0, -1e4, -1e4, 7.0, -1e4]]))
  got = losses.soft_label_distillation(
      out, {"topk_species_indices": np.array([[3, 0]], np.int32),
            "topk_species_logits": np.array([[7.0, 5.0]], np.float32)}, bank, temperature=1.0)
  assert abs(float(got.numpy()[0])) < 1e-5


def test_rank_segment_sums_match_dense_reference():
  rng = np.random.default_rng(1)
  species_logits = rng.normal(size=(4, 5)).astype(np.float32) * 5
  log_probs = tf.nn.log_softmax(species_logits)
  probs = np.exp(_log_softmax(species_logits))
  for r in range(6):
    dense = np.zeros((5, RANK_SIZES[r]))
    dense[np.arange(5), ANCESTORS[r]] = 1.0                               # [S, N_r] one-hot
    want = probs @ dense
    got_log = losses.rank_log_probs(log_probs, tf.constant(ANCESTORS[r]), RANK_SIZES[r]).numpy()
    got = losses.rank_probs(tf.constant(probs, tf.float32), tf.constant(ANCESTORS[r]),
                            RANK_SIZES[r]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    nonempty = want > 0
    np.testing.assert_allclose(np.exp(got_log[nonempty]), want[nonempty], rtol=1e-5)
    assert np.all(np.isfinite(got_log)), "an empty taxon must stay finite"


def test_hierarchical_by_hand_and_finite_gradients():
  bank = _bank(scale=4.0)
  emb = _unit([[0.5, 0.1, -0.3], [-0.2, 0.8, 0.1]])
  topk_idx = np.array([[0, 3], [4, 2]], np.int32)
  topk_logits = np.array([[3.0, 1.0], [2.0, 2.0]], np.float32)
  labels = np.array([ANCESTORS[:, 1], ANCESTORS[:, 4]], np.int32)        # true species 1 and 4
  batch = {"topk_species_indices": topk_idx, "topk_species_logits": topk_logits, "labels": labels}

  logits = 4.0 * emb @ bank.species_text_embeddings.numpy().T
  q = np.exp(_log_softmax(logits))
  want = np.zeros(2)
  for b in range(2):
    p = np.exp(topk_logits[b]) / np.exp(topk_logits[b]).sum()
    per_rank = []
    for r in range(7):
      q_r = np.zeros(RANK_SIZES[r])
      np.add.at(q_r, ANCESTORS[r], q[b])
      teacher_r = np.zeros(RANK_SIZES[r])
      np.add.at(teacher_r, ANCESTORS[r][topk_idx[b]], p)
      nz = teacher_r > 0
      ce_teacher = -np.sum(teacher_r[nz] * np.log(q_r[nz]))
      ce_label = -np.log(q_r[labels[b, r]])
      per_rank.append(2.0 * ce_teacher + 0.5 * ce_label)
    want[b] = np.mean(per_rank)
  emb_var = tf.Variable(emb)
  with tf.GradientTape() as tape:
    out = losses.StudentOutputs(emb_var, losses.species_logits(emb_var, bank))
    got = losses.hierarchical(out, batch, bank, teacher_weight=2.0, label_weight=0.5)
    summed = tf.reduce_sum(got)
  np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
  grad = tape.gradient(summed, emb_var).numpy()
  assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 0


def test_hierarchical_rank_weights_select_ranks():
  bank = _bank()
  emb = _unit([[0.5, 0.1, -0.3]])
  batch = {"topk_species_indices": np.array([[0, 3]], np.int32),
           "topk_species_logits": np.array([[3.0, 1.0]], np.float32),
           "labels": ANCESTORS[:, 1][None].astype(np.int32)}
  only_species = losses.hierarchical(_outputs(emb, bank), batch, bank,
                                     rank_weights=[0, 0, 0, 0, 0, 0, 1]).numpy()
  logits = 10.0 * emb @ bank.species_text_embeddings.numpy().T
  log_q = _log_softmax(logits)[0]
  p = np.exp([3.0, 1.0]) / np.exp([3.0, 1.0]).sum()
  want = -(p[0] * log_q[0] + p[1] * log_q[3]) - log_q[1]
  np.testing.assert_allclose(only_species, [want], rtol=1e-5)
  with pytest.raises(ValueError, match="rank_weights"):
    losses.hierarchical(_outputs(emb, bank), batch, bank, rank_weights=[1, 2])


def test_contrastive_by_hand_with_duplicate_species():
  bank = _bank(scale=5.0)
  text = bank.species_text_embeddings.numpy()
  emb = _unit([[0.2, 0.9, 0.1], [0.7, -0.1, 0.3], [0.1, 0.2, 0.9]])
  species = np.array([2, 4, 2])
  labels = np.zeros((3, 7), np.int32)
  labels[:, -1] = species
  logits = 5.0 * emb @ text[species].T                                   # [3, 3]
  same = (species[:, None] == species[None, :]).astype(float)
  targets = same / same.sum(1, keepdims=True)
  i2t = -(targets * _log_softmax(logits, axis=1)).sum(1)
  t2i = -(targets * _log_softmax(logits, axis=0)).sum(0)
  got = losses.contrastive(_outputs(emb, bank), {"labels": labels}, bank)
  np.testing.assert_allclose(got.numpy(), 0.5 * (i2t + t2i), rtol=1e-5)


def test_total_loss_weights_and_registry():
  bank = _bank()
  emb = _unit([[1, 0, 0], [0, 1, 0]])
  batch = {"teacher_embedding": _unit([[1, 1, 0], [0, 1, 0]])}
  out = losses.total_loss(_outputs(emb, bank), batch, bank,
                          {"embedding": {"weight": 3.0}, "contrastive": {"weight": 0.0}},
                          global_batch_size=4)
  # compute_average_loss divides the per-example sum by the GLOBAL batch (4, not 2).
  per = 1 - 1 / math.sqrt(2)
  np.testing.assert_allclose(out["embedding"].numpy(), per / 4, rtol=1e-6)
  np.testing.assert_allclose(out["total"].numpy(), 3 * per / 4, rtol=1e-6)
  assert "contrastive" not in out
  with pytest.raises(ValueError, match="unknown loss"):
    losses.total_loss(_outputs(emb, bank), batch, bank, {"nope": {}}, 2)
  assert set(losses.LOSSES) == {"embedding", "soft_label", "hierarchical", "contrastive"}
