"""Compact encodings of the species rows of a device label bank (numpy only).

A species row x (float32 [D], unit norm) is stored as one of:

  float16            x in IEEE half                                       2 D bytes
  int8 / int4        q * scale, q int8 in [-127, 127] or int4 in [-7, 7]  D or D/2 bytes + 4
                     (symmetric per row: scale = max|x| / 127 or / 7)
  pca<d>_int8|int4   z = P^T (x - mean) quantized as above, with P float32 [D, d] the top-d
                     principal axes of the bank and mean float32 [D] its mean row (both fitted
                     on the bank itself, stored once: 4 (D d + D) bytes)

What the device computes for a query q (float32 [D]) is always
  score(q, row) = q . mean + (q @ P) . (q_row * scale_row)
(no projection: mean = 0, P = identity), so ranking with the decoded compact bank is exactly this
module's `CompactBank.scores`. This is what docs/FORMATS.md's device label bank stores as
rows{dtype, stored_dim, scales} and projection{shape [D, d], mean}; the writer is
formats.device_label_bank.write_device_label_bank. The choice of the default option is measured
by bench/label_bank_compact.py (bench/results/label_bank_scale.json, key `compact`).

Everything works in chunks of rows, so a memory-mapped 454k x 768 bank is never in memory as
float32 more than one chunk at a time (the encoded rows are).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional, Tuple

import numpy as np

from formats import device_label_bank as device_format

CHUNK_ROWS = 32768
ROTATION_SEED = 0
DTYPES = ("float16", "int8", "int4")
# Measured default (bench/label_bank_compact.py, bench/results/label_bank_scale.json
# compact_bench.default): no option within 64 MB with names reached top-1 agreement >= 0.99 on
# the generated 454k bank, so this is the within-budget option with the best worse-of-the-two
# agreement (demo bank 1.0, generated bank 0.63). Re-run the bench and update it on a real bank.
DEFAULT_COMPACT = "pca96_int8"
_OPTION_RE = re.compile(r"^(?:pca(?P<dims>[1-9][0-9]*)_)?(?P<dtype>float16|int8|int4)$")


class CompactOptionError(ValueError):
  """A compact option name or dtype/dims combination that cannot be encoded."""


def parse_option(option: str) -> Tuple[str, int]:
  """'int8' -> ('int8', 0); 'pca128_int4' -> ('int4', 128); 0 dims = no projection."""
  m = _OPTION_RE.match(option or "")
  if not m:
    raise CompactOptionError(
        f"compact option {option!r}: expected float16, int8, int4 or pca<d>_int8|int4|float16 "
        f"(e.g. pca128_int4), or 'default' ({DEFAULT_COMPACT})")
  return m.group("dtype"), int(m.group("dims") or 0)


def option_name(dtype: str, dims: int) -> str:
  return f"pca{dims}_{dtype}" if dims else dtype


# ----------------------------------------------------------------------------------------------
# Row quantizers (symmetric per row)

def stored_row_bytes(dtype: str, dims: int) -> int:
  """Bytes of one stored row (without its scale)."""
  return {"float16": 2 * dims, "int8": dims, "int4": (dims + 1) // 2}[dtype]


def encoded_bytes(num_species: int, embed_dim: int, dtype: str, dims: int) -> dict:
  """Bytes of the rows, scales and projection an option stores for N species (analytic; the
  same layout as the writer: rows padded to a multiple of 4, then float32 scales)."""
  d = dims or embed_dim
  rows = num_species * stored_row_bytes(dtype, d)
  rows += (-rows) % 4
  scales = 4 * num_species if dtype in ("int8", "int4") else 0
  projection = 4 * (embed_dim * d + embed_dim) if dims else 0
  return {"rows": rows, "scales": scales, "projection": projection,
          "total": rows + scales + projection}


# ----------------------------------------------------------------------------------------------
# PCA fitted on the bank

def pca_basis(rows: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> Tuple[np.ndarray, np.ndarray]:
  """rows float32 [n, D] (may be memory-mapped) -> (mean float64 [D], axes float64 [D, D]).

  The axes are the eigenvectors of the rows' covariance (accumulated in float64 chunk by
  chunk) by decreasing eigenvalue, each sign fixed (largest entry positive) so that fitting
  twice gives the same bytes. Fit once, then fit_pca(..., basis=) for any number of dims.
  """
  n, embed_dim = rows.shape
  total = np.zeros(embed_dim, np.float64)
  gram = np.zeros((embed_dim, embed_dim), np.float64)
  for start in range(0, n, chunk_rows):
    chunk = np.asarray(rows[start:start + chunk_rows], np.float64)
    total += chunk.sum(axis=0)
    gram += chunk.T @ chunk
  mean = total / n
  values, vectors = np.linalg.eigh(gram / n - np.outer(mean, mean))
  axes = vectors[:, np.argsort(values)[::-1]]
  signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(embed_dim)])
  return mean, axes * np.where(signs == 0, 1.0, signs)


def fit_pca(rows: np.ndarray, dims: int, chunk_rows: int = CHUNK_ROWS,
            basis: Optional[Tuple[np.ndarray, np.ndarray]] = None
            ) -> Tuple[np.ndarray, np.ndarray]:
  """rows float32 [n, D] -> (mean float32 [D], P float32 [D, dims]).

  P spans the top-`dims` principal axes of the bank (pca_basis, or `basis` when given), turned
  by a fixed random rotation of those dims (seed ROTATION_SEED). Without the turn the first
  axes hold most of the variance, so a per-row scale set by them rounds the last axes to zero
  (measured on a generated 50k bank: pca128_int4 agreed with float32 on 0.39 of queries
  unrotated, 0.67 rotated); rotated, every stored dim has about the same variance, and
  q . mean + (q @ P) . row is unchanged in exact arithmetic.
  """
  embed_dim = rows.shape[1]
  if not 0 < dims <= embed_dim:
    raise CompactOptionError(f"projection to {dims} dims: must be in [1, {embed_dim}]")
  mean, axes = basis if basis is not None else pca_basis(rows, chunk_rows)
  rotation, _ = np.linalg.qr(np.random.default_rng(ROTATION_SEED).standard_normal((dims, dims)))
  return mean.astype(np.float32), np.ascontiguousarray(axes[:, :dims] @ rotation, np.float32)


# ----------------------------------------------------------------------------------------------
# The encoded bank

@dataclasses.dataclass(frozen=True, eq=False)
class CompactBank:
  """Species rows as the device label bank stores them.

  dtype: "float16" | "int8" | "int4"; embed_dim: D; stored_dim: d (== D without projection).
  rows: float16 [n, d] | int8 [n, d] | uint8 [n, ceil(d / 2)] (int4, two values a byte, low
    nibble first: formats.device_label_bank.pack_int4).
  scales: float32 [n] (int8 / int4), else None.
  projection: float32 [D, d] or None; mean: float32 [D] or None (both or neither).
  """
  dtype: str
  embed_dim: int
  stored_dim: int
  rows: np.ndarray
  scales: Optional[np.ndarray]
  projection: Optional[np.ndarray]
  mean: Optional[np.ndarray]

  @property
  def num_species(self) -> int:
    return int(self.rows.shape[0])

  @property
  def option(self) -> str:
    return option_name(self.dtype, self.stored_dim if self.projection is not None else 0)

  @property
  def bytes(self) -> dict:
    return encoded_bytes(self.num_species, self.embed_dim, self.dtype,
                         self.stored_dim if self.projection is not None else 0)

  def decode_rows(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """float32 [k, d]: stored rows start..stop dequantized (still projected, if projected)."""
    stop = self.num_species if stop is None else min(stop, self.num_species)
    rows = self.rows[start:stop]
    if self.dtype == "float16":
      return rows.astype(np.float32)
    if self.dtype == "int4":
      rows = device_format.unpack_int4(rows, self.stored_dim)
    return rows.astype(np.float32) * self.scales[start:stop, None]

  def reconstruct(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
    """float32 [k, D]: mean + P row, the D-dim rows whose dot product with q is the score."""
    rows = self.decode_rows(start, stop)
    if self.projection is None:
      return rows
    return self.mean[None, :] + rows @ self.projection.T

  def project_queries(self, queries: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """queries float32 [m, D] -> (q @ P float32 [m, d], q . mean float32 [m])."""
    queries = np.asarray(queries, np.float32)
    if self.projection is None:
      return queries, np.zeros(len(queries), np.float32)
    return queries @ self.projection, queries @ self.mean

  def scores(self, queries: np.ndarray, start: int = 0, stop: Optional[int] = None
             ) -> np.ndarray:
    """float32 [m, k]: q . mean + (q @ P) . row for rows start..stop (the device's formula)."""
    projected, offset = self.project_queries(queries)
    return projected @ self.decode_rows(start, stop).T + offset[:, None]

  def top1(self, queries: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """int64 [m]: the best species of each query, scored chunk by chunk."""
    projected, offset = self.project_queries(queries)
    return _chunked_argmax(len(projected), self.num_species, chunk_rows,
                           lambda a, b: projected @ self.decode_rows(a, b).T + offset[:, None])


def _chunked_argmax(m: int, n: int, chunk_rows: int,
                    score: Callable[[int, int], np.ndarray]) -> np.ndarray:
  best = np.full(m, -np.inf, np.float32)
  arg = np.zeros(m, np.int64)
  for start in range(0, n, chunk_rows):
    s = score(start, start + chunk_rows)
    local = s.argmax(axis=1)
    value = s[np.arange(m), local]
    better = value > best
    best[better] = value[better]
    arg[better] = local[better] + start
  return arg


def float32_top1(rows: np.ndarray, queries: np.ndarray, chunk_rows: int = CHUNK_ROWS
                 ) -> np.ndarray:
  """int64 [m]: the best row of each query by float32 dot product (the reference)."""
  queries = np.asarray(queries, np.float32)
  return _chunked_argmax(len(queries), len(rows), chunk_rows,
                         lambda a, b: queries @ np.asarray(rows[a:b], np.float32).T)


def encode(rows: np.ndarray, dtype: str = "int8", dims: int = 0,
           chunk_rows: int = CHUNK_ROWS,
           basis: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> CompactBank:
  """rows float32 [n, D] (may be memory-mapped) -> CompactBank. dims 0: no projection.

  basis: pca_basis(rows), to share one fit between several projected encodings.
  """
  if dtype not in DTYPES:
    raise CompactOptionError(f"bank dtype {dtype!r}: must be one of {DTYPES}")
  n, embed_dim = rows.shape
  if dims < 0 or dims > embed_dim:
    raise CompactOptionError(f"bank dims {dims}: must be 0 (no projection) or in "
                             f"[1, {embed_dim}] (the bank's embedding width)")
  mean = projection = None
  if dims:
    mean, projection = fit_pca(rows, dims, chunk_rows, basis)
  d = dims or embed_dim
  out_rows = np.empty((n, stored_row_bytes(dtype, d) // (2 if dtype == "float16" else 1)),
                      {"float16": np.float16, "int8": np.int8, "int4": np.uint8}[dtype])
  scales = np.empty(n, np.float32) if dtype != "float16" else None
  proj = device_format.Projection(matrix=projection, mean=mean) if dims else None
  for start, q, s in device_format.encode_row_chunks(rows, dtype, proj, chunk_rows):
    out_rows[start:start + len(q)] = q
    if scales is not None:
      scales[start:start + len(q)] = s
  return CompactBank(dtype, int(embed_dim), int(d), out_rows, scales, projection, mean)


def encode_option(rows: np.ndarray, option: str, chunk_rows: int = CHUNK_ROWS,
                  basis: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> CompactBank:
  """encode() by option name ('int8', 'pca128_int4', 'default')."""
  dtype, dims = parse_option(DEFAULT_COMPACT if option == "default" else option)
  return encode(rows, dtype, dims, chunk_rows, basis)


def top1_agreement(rows: np.ndarray, bank: CompactBank, queries: np.ndarray,
                   reference: Optional[np.ndarray] = None) -> float:
  """Fraction of queries whose best species under `bank` equals float32 scoring's.

  reference: float32_top1(rows, queries), when the caller already has it.
  """
  if reference is None:
    reference = float32_top1(rows, queries)
  return float(np.mean(bank.top1(queries) == reference))
