"""What every distillation loss shares: the label bank tensors, the student outputs, the
species -> rank sums and the teacher's distribution (losses/__init__.py describes the loss
signature and the batch).

The species head at scale: with S = 454k species the logits [B, S] are never held whole.
`bank_logsumexp` (the softmax normalizer over all species) and `taxon_logsumexp` (log of the
summed exp-logits of the species of given taxa, for the hierarchical loss) loop over chunks of
`chunk_size` species (tf.while_loop) with an online max/sum, and their gradient is a second
chunked loop (tf.custom_gradient) that recomputes each chunk's logits: memory O(B x chunk x J),
J the number of taxa asked for per example, whatever S. A StudentOutputs built WITH dense
`species_logits` (tests, small banks) takes the dense path instead; both compute the same
values (tests/bioclip_lite_tf/test_losses.py checks them against each other and numpy).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

from bioclip_lite_tf.keras import tf

from formats.ranks import NUM_RANKS  # noqa: F401  (re-exported for the losses)


@dataclasses.dataclass
class LabelBankTensors:
  """species_text_embeddings float32 [S, D]; ancestors int32 [7, S]; rank_sizes ints [7]."""
  species_text_embeddings: tf.Tensor
  ancestors: tf.Tensor
  rank_sizes: Sequence[int]
  logit_scale: float
  chunk_size: int = 8192      # species per chunk of the chunked head (<= 0: one chunk)


@dataclasses.dataclass
class StudentOutputs:
  """embedding float32 [B, D]; species_logits float32 [B, S] or None (None: the losses use the
  chunked head and never form [B, S]). `cache` memoizes normalizers within one step."""
  embedding: tf.Tensor
  species_logits: Optional[tf.Tensor] = None
  cache: Dict = dataclasses.field(default_factory=dict)


def species_logits(embedding: tf.Tensor, bank: LabelBankTensors) -> tf.Tensor:
  """float32 [B, D] -> [B, S]: logit_scale * embedding @ species_text_embeddings.T."""
  return bank.logit_scale * tf.matmul(embedding, bank.species_text_embeddings, transpose_b=True)


def logits_at(outputs: StudentOutputs, bank: LabelBankTensors, indices) -> tf.Tensor:
  """The student's species logits at int32 [B, J] species rows -> float32 [B, J]."""
  indices = tf.convert_to_tensor(indices, tf.int32)
  if outputs.species_logits is not None:
    return tf.gather(outputs.species_logits, indices, batch_dims=1)
  text = tf.gather(bank.species_text_embeddings, indices)                   # [B, J, D]
  return bank.logit_scale * tf.einsum("bd,bjd->bj", outputs.embedding, text)


def _chunking(bank: LabelBankTensors):
  num_species = int(bank.species_text_embeddings.shape[0])
  chunk = int(bank.chunk_size) if int(bank.chunk_size) > 0 else num_species
  chunk = max(1, min(chunk, num_species))
  return num_species, chunk, -(-num_species // chunk)


def _grouped_logsumexp(embedding, text, scale: float, groups, targets, chunk: int,
                       num_chunks: int):
  """out[b, j] = log sum_{s: groups[s] == targets[b, j]} exp(scale * e_b . text_s), over chunks.

  targets[b, j] < 0 means every species (the full normalizer). embedding float32 [B, D], text
  float32 [S, D] (frozen: no gradient), groups int32 [S], targets int32 [B, J]. A target with no
  species gets -1e30 (finite, so no NaN reaches gradients).
  """
  text = tf.stop_gradient(tf.convert_to_tensor(text))
  batch = tf.shape(embedding)[0]
  width = tf.shape(targets)[1]
  floor = tf.constant(-1e30, tf.float32)

  def chunk_parts(e, i):
    start = i * chunk
    rows = text[start:start + chunk]                                          # [c, D]
    logits = scale * tf.matmul(e, rows, transpose_b=True)                     # [B, c]
    g = groups[start:start + chunk]
    mask = tf.logical_or(tf.equal(targets[:, :, None], g[None, None, :]),
                         targets[:, :, None] < 0)                             # [B, J, c]
    return rows, logits, mask

  @tf.custom_gradient
  def fn(e):
    def body(i, peak, total):
      _, logits, mask = chunk_parts(e, i)
      wide = tf.where(mask, logits[:, None, :], floor)
      new_peak = tf.maximum(peak, tf.reduce_max(wide, axis=-1))
      summed = tf.reduce_sum(tf.where(mask, tf.exp(wide - new_peak[:, :, None]), 0.0), axis=-1)
      return i + 1, new_peak, total * tf.exp(peak - new_peak) + summed

    zeros = tf.zeros(tf.stack([batch, width]), tf.float32)
    _, peak, total = tf.while_loop(
        lambda i, *_: i < num_chunks, body, (tf.constant(0), zeros + floor, zeros),
        parallel_iterations=1)
    out = tf.where(total > 0, peak + tf.math.log(tf.maximum(total, 1e-30)), floor)

    def grad(upstream):
      def gbody(i, acc):
        rows, logits, mask = chunk_parts(e, i)
        weight = tf.where(mask, tf.exp(tf.minimum(logits[:, None, :] - out[:, :, None], 0.0)),
                          0.0) * upstream[:, :, None]                         # [B, J, c]
        return i + 1, acc + scale * tf.matmul(tf.reduce_sum(weight, axis=1), rows)

      _, de = tf.while_loop(lambda i, _: i < num_chunks, gbody,
                            (tf.constant(0), tf.zeros_like(e)), parallel_iterations=1)
      return de

    return out, grad

  return fn(embedding)


def bank_logsumexp(outputs: StudentOutputs, bank: LabelBankTensors,
                   temperature: float = 1.0) -> tf.Tensor:
  """float32 [B]: logsumexp over ALL species of the student's logits / T (memoized)."""
  key = ("bank_logsumexp", float(temperature))
  if key not in outputs.cache:
    t = float(temperature)
    if outputs.species_logits is not None:
      value = tf.reduce_logsumexp(outputs.species_logits / t, axis=-1)
    else:
      num_species, chunk, num_chunks = _chunking(bank)
      batch = tf.shape(outputs.embedding)[0]
      value = _grouped_logsumexp(
          outputs.embedding, bank.species_text_embeddings, bank.logit_scale / t,
          tf.zeros([num_species], tf.int32), -tf.ones(tf.stack([batch, 1]), tf.int32),
          chunk, num_chunks)[:, 0]
    outputs.cache[key] = value
  return outputs.cache[key]


def taxon_logsumexp(outputs: StudentOutputs, bank: LabelBankTensors, rank: int,
                    taxa) -> tf.Tensor:
  """float32 [B, J]: log sum over the species of taxon taxa[b, j] (a row at `rank`) of
  exp(student logit); minus bank_logsumexp it is the log of the student's rank probability."""
  taxa = tf.convert_to_tensor(taxa, tf.int32)
  ancestors = bank.ancestors[rank]
  if outputs.species_logits is not None:
    by_taxon = rank_log_probs(outputs.species_logits, ancestors, int(bank.rank_sizes[rank]))
    return tf.gather(by_taxon, taxa, batch_dims=1)
  _, chunk, num_chunks = _chunking(bank)
  return _grouped_logsumexp(outputs.embedding, bank.species_text_embeddings, bank.logit_scale,
                            ancestors, taxa, chunk, num_chunks)


def log1mexp(a: tf.Tensor) -> tf.Tensor:
  """log(1 - exp(a)) for a < 0, accurate at both ends (Maechler 2012). a is capped at -1e-7
  (float32 cannot tell 1 - exp(a) from 0 closer to 0), so the value stays >= log(1e-7) and
  the gradient finite. Each branch of the tf.where gets only inputs valid for it: the other
  branch's infinite gradient would otherwise turn into NaN (0 * inf)."""
  a = tf.minimum(a, -1e-7)
  near_zero = a > -0.6931472
  a_hi = tf.where(near_zero, a, -0.6931472)
  a_lo = tf.where(near_zero, -0.6931472, a)
  return tf.where(near_zero, tf.math.log(-tf.math.expm1(a_hi)), tf.math.log1p(-tf.exp(a_lo)))


def teacher_probs(batch, temperature: float = 1.0, normalizer: str = "topk") -> tf.Tensor:
  """float32 [B, K]: the teacher's probabilities of its top-k species.

  normalizer 'topk': softmax of the K logits / T (renormalized; the rest get 0).
  normalizer 'full': exp(logit - teacher_logsumexp), the exact probabilities under the
  softmax over ALL species (needs batch['teacher_logsumexp'], teacher cache format 2). The
  cached normalizer is exact at T = 1 only, so 'full' refuses any other temperature.
  """
  if normalizer == "topk":
    return teacher_topk_probs(batch, temperature)
  if normalizer != "full":
    raise ValueError(f"teacher normalizer {normalizer!r}: use 'full' or 'topk'")
  if float(temperature) != 1.0:
    raise ValueError(f"normalizer='full' needs temperature 1 (got {temperature}): the cached "
                     "teacher_logsumexp is the normalizer at T = 1; use normalizer='topk' for "
                     "another temperature")
  if "teacher_logsumexp" not in batch:
    raise ValueError("normalizer='full' needs the batch's teacher_logsumexp (teacher cache "
                     "format 2); this dataset has none, use normalizer='topk'")
  lse = tf.cast(batch["teacher_logsumexp"], tf.float32)
  logits = tf.cast(batch["topk_species_logits"], tf.float32)
  return tf.exp(tf.minimum(logits - lse[:, None], 0.0))


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
