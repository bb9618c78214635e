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


# --- the chunked head and the K+1 "other" bin, against brute force over a small bank ------------

def _random_tree(num_species, rng):
  """ancestors [7, S] of a random tree (each taxon's parent is one taxon one rank up)."""
  sizes = [2, 3, 4, 6, 8, 11, num_species]
  anc = np.zeros((7, num_species), np.int32)
  anc[6] = np.arange(num_species)
  parents = {6: anc[6]}
  child = rng.integers(0, sizes[5], num_species)
  anc[5] = child
  for r in range(4, -1, -1):
    up = rng.integers(0, sizes[r], sizes[r + 1])     # parent at rank r of each taxon at r + 1
    anc[r] = up[anc[r + 1]]
  del parents
  return anc, tuple(sizes)


def _big_bank(chunk, num_species=37, dim=6, seed=3):
  rng = np.random.default_rng(seed)
  text = _unit(rng.normal(size=(num_species, dim)))
  anc, sizes = _random_tree(num_species, rng)
  return losses.LabelBankTensors(tf.constant(text), tf.constant(anc), sizes, 7.0,
                                 chunk_size=chunk)


def _np_full_probs(logits):
  return np.exp(_log_softmax(logits, axis=-1))


@pytest.mark.parametrize("chunk", [1, 5, 16, 0])
def test_chunked_head_values_and_gradients_equal_dense_and_brute_force(chunk):
  bank = _big_bank(chunk)
  rng = np.random.default_rng(4)
  emb = _unit(rng.normal(size=(3, 6)))
  text = bank.species_text_embeddings.numpy()
  anc = bank.ancestors.numpy()
  logits = 7.0 * emb.astype(np.float64) @ text.T.astype(np.float64)         # [3, 37]
  # Full normalizer at T = 1 and 2, brute force.
  for t in (1.0, 2.0):
    got = losses.bank_logsumexp(losses.StudentOutputs(tf.constant(emb)), bank, t).numpy()
    want = np.log(np.exp(logits / t).sum(axis=1))
    np.testing.assert_allclose(got, want, rtol=1e-5)
  # Taxon masses at every rank, including repeated taxa in one row.
  for r in range(6):
    taxa = rng.integers(0, bank.rank_sizes[r], (3, 5)).astype(np.int32)
    taxa[:, 4] = taxa[:, 0]
    got = losses.taxon_logsumexp(losses.StudentOutputs(tf.constant(emb)), bank, r, taxa).numpy()
    for b in range(3):
      for j in range(5):
        members = anc[r] == taxa[b, j]
        if members.any():
          np.testing.assert_allclose(got[b, j], np.log(np.exp(logits[b, members]).sum()),
                                     rtol=1e-5)
        else:
          assert got[b, j] <= -1e29
  # Every loss: chunked (no [B, S] logits) == dense, values and gradients.
  batch = {"topk_species_indices": np.stack([rng.permutation(37)[:4] for _ in range(3)]
                                            ).astype(np.int32),
           "topk_species_logits": rng.normal(size=(3, 4)).astype(np.float32) * 3,
           "labels": anc[:, rng.integers(0, 37, 3)].T.astype(np.int32),
           "teacher_embedding": _unit(rng.normal(size=(3, 6)))}
  batch["teacher_logsumexp"] = (np.log(np.exp(batch["topk_species_logits"]).sum(1)) + 0.7
                                ).astype(np.float32)
  config = {"soft_label": {"temperature": 1.0, "normalizer": "full"},
            "hierarchical": {"teacher_weight": 1.0, "label_weight": 0.5, "normalizer": "full"},
            "embedding": {}, "contrastive": {}}
  var = tf.Variable(emb)
  results = {}
  for mode in ("dense", "chunked"):
    with tf.GradientTape() as tape:
      out = (losses.StudentOutputs(var, losses.species_logits(var, bank)) if mode == "dense"
             else losses.StudentOutputs(var))
      values = losses.total_loss(out, batch, bank, config, global_batch_size=3)
    results[mode] = ({k: v.numpy() for k, v in values.items()},
                     tape.gradient(values["total"], var).numpy())
  for k, v in results["dense"][0].items():
    np.testing.assert_allclose(results["chunked"][0][k], v, rtol=1e-4, atol=1e-6, err_msg=k)
  np.testing.assert_allclose(results["chunked"][1], results["dense"][1], rtol=1e-4, atol=1e-6)
  assert np.abs(results["dense"][1]).sum() > 0


def test_other_bin_soft_label_equals_kl_of_full_softmaxes_coarsened_to_k_plus_1():
  # The teacher's logits over the WHOLE bank are known here; it caches its top K and the exact
  # logsumexp, as teacher_cache format 2 does. Top K is the whole bank minus some rows.
  bank = _big_bank(chunk=6, num_species=20)
  rng = np.random.default_rng(5)
  emb = _unit(rng.normal(size=(2, 6)))
  text = bank.species_text_embeddings.numpy().astype(np.float64)
  student_logits = 7.0 * emb @ text.T
  teacher_all = rng.normal(size=(2, 20)) * 1.5
  k = 15
  top = np.argsort(-teacher_all, axis=1)[:, :k].astype(np.int32)
  batch = {"topk_species_indices": top,
           "topk_species_logits": np.take_along_axis(teacher_all, top, 1).astype(np.float32),
           "teacher_logsumexp": np.log(np.exp(teacher_all).sum(1)).astype(np.float32)}
  got = losses.soft_label_distillation(losses.StudentOutputs(tf.constant(emb)), batch, bank,
                                       temperature=1.0, normalizer="full").numpy()
  p_full, q_full = _np_full_probs(teacher_all), _np_full_probs(student_logits)
  for b in range(2):
    p = np.append(p_full[b, top[b]], 1 - p_full[b, top[b]].sum())
    q = np.append(q_full[b, top[b]], 1 - q_full[b, top[b]].sum())
    assert p[-1] > 1e-3   # the tail carries real mass here
    np.testing.assert_allclose(got[b], np.sum(p * np.log(p / q)), rtol=1e-4)
  # K = S: nothing outside the top K, the K+1 loss is the KL of the full softmaxes.
  everything = np.argsort(-teacher_all, axis=1).astype(np.int32)
  batch_all = {"topk_species_indices": everything,
               "topk_species_logits": np.take_along_axis(teacher_all, everything, 1
                                                         ).astype(np.float32),
               "teacher_logsumexp": batch["teacher_logsumexp"]}
  got_all = losses.soft_label_distillation(losses.StudentOutputs(tf.constant(emb)), batch_all,
                                           bank, temperature=1.0, normalizer="full").numpy()
  np.testing.assert_allclose(got_all, np.sum(p_full * np.log(p_full / q_full), axis=1),
                             rtol=1e-4, atol=1e-6)
  # The renormalized top-k target differs (it drops the tail mass).
  renorm = losses.soft_label_distillation(losses.StudentOutputs(tf.constant(emb)), batch, bank,
                                          temperature=1.0, normalizer="topk").numpy()
  assert np.all(np.abs(renorm - got) > 1e-4)
  with pytest.raises(ValueError, match="temperature 1"):
    losses.soft_label_distillation(losses.StudentOutputs(tf.constant(emb)), batch, bank,
                                   temperature=2.0, normalizer="full")
  with pytest.raises(ValueError, match="teacher_logsumexp"):
    losses.soft_label_distillation(
        losses.StudentOutputs(tf.constant(emb)),
        {k: v for k, v in batch.items() if k != "teacher_logsumexp"}, bank, 1.0, "full")


def test_log1mexp_values_and_finite_gradients_near_zero():
  a = tf.constant([-1e-9, -1e-6, -0.5, -0.7, -3.0, -40.0], tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(a)
    y = losses.log1mexp(a)
    total = tf.reduce_sum(y)
  g = tape.gradient(total, a).numpy()
  want = np.log(-np.expm1(np.maximum(a.numpy().astype(np.float64), -1e300)))
  np.testing.assert_allclose(y.numpy()[1:], want[1:], rtol=1e-4, atol=1e-12)
  assert y.numpy()[0] == pytest.approx(np.log(1e-7), rel=1e-3)   # capped at -1e-7
  assert np.all(np.isfinite(g)), g
