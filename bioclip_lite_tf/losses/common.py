"""What every distillation loss shares: the label bank tensors, the student outputs, the
species -> rank sums and the teacher's top-k distribution (losses/__init__.py describes the
loss signature and the batch)."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from bioclip_lite_tf.keras import tf

from formats.ranks import NUM_RANKS  # noqa: F401  (re-exported for the losses)


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
