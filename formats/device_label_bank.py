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
DTYPES = ("int8", "float16")
CHUNK_ROWS = 65536
TEACHER_KEYS = ("id", "pretrained", "real_weights", "embed_dim", "checkpoint_sha256")


def quantize_rows_int8(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """float32 [n, D] -> (int8 [n, D], float32 [n] scales), symmetric per row."""
  rows = np.asarray(rows, np.float32)
  scales = np.abs(rows).max(axis=1) / 127.0
  safe = np.where(scales > 0, scales, 1.0)
  q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
  return q, scales.astype(np.float32)


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
                            log: Callable[[str], None] = lambda msg: None) -> dict:
  """Writes OUT/label_bank.json + .bin (each atomically, the .json last). Returns the json.

  tables: the 7 RankTables; species_embeddings: float32 [N_species, D] (may be memory-mapped).
  """
  if dtype not in DTYPES:
    raise FormatError(f"--dtype={dtype!r}: must be one of {DTYPES}")
  if species_embeddings.ndim != 2 or species_embeddings.shape[0] != len(tables[-1]):
    raise FormatError(f"species embeddings {list(species_embeddings.shape)} do not match the "
                      f"{len(tables[-1])} species of the taxonomy")
  os.makedirs(out_dir, exist_ok=True)
  bin_path = os.path.join(out_dir, BIN_NAME)
  layout = {}
  atomic.write_with(bin_path, lambda f: layout.update(_write_bin(f, species_embeddings, dtype,
                                                                   log)))
  meta = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "embed_dim": int(species_embeddings.shape[1]),
      "dtype": dtype,
      "logit_scale": float(logit_scale),
      "ranks": list(RANKS),
      "teacher": {k: teacher[k] for k in TEACHER_KEYS if k in teacher},
      "taxa": {t.rank: {"names": list(t.names), "parents": [int(p) for p in t.parents.tolist()],
                        "common_names": list(t.common_names)} for t in tables},
      "species_embeddings": layout,
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
  if d != meta["embed_dim"]:
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
  elif meta["dtype"] == "float16":
    emb = np.frombuffer(raw, "<f2", n * d, layout["offset"]).reshape(n, d).astype(np.float32)
  else:
    raise FormatError(f"{json_path}: dtype {meta['dtype']!r} not in {DTYPES}")
  tables = tuple(make_rank_table(rank, **meta["taxa"][rank]) for rank in RANKS)
  if len(tables[-1]) != n:
    raise FormatError(f"{json_path}: {len(tables[-1])} species names but {n} embedding rows")
  return DeviceLabelBank(meta, tables, emb)
