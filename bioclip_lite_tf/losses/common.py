"""What every distillation loss shares: the label bank tensors, the student outputs, the
species -> rank sums and the teacher's distribution (losses/__init__.py describes the loss
signature and the batch).

The species head at scale: with S = 454k species the logits [B, S] are not held whole (unless
the bank's chunk_size >= S). `bank_logsumexp` (the softmax normalizer over all species) and
`taxon_logsumexp` (log of the summed exp-logits of the species of given taxa, for the
hierarchical loss) read tables that ONE fused pass (`_head_tables`, tf.while_loop over chunks of
`chunk_size` species) computes for the normalizer and every rank above species at once: each
chunk's logits [chunk, B] are formed once and folded into per-taxon running max / sum
accumulators [N_rank, B] with unsorted segment ops; the gradient (tf.custom_gradient) is a
second chunked loop that recomputes each chunk's logits once for all ranks. Cost: three
S x D x B matmuls a step (the dense head and a single chunk: two) whatever the number of ranks;
memory O(B x chunk + B x sum of the rank sizes above species) (~91.5k taxa for the 454k
bank), whatever S. With a single chunk (chunk_size <= 0 or >= S) the forward's [B, S] logits
are kept for the backward instead of recomputed. A StudentOutputs built WITH dense `species_logits`
(tests, small banks) takes the dense path instead; both compute the same values
(tests/bioclip_lite_tf/test_losses.py checks them against each other and numpy).
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
  chunk_size: int = 65536     # species per chunk of the chunked head (<= 0: one chunk)


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


_FLOOR = -1e30


def _head_tables(embedding, text, scale: float, groupings, sizes, chunk: int, num_chunks: int):
  """Every table of the head in ONE pass over the species, chunk by chunk.

  Returns (normalizer float32 [B], then one float32 [B, N_g] per grouping g), where
  normalizer[b] = log sum_s exp(scale * e_b . text_s) and
  table_g[b, n] = log sum_{s: groupings[g][s] == n} exp(scale * e_b . text_s);
  groupings: int32 [S] tensors (taxon of each species at a rank), sizes: their N_g. An empty
  taxon gets -1e30 (finite, so no NaN reaches gradients). text is frozen (no gradient).

  Each chunk's logits [c, B] are computed once for the normalizer and all the groupings (an
  online max per taxon: tf.math.unsorted_segment_max / _sum into [N_g, B] accumulators), so the
  forward costs one S x D x B matmul whatever the number of ranks, and the backward two (the
  chunk's logits recomputed, then their gradient times the chunk's rows). Memory:
  O(B x chunk + B x sum N_g); with a single chunk (chunk >= S) the [B, S] logits of the forward
  are kept for the backward instead of recomputed.
  """
  text = tf.stop_gradient(tf.convert_to_tensor(text))
  groupings = [tf.convert_to_tensor(g, tf.int32) for g in groupings]
  sizes = [int(n) for n in sizes]
  batch = tf.shape(embedding)[0]

  def chunk_logits(e, start):
    rows = text[start:start + chunk]                                          # [c, D]
    return rows, scale * tf.matmul(rows, e, transpose_b=True)                 # [c, B]

  def accumulate(logits, start, peaks, totals):
    """One chunk into the running (peak, total) of the normalizer and every grouping."""
    new_peaks, new_totals = [], []
    for g in range(len(sizes) + 1):
      if g == 0:
        cmax = tf.reduce_max(logits, axis=0, keepdims=True)                  # [1, B]
      else:
        seg = groupings[g - 1][start:start + chunk]
        cmax = tf.math.unsorted_segment_max(logits, seg, sizes[g - 1])       # [N_g, B]
      peak = tf.maximum(peaks[g], cmax) if peaks is not None else tf.maximum(cmax, _FLOOR)
      if g == 0:
        summed = tf.reduce_sum(tf.exp(logits - peak), axis=0, keepdims=True)
      else:
        summed = tf.math.unsorted_segment_sum(tf.exp(logits - tf.gather(peak, seg)), seg,
                                              sizes[g - 1])
      new_peaks.append(peak)
      new_totals.append(summed if totals is None
                        else totals[g] * tf.exp(peaks[g] - peak) + summed)
    return new_peaks, new_totals

  @tf.custom_gradient
  def fn(e):
    saved = None
    if num_chunks == 1:
      _, saved = chunk_logits(e, 0)
      peaks, totals = accumulate(saved, 0, None, None)
    else:
      shapes = [1] + sizes
      init_p = [tf.fill(tf.stack([n, batch]), tf.constant(_FLOOR, tf.float32)) for n in shapes]
      init_t = [tf.zeros(tf.stack([n, batch]), tf.float32) for n in shapes]

      def body(i, peaks, totals):
        start = i * chunk
        _, logits = chunk_logits(e, start)
        new_p, new_t = accumulate(logits, start, peaks, totals)
        return i + 1, new_p, new_t

      _, peaks, totals = tf.while_loop(lambda i, *_: i < num_chunks, body,
                                       (tf.constant(0), init_p, init_t), parallel_iterations=1)
    tables = [tf.where(t > 0, p + tf.math.log(tf.maximum(t, 1e-30)), _FLOOR)
              for p, t in zip(peaks, totals)]                                 # [N_g, B]

    def grad(*upstream):
      used = [(g, tf.transpose(tf.convert_to_tensor(u))) for g, u in enumerate(upstream)
              if u is not None]
      ups = {g: (u[None, :] if g == 0 else u) for g, u in used}              # [N_g, B]

      def chunk_grad(rows, logits, start):
        weight = tf.zeros_like(logits)                                        # [c, B]
        for g, up in ups.items():
          if g == 0:
            out, u = tables[0], up
          else:
            seg = groupings[g - 1][start:start + chunk]
            out, u = tf.gather(tables[g], seg), tf.gather(up, seg)
          weight += tf.exp(tf.minimum(logits - out, 0.0)) * u
        return scale * tf.matmul(weight, rows, transpose_a=True)              # [B, D]

      if saved is not None:
        return chunk_grad(text, saved, 0)

      def gbody(i, acc):
        start = i * chunk
        rows, logits = chunk_logits(e, start)
        return i + 1, acc + chunk_grad(rows, logits, start)

      _, de = tf.while_loop(lambda i, _: i < num_chunks, gbody,
                            (tf.constant(0), tf.zeros_like(e)), parallel_iterations=1)
      return de

    return ([tf.transpose(tables[0])[:, 0]] + [tf.transpose(t) for t in tables[1:]]), grad

  return fn(embedding)


def _chunked_tables(outputs: StudentOutputs, bank: LabelBankTensors):
  """(normalizer [B], [B, N_r] for ranks 0..5) at T = 1, one fused pass, memoized."""
  if "head_tables" not in outputs.cache:
    _, chunk, num_chunks = _chunking(bank)
    ranks = range(NUM_RANKS - 1)
    values = _head_tables(outputs.embedding, bank.species_text_embeddings, bank.logit_scale,
                          [bank.ancestors[r] for r in ranks],
                          [bank.rank_sizes[r] for r in ranks], chunk, num_chunks)
    outputs.cache["head_tables"] = (values[0], list(values[1:]))
  return outputs.cache["head_tables"]


def bank_logsumexp(outputs: StudentOutputs, bank: LabelBankTensors,
                   temperature: float = 1.0) -> tf.Tensor:
  """float32 [B]: logsumexp over ALL species of the student's logits / T (memoized)."""
  key = ("bank_logsumexp", float(temperature))
  if key not in outputs.cache:
    t = float(temperature)
    if outputs.species_logits is not None:
      value = tf.reduce_logsumexp(outputs.species_logits / t, axis=-1)
    elif t == 1.0:
      value = _chunked_tables(outputs, bank)[0]
    else:
      _, chunk, num_chunks = _chunking(bank)
      value = _head_tables(outputs.embedding, bank.species_text_embeddings,
                           bank.logit_scale / t, [], [], chunk, num_chunks)[0]
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
  if rank == NUM_RANKS - 1:
    return logits_at(outputs, bank, taxa)
  return tf.gather(_chunked_tables(outputs, bank)[1][rank], taxa, batch_dims=1)


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
