"""The device label bank: taxonomy + species text embeddings in a form a phone loads quickly.

One Python writer and one Python reader (react-bio-clip/src/label_bank.ts is the JS reader).

label_bank.json
  format, format_version (1), embed_dim (D), dtype ("int8" | "float16"), logit_scale (the
  multiplier, exp already applied), ranks (the 7 names), teacher {id, real_weights, ...},
  taxa {rank: {names (full lineage names, unique per rank), parents (row of the previous rank,
  -1 for kingdom), common_names ("" when unknown)}},
  species_embeddings {file: "label_bank.bin", shape: [N_species, D], offset, dtype,
  scales_offset, scales_dtype: "float32" (int8 only)}, bin {bytes, sha256}, source {...}

label_bank.bin (little-endian)
  int8:    N*D int8 at `offset` (row-major), zero padding to a multiple of 4, then N float32
           per-row scales at `scales_offset`; row i = int8[i] * scale[i]. scale = max|row| / 127
           (symmetric per row), so each value is within scale/2 of the teacher's.
  float16: N*D IEEE half at `offset`.

Only species embeddings ship: the device ranks species and sums their probabilities up the parent
links for the higher ranks. At 454k species x 512 the int8 bin is 233 MB (float32 would be
930 MB); species are converted in chunks, so a memory-mapped source is never loaded whole.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from formats import atomic, hashing
from formats.errors import FormatError, check_version
from formats.ranks import RANKS
from formats.taxonomy import RankTable, make_rank_table, species_ancestors

FORMAT = "bioclip-lite-device-label-bank"
FORMAT_VERSION = 1
JSON_NAME = "label_bank.json"
BIN_NAME = "label_bank.bin"
DTYPES = ("int8", "float16", "int4")
CHUNK_ROWS = 65536
TEACHER_KEYS = ("id", "pretrained", "real_weights", "embed_dim", "checkpoint_sha256")


def quantize_rows_int8(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """float32 [n, D] -> (int8 [n, D], float32 [n] scales), symmetric per row."""
  rows = np.asarray(rows, np.float32)
  scales = np.abs(rows).max(axis=1) / 127.0
  safe = np.where(scales > 0, scales, 1.0)
  q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
  return q, scales.astype(np.float32)


def pack_int4(q: np.ndarray) -> np.ndarray:
  """int8 [n, d] values in [-7, 7] -> uint8 [n, ceil(d / 2)]: two signed 4-bit values a byte,
  the even column in the low nibble (spec A of the device bank; an odd d pads a zero)."""
  q = np.asarray(q, np.int8)
  if q.shape[1] % 2:
    q = np.concatenate([q, np.zeros((q.shape[0], 1), np.int8)], axis=1)
  nibbles = (q.astype(np.int16) & 0xF).astype(np.uint8)
  return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)


# byte -> its (low, high) signed nibbles, so unpacking is one table lookup per byte
_NIBBLES = np.array([[(b & 0xF) - 16 * ((b & 0xF) > 7), (b >> 4) - 16 * ((b >> 4) > 7)]
                     for b in range(256)], np.int8)


def unpack_int4(packed: np.ndarray, dims: int) -> np.ndarray:
  """uint8 [n, ceil(d / 2)] -> int8 [n, d] (the inverse of pack_int4)."""
  packed = np.asarray(packed, np.uint8)
  return _NIBBLES[packed].reshape(packed.shape[0], -1)[:, :dims]


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceLabelBank:
  """A device label bank read back. species_embeddings: float32 [N, D], dequantized."""
  meta: dict
  tables: Tuple[RankTable, ...]
  species_embeddings: np.ndarray

  def table(self, rank: str) -> RankTable:
    return self.tables[RANKS.index(rank)]

  @property
  def logit_scale(self) -> float:
    return float(self.meta["logit_scale"])

  @property
  def embed_dim(self) -> int:
    return int(self.meta["embed_dim"])

  def species_ancestors(self) -> np.ndarray:
    return species_ancestors({t.rank: t.parents for t in self.tables})


def _write_encoded_bin(f, rows: np.ndarray, dtype: str, stored_dim: int,
                       scales: Optional[np.ndarray], projection: Optional[np.ndarray],
                       mean: Optional[np.ndarray]) -> dict:
  """Rows already in their stored form (int8 [n, d], uint8 [n, ceil(d/2)] int4, float16)."""
  n = rows.shape[0]
  expected = {"int8": (np.int8, stored_dim), "int4": (np.uint8, (stored_dim + 1) // 2),
              "float16": (np.float16, stored_dim)}[dtype]
  if rows.dtype != expected[0] or rows.shape[1] != expected[1]:
    raise FormatError(f"stored {dtype} rows must be {np.dtype(expected[0])} [N, {expected[1]}], "
                      f"got {rows.dtype} {list(rows.shape)}")
  for start in range(0, n, CHUNK_ROWS):
    f.write(np.ascontiguousarray(rows[start:start + CHUNK_ROWS]).astype(
        rows.dtype.newbyteorder("<")).tobytes())
  written = rows.shape[1] * rows.dtype.itemsize * n
  pad = (-written) % 4
  f.write(b"\0" * pad)
  layout = {"file": BIN_NAME, "shape": [int(n), int(stored_dim)], "stored_dim": int(stored_dim),
            "offset": 0, "dtype": dtype}
  end = written + pad
  if dtype in ("int8", "int4"):
    if scales is None or len(scales) != n:
      raise FormatError(f"{dtype} rows need one float32 scale per row ({n})")
    layout["scales_offset"], layout["scales_dtype"] = int(end), "float32"
    f.write(np.asarray(scales, "<f4").tobytes())
    end += 4 * n
  if projection is not None:
    if mean is None or projection.shape[1] != stored_dim or mean.shape != (projection.shape[0],):
      raise FormatError(f"projection {list(projection.shape)} / mean must be [D, {stored_dim}] "
                        "and [D]")
    f.write(np.asarray(projection, "<f4").tobytes())
    f.write(np.asarray(mean, "<f4").tobytes())
    layout["projection"] = {"file": BIN_NAME, "offset": int(end),
                            "shape": [int(projection.shape[0]), int(stored_dim)],
                            "mean_offset": int(end + 4 * projection.size)}
  return layout


def _write_bin(f, species_embeddings: np.ndarray, dtype: str, log: Callable[[str], None]) -> dict:
  n, d = species_embeddings.shape
  scales = []
  for start in range(0, n, CHUNK_ROWS):
    chunk = np.asarray(species_embeddings[start:start + CHUNK_ROWS], np.float32)
    if dtype == "int8":
      q, s = quantize_rows_int8(chunk)
      f.write(q.tobytes())
      scales.append(s)
    else:
      f.write(chunk.astype("<f2").tobytes())
    if start and start % (CHUNK_ROWS * 4) == 0:
      log(f"device label bank: {start}/{n} species")
  layout = {"file": BIN_NAME, "shape": [int(n), int(d)], "offset": 0, "dtype": dtype}
  if dtype == "int8":
    pad = (-n * d) % 4
    f.write(b"\0" * pad)
    layout["scales_offset"] = int(n * d + pad)
    layout["scales_dtype"] = "float32"
    f.write(np.concatenate(scales).astype("<f4").tobytes())
  return layout


def write_device_label_bank(out_dir: str, tables: Sequence[RankTable],
                            species_embeddings: np.ndarray, logit_scale: float, teacher: dict,
                            dtype: str = "int8", source: Optional[dict] = None,
                            log: Callable[[str], None] = lambda msg: None,
                            scales: Optional[np.ndarray] = None,
                            projection: Optional[np.ndarray] = None,
                            mean: Optional[np.ndarray] = None) -> dict:
  """Writes OUT/label_bank.json + .bin (each atomically, the .json last). Returns the json.

  tables: the 7 RankTables; species_embeddings: float32 [N_species, D] (may be memory-mapped),
  quantized here to `dtype` (int8 or float16); or rows already in their stored form
  (bioclip_lite_tf.export.compact_bank): int8 [N, d] or uint8 [N, ceil(d/2)] (int4) with
  `scales` float32 [N], or float16 [N, d], optionally with `projection` float32 [D, d] and
  `mean` float32 [D] (scores are q . mean + (q @ projection) . row).
  """
  if dtype not in DTYPES:
    raise FormatError(f"--dtype={dtype!r}: must be one of {DTYPES}")
  if species_embeddings.ndim != 2 or species_embeddings.shape[0] != len(tables[-1]):
    raise FormatError(f"species embeddings {list(species_embeddings.shape)} do not match the "
                      f"{len(tables[-1])} species of the taxonomy")
  encoded = species_embeddings.dtype != np.float32
  if not encoded and (dtype == "int4" or projection is not None or scales is not None):
    raise FormatError("int4 rows, scales and projections are written from encoded rows "
                      "(bioclip_lite_tf.export.compact_bank.encode), not float32 embeddings")
  if encoded:
    stored_dim = (species_embeddings.shape[1] * 2 if dtype == "int4"
                  else species_embeddings.shape[1])
    if projection is not None:
      stored_dim = int(projection.shape[1])  # int4 rows of an odd width carry a pad nibble
    embed_dim = int(projection.shape[0]) if projection is not None else stored_dim
  else:
    embed_dim = int(species_embeddings.shape[1])
  os.makedirs(out_dir, exist_ok=True)
  bin_path = os.path.join(out_dir, BIN_NAME)
  layout = {}
  if encoded:
    write = lambda f: layout.update(_write_encoded_bin(f, species_embeddings, dtype, stored_dim,
                                                       scales, projection, mean))
  else:
    write = lambda f: layout.update(_write_bin(f, species_embeddings, dtype, log))
  atomic.write_with(bin_path, write)
  projection_layout = layout.pop("projection", None)
  meta = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "embed_dim": embed_dim,
      "dtype": dtype,
      "logit_scale": float(logit_scale),
      "ranks": list(RANKS),
      "teacher": {k: teacher[k] for k in TEACHER_KEYS if k in teacher},
      "taxa": {t.rank: {"names": list(t.names), "parents": [int(p) for p in t.parents.tolist()],
                        "common_names": list(t.common_names)} for t in tables},
      "species_embeddings": layout,
      "projection": projection_layout,
      "bin": {"bytes": os.path.getsize(bin_path), "sha256": hashing.sha256_file(bin_path)},
      "source": dict(source or {}),
  }
  atomic.write_text(os.path.join(out_dir, JSON_NAME),
                    json.dumps(meta, ensure_ascii=False, separators=(",", ":")))
  return meta


def read_device_label_bank(out_dir: str) -> DeviceLabelBank:
  """Reads and checks OUT/label_bank.json + .bin; embeddings dequantized to float32 [N, D]."""
  json_path = os.path.join(out_dir, JSON_NAME)
  if not os.path.isfile(json_path):
    raise FormatError(f"{json_path}: missing")
  meta = check_version(atomic.read_json(json_path), json_path, "device label bank",
                       FORMAT_VERSION, "Re-export it with this version's bioclip_lite_tf.")
  layout = meta["species_embeddings"]
  n, d = layout["shape"]
  projection = meta.get("projection")
  if projection is None and d != meta["embed_dim"]:
    raise FormatError(f"{json_path}: species_embeddings.shape[1]={d} but "
                      f"embed_dim={meta['embed_dim']}")
  bin_path = os.path.join(out_dir, layout["file"])
  if not os.path.isfile(bin_path):
    raise FormatError(f"{bin_path}: missing")
  with open(bin_path, "rb") as f:
    raw = f.read()
  if meta["dtype"] == "int8":
    q = np.frombuffer(raw, np.int8, n * d, layout["offset"]).reshape(n, d)
    scales = np.frombuffer(raw, "<f4", n, layout["scales_offset"])
    emb = q.astype(np.float32) * scales[:, None]
  elif meta["dtype"] == "int4":
    packed = np.frombuffer(raw, np.uint8, n * ((d + 1) // 2), layout["offset"])
    scales = np.frombuffer(raw, "<f4", n, layout["scales_offset"])
    emb = unpack_int4(packed.reshape(n, -1), d).astype(np.float32) * scales[:, None]
  elif meta["dtype"] == "float16":
    emb = np.frombuffer(raw, "<f2", n * d, layout["offset"]).reshape(n, d).astype(np.float32)
  else:
    raise FormatError(f"{json_path}: dtype {meta['dtype']!r} not in {DTYPES}")
  if projection is not None:
    full, stored = projection["shape"]
    if stored != d or full != meta["embed_dim"]:
      raise FormatError(f"{json_path}: projection shape {projection['shape']} does not map "
                        f"{d} stored dims to embed_dim {meta['embed_dim']}")
    p = np.frombuffer(raw, "<f4", full * stored, projection["offset"]).reshape(full, stored)
    mean = np.frombuffer(raw, "<f4", full, projection["mean_offset"])
    emb = mean[None, :] + emb @ p.T  # q . emb == q . mean + (q @ P) . row
  tables = tuple(make_rank_table(rank, **meta["taxa"][rank]) for rank in RANKS)
  if len(tables[-1]) != n:
    raise FormatError(f"{json_path}: {len(tables[-1])} species names but {n} embedding rows")
  return DeviceLabelBank(meta, tables, emb)
