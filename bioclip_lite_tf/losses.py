"""Distillation losses, one function each, chosen by name from `LOSSES`.

Every loss has the signature `fn(outputs, batch, bank, **params) -> float32 [B]` (per example;
the trainer averages over the global batch with tf.nn.compute_average_loss), where

  outputs.embedding       float32 [B, D]  L2-normalized student embedding
  outputs.species_logits  float32 [B, S]  logit_scale * embedding @ species_text_embeddings.T
  batch['teacher_embedding']     float32 [B, D]  L2-normalized
  batch['topk_species_indices']  int32 [B, K]    the teacher's top-k species rows
  batch['topk_species_logits']   float32 [B, K]  the teacher's (scaled) logits for them
  batch['labels']                int32 [B, 7]    true rows, kingdom..species

The label bank is the student's zero-shot head: frozen teacher text embeddings, so taxa can be
added later without retraining. Its logit_scale is the teacher's (also frozen).

Teacher distribution from top-k logits: softmax over the K logits only, the rest of the species
get zero probability (the top-k renormalized). With K >= 5 and BioCLIP's logit scale ~100 the
mass outside the top-k is small, and nothing better is known about it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Sequence

from bioclip_lite_tf.keras import tf

NUM_RANKS = 7


@dataclasses.dataclass
class LabelBankTensors:
  """species_text_embeddings float32 [S, D]; ancestors int32 [7, S]; rank_sizes ints [7]."""
  species_text_embeddings: tf.Tensor
  ancestors: tf.Tensor
  rank_sizes: Sequence[int]
  logit_scale: float


@dataclasses.dataclass
class StudentOutputs:
  embedding: tf.Tensor        # float32 [B, D]
  species_logits: tf.Tensor   # float32 [B, S]


def species_logits(embedding: tf.Tensor, bank: LabelBankTensors) -> tf.Tensor:
  """float32 [B, D] -> [B, S]: logit_scale * embedding @ species_text_embeddings.T."""
  return bank.logit_scale * tf.matmul(embedding, bank.species_text_embeddings, transpose_b=True)


def rank_log_probs(species_log_probs: tf.Tensor, ancestors: tf.Tensor, num_taxa: int) -> tf.Tensor:
  """Log of species probabilities summed up to one rank: float32 [B, S] -> [B, N_rank].

  A segment log-sum-exp over the species of each taxon (tf.math.unsorted_segment_*; memory
  O(B * S), no dense [S, N_rank] matrix, so it scales to 454k species). A taxon without species
  gets a very negative finite value rather than -inf, so no NaN reaches the gradients.
  """
  by_species = tf.transpose(species_log_probs)                      # [S, B]
  peak = tf.stop_gradient(tf.math.unsorted_segment_max(by_species, ancestors, num_taxa))
  peak = tf.maximum(peak, -1e30)                                    # empty segments: -FLT_MAX
  summed = tf.math.unsorted_segment_sum(tf.exp(by_species - tf.gather(peak, ancestors)),
                                        ancestors, num_taxa)        # [N_rank, B]
  return tf.transpose(peak + tf.math.log(tf.maximum(summed, 1e-30)))


def rank_probs(species_probs: tf.Tensor, ancestors: tf.Tensor, num_taxa: int) -> tf.Tensor:
  """Species probabilities summed up to one rank: float32 [B, S] -> [B, N_rank] (for metrics)."""
  return tf.transpose(tf.math.unsorted_segment_sum(tf.transpose(species_probs), ancestors,
                                                   num_taxa))


def teacher_topk_probs(batch, temperature: float = 1.0) -> tf.Tensor:
  """float32 [B, K]: softmax of the teacher's top-k logits / T (the rest of the species: 0)."""
  return tf.nn.softmax(batch["topk_species_logits"] / temperature, axis=-1)


# ---------------------------------------------------------------------------------------------

def embedding_distillation(outputs: StudentOutputs, batch, bank: LabelBankTensors) -> tf.Tensor:
  """1 - cos(student, teacher) per example; both embeddings are unit vectors. [B]."""
  del bank
  teacher = tf.math.l2_normalize(batch["teacher_embedding"], axis=-1)
  return 1.0 - tf.reduce_sum(outputs.embedding * teacher, axis=-1)


def soft_label_distillation(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                            temperature: float = 2.0) -> tf.Tensor:
  """T^2 * KL(teacher || student) over species at temperature T. [B].

  Teacher: softmax of its top-k logits / T (zero elsewhere). Student: softmax over all S
  species of its logits / T. KL = sum_k p_k (log p_k - log q_{idx_k}); the T^2 factor keeps
  gradient magnitudes comparable across temperatures (Hinton et al. 2015).
  """
  del bank
  t = float(temperature)
  teacher_log_p = tf.nn.log_softmax(batch["topk_species_logits"] / t, axis=-1)
  student_log_q = tf.nn.log_softmax(outputs.species_logits / t, axis=-1)
  student_at_topk = tf.gather(student_log_q, batch["topk_species_indices"], batch_dims=1)
  kl = tf.reduce_sum(tf.exp(teacher_log_p) * (teacher_log_p - student_at_topk), axis=-1)
  return (t * t) * kl


def hierarchical(outputs: StudentOutputs, batch, bank: LabelBankTensors,
                 teacher_weight: float = 1.0, label_weight: float = 1.0,
                 rank_weights: Sequence[float] = ()) -> tf.Tensor:
  """Cross-entropy at every rank, of the student's species distribution summed up the tree. [B].

  For rank r, q_r = segment sums of softmax(species_logits) over the label bank's parent links.
  Teacher term: -sum_k p_k log q_r[ancestor_r(idx_k)] with p = softmax(top-k logits), which is
  the cross-entropy against the teacher's own rank distribution (its top-k mass summed the same
  way). Label term: -log q_r[true row at r]. Mean over ranks (weighted by rank_weights if set).
  """
  weights = list(rank_weights) or [1.0] * NUM_RANKS
  if len(weights) != NUM_RANKS:
    raise ValueError(f"hierarchical: rank_weights needs {NUM_RANKS} values, got {weights}")
  species_log_q = tf.nn.log_softmax(outputs.species_logits, axis=-1)
  teacher_p = teacher_topk_probs(batch)
  total = 0.0
  for r in range(NUM_RANKS):
    if r == NUM_RANKS - 1:
      log_q = species_log_q
    else:
      log_q = rank_log_probs(species_log_q, bank.ancestors[r], bank.rank_sizes[r])
    term = 0.0
    if teacher_weight:
      teacher_rows = tf.gather(bank.ancestors[r], batch["topk_species_indices"])   # [B, K]
      term += teacher_weight * -tf.reduce_sum(
          teacher_p * tf.gather(log_q, teacher_rows, batch_dims=1), axis=-1)
    if label_weight:
      term += label_weight * -tf.gather(log_q, batch["labels"][:, r:r + 1], batch_dims=1)[:, 0]
    total += weights[r] * term
  return total / float(sum(weights))


def contrastive(outputs: StudentOutputs, batch, bank: LabelBankTensors) -> tf.Tensor:
  """CLIP-style symmetric InfoNCE between images and their species' frozen text embeddings. [B].

  Logits = logit_scale * image_emb @ text_emb[true species of each example].T, [B, B]. Photos
  of the same species in one batch are all positives (targets spread evenly over them), so
  duplicates are not pushed apart. Per example: mean of its image->text row loss and its
  text->image column loss.
  """
  species = batch["labels"][:, -1]
  text = tf.gather(bank.species_text_embeddings, species)                    # [B, D]
  logits = bank.logit_scale * tf.matmul(outputs.embedding, text, transpose_b=True)
  same = tf.cast(tf.equal(species[:, None], species[None, :]), tf.float32)   # [B, B]
  targets = same / tf.reduce_sum(same, axis=-1, keepdims=True)
  image_to_text = -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1), axis=-1)
  text_to_image = -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=0), axis=0)
  return 0.5 * (image_to_text + text_to_image)


LOSSES: Dict[str, Callable[..., tf.Tensor]] = {
    "embedding": embedding_distillation,
    "soft_label": soft_label_distillation,
    "hierarchical": hierarchical,
    "contrastive": contrastive,
}


def total_loss(outputs: StudentOutputs, batch, bank: LabelBankTensors, loss_config,
               global_batch_size: int) -> Dict[str, tf.Tensor]:
  """Weighted sum of the configured losses, each averaged over the global batch.

  loss_config: {name: {weight, **params}}; weight 0 skips a loss. Returns {'total': scalar,
  name: scalar (unweighted, averaged)} for logging.
  """
  out = {}
  total = 0.0
  for name, params in loss_config.items():
    if name not in LOSSES:
      raise ValueError(f"unknown loss {name!r} in config.losses; known: {sorted(LOSSES)}")
    params = dict(params)
    weight = float(params.pop("weight", 1.0))
    if weight == 0:
      continue
    per_example = LOSSES[name](outputs, batch, bank, **params)
    value = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
    out[name] = value
    total += weight * value
  out["total"] = total
  return out
