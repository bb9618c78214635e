"""Validation metrics: training's numbers come from the shared implementation, so they equal
evaluate's on the same model, photos and label bank."""
import numpy as np

from bioclip_lite_tf import losses
from bioclip_lite_tf import metrics as shared
from bioclip_lite_tf.train import validation
from bioclip_lite_tf.keras import tf
from formats.ranks import RANKS

# species 0, 1 in genus 0; species 2 in genus 1 (other ranks: one taxon each)
ANCESTORS = np.array([[0, 0, 0]] * 5 + [[0, 0, 1], [0, 1, 2]], np.int32)


def test_teacher_rank_prediction_sums_mass_over_the_genus():
  # Species 2 has the single highest logit, but species 0 + 1 together carry more mass.
  idx = np.array([[2, 0, 1]])
  p = shared.teacher_topk_probs(np.log(np.array([[0.4, 0.35, 0.25]])))
  assert shared.teacher_rank_topk(idx, p, ANCESTORS[-1], 1)[0, 0] == 2   # species: top logit
  assert shared.teacher_rank_topk(idx, p, ANCESTORS[-2], 2)[0].tolist() == [0, 1]  # 0.60 > 0.40
  assert shared.teacher_rank_topk(idx, p, ANCESTORS[0], 2)[0].tolist() == [0, -1]


class Identity(tf.Module):
  def __call__(self, x, training=False):
    return tf.math.l2_normalize(tf.reshape(x, (-1, 4)), axis=-1)


def test_validation_equals_the_shared_accumulator_and_a_dense_computation():
  rng = np.random.default_rng(0)
  text = rng.normal(size=(3, 4)).astype(np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  bank = losses.LabelBankTensors(tf.constant(text), tf.constant(ANCESTORS), (1,) * 5 + (2, 3),
                                 20.0)
  n = 16
  emb = rng.normal(size=(n, 4)).astype(np.float32)
  labels = np.stack([ANCESTORS[:, s] for s in rng.integers(0, 3, n)])
  t_idx = np.stack([rng.permutation(3)[:2] for _ in range(n)]).astype(np.int32)
  t_log = np.sort(rng.normal(size=(n, 2)), 1)[:, ::-1].astype(np.float32)
  t_emb = rng.normal(size=(n, 4)).astype(np.float32)
  batches = [{"image": tf.constant(emb[i:i + 5]), "labels": tf.constant(labels[i:i + 5]),
              "topk_species_indices": tf.constant(t_idx[i:i + 5]),
              "topk_species_logits": tf.constant(t_log[i:i + 5]),
              "teacher_embedding": tf.constant(t_emb[i:i + 5])} for i in range(0, n, 5)]
  v = validation.evaluate(Identity(), batches, bank, ANCESTORS)
  # Dense reference, written out here: softmax over species, genus = sum of its species.
  e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  p = np.exp(20 * e @ text.T)
  p /= p.sum(1, keepdims=True)
  genus = np.stack([p[:, 0] + p[:, 1], p[:, 2]], 1)
  assert v["n"] == n
  assert v["student_vs_truth"]["species"] == np.mean(p.argmax(1) == labels[:, -1])
  assert v["student_vs_truth"]["genus"] == np.mean(genus.argmax(1) == labels[:, -2])
  t_species = t_idx[np.arange(n), 0]
  assert v["top1_agreement"]["species"] == np.mean(p.argmax(1) == t_species)
  cos = np.sum(e * t_emb, 1) / np.linalg.norm(t_emb, axis=1)
  np.testing.assert_allclose(v["embedding_cosine_mean"], cos.mean(), rtol=1e-5)
  # The same numbers as evaluate's accumulator fed the same logits.
  acc = shared.MetricsAccumulator(shared.RankAggregator.from_matrix(ANCESTORS, bank.rank_sizes),
                                  20.0)
  acc.update(20 * e @ text.T, labels, t_idx, t_log, e, t_emb)
  ref = acc.result()
  for r in RANKS:
    assert v["top1_agreement"][r] == ref["accuracy"]["student_vs_teacher"]["top1"][r]
  assert v["hierarchy"]["hdist_at_1"] == ref["hierarchy"]["hdist_at_1"]
