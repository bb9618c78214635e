"""Validation metrics: rank-level predictions sum probability mass up the tree."""
import numpy as np

from bioclip_lite_tf import losses
from bioclip_lite_tf.train import validation as metrics
from bioclip_lite_tf.keras import tf

# species 0, 1 in genus 0; species 2 in genus 1 (other ranks: one taxon each)
ANCESTORS = np.array([[0, 0, 0]] * 5 + [[0, 0, 1], [0, 1, 2]], np.int32)


def test_teacher_rank_prediction_sums_mass_over_the_genus():
  # Species 2 has the single highest logit, but species 0 + 1 together carry more mass.
  idx = np.array([[2, 0, 1]])
  logits = np.log(np.array([[0.4, 0.35, 0.25]]))
  pred = metrics.teacher_rank_predictions(idx, logits, ANCESTORS)
  assert pred[0, -1] == 2          # species: the top logit
  assert pred[0, -2] == 0          # genus: 0.60 (species 0 + 1) beats 0.40
  assert list(pred[0, :5]) == [0] * 5


def test_student_predictor_agrees_with_a_dense_computation():
  rng = np.random.default_rng(0)
  text = rng.normal(size=(3, 4)).astype(np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  bank = losses.LabelBankTensors(tf.constant(text), tf.constant(ANCESTORS), (1,) * 5 + (2, 3),
                                 20.0)

  class Identity(tf.Module):
    def __call__(self, x, training=False):
      return tf.math.l2_normalize(tf.reshape(x, (-1, 4)), axis=-1)

  emb = rng.normal(size=(16, 4)).astype(np.float32)
  preds, _ = metrics.make_student_predictor(Identity(), bank)(tf.constant(emb))
  e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  p = np.exp(20 * e @ text.T)
  p /= p.sum(1, keepdims=True)
  genus = np.stack([p[:, 0] + p[:, 1], p[:, 2]], 1)
  np.testing.assert_array_equal(preds.numpy()[:, -1], p.argmax(1))
  np.testing.assert_array_equal(preds.numpy()[:, -2], genus.argmax(1))
