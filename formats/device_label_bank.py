"""The device label bank: taxonomy + species text embeddings in a form a phone loads quickly.

One Python writer and one Python reader (react-bio-clip/src/label_bank.ts is the JS reader).
Format version 2 (docs/FORMATS.md section 4). Version 1 (every lineage string inside
label_bank.json, 30-40 MB of JSON at 454k species) is refused.

label_bank.json (small: no per-taxon strings)
  format, format_version (2), embed_dim (D), dtype (== rows.dtype), logit_scale (the multiplier,
  exp already applied), ranks (the 7 names), teacher {id, real_weights, ...},
  counts {rank: N_rank}, num_species,
  rows {file: "label_bank.bin", dtype: "int8" | "int4" | "float16", stored_dim d, offset,
        scales_offset (int8/int4), bytes},
  projection: null | {file: "label_bank.bin", offset, shape [D, d], mean_offset},
  names {file: "names.bin", leaf: "last word", ranks {rank: {parents_offset, offsets_offset,
         blob_offset, blob_bytes}}},
  common_names: null | {file: "common_names.bin", ranks {rank: {offsets_offset, blob_offset,
         blob_bytes}}},
  files {name: {bytes, sha256}}, source {...}

label_bank.bin (little-endian)
  rows at `offset`, row-major [N, d]:
    int8:    N*d int8; row ~= q * scale, scale = max|row| / 127 (symmetric per row).
    int4:    N*ceil(d/2) bytes, two signed 4-bit values per byte (low nibble first; an odd d pads
             the last high nibble with 0), values in [-7, 7]; row ~= q * scale, scale = max|row|/7.
    float16: N*d IEEE halves.
  then zero padding to a multiple of 4 and, for int8/int4, N float32 scales at `scales_offset`;
  then, with a projection, P float32 [D, d] at projection.offset and mean float32 [D] at
  projection.mean_offset. Rows then hold P^T (x - mean) and a query q (D) is scored as
  q . mean + (q @ P) . row, which approximates q . x.

names.bin / common_names.bin (little-endian), per rank in RANKS order, each part 4-aligned:
  names.bin:        parents int32 [N_rank] (-1 for kingdom), offsets uint32 [N_rank + 1], blob.
  common_names.bin: offsets uint32 [N_rank + 1], blob.
  blob: UTF-8, entry i is blob[offsets[i]:offsets[i+1]]; entries are also separated by '\n'
  (offsets[i+1] - 1 is the '\n' after entry i), so a reader may decode a rank's blob at once and
  split it. names.bin entries are LEAF names: the last word of the full lineage name (the species
  epithet alone for species); the full name of a taxon is its parent's full name + " " + leaf.
  common_names.bin entries are "" when unknown; the file is absent (common_names null) when no
  taxon has a common name.

Only species embeddings ship: the device ranks species and sums their probabilities up the parent
links for the higher ranks. At 454k species x 512 the int8 bin is 233 MB (float32 would be
930 MB); species are converted in chunks, so a memory-mapped source is never loaded whole.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from formats import atomic, hashing
from formats.errors import FormatError, check_version
from formats.ranks import RANKS
from formats.taxonomy import RankTable, make_rank_table, species_ancestors

FORMAT = "bioclip-lite-device-label-bank"
FORMAT_VERSION = 2
JSON_NAME = "label_bank.json"
BIN_NAME = "label_bank.bin"
NAMES_NAME = "names.bin"
COMMON_NAMES_NAME = "common_names.bin"
DTYPES = ("int8", "int4", "float16")
CHUNK_ROWS = 65536
TEACHER_KEYS = ("id", "pretrained", "real_weights", "embed_dim", "checkpoint_sha256")
REMEDY = ("Re-export it with this version's bioclip_lite_tf (python -m bioclip_lite_tf.export, or "
          "python -m bioclip_lite_tf.device_label_bank for the bank alone).")


def quantize_rows_int8(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """float32 [n, d] -> (int8 [n, d], float32 [n] scales), symmetric per row."""
  return _quantize(rows, 127)


# int4 clipping: each row's scale is max|x| / 7 times the factor, of these, with the least squared
# error (15 levels are few: clipping the largest values buys a finer step for the rest; measured
# in bench/label_bank_compact.py).
INT4_CLIP_FACTORS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def quantize_rows_int4(rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """float32 [n, d] -> (int8 [n, d] values in [-7, 7], float32 [n] scales), row ~= q * scale.

  Symmetric per row; the scale is the least-squares choice among INT4_CLIP_FACTORS.
  """
  rows = np.asarray(rows, np.float32)
  full = np.abs(rows).max(axis=1) / 7.0 if rows.size else np.zeros(len(rows), np.float32)
  full = np.where(full > 0, full, 1.0).astype(np.float32)
  best_q = best_s = best_err = None
  for factor in INT4_CLIP_FACTORS:
    s = full * np.float32(factor)
    q = np.clip(np.rint(rows / s[:, None]), -7, 7)
    err = np.sum((q * s[:, None] - rows) ** 2, axis=1)
    if best_err is None:
      best_q, best_s, best_err = q, s, err
    else:
      better = err < best_err
      best_q[better], best_s[better], best_err[better] = q[better], s[better], err[better]
  best_s[~np.any(rows != 0, axis=1)] = 0.0
  return best_q.astype(np.int8), best_s.astype(np.float32)


def _quantize(rows: np.ndarray, levels: int) -> Tuple[np.ndarray, np.ndarray]:
  rows = np.asarray(rows, np.float32)
  scales = np.abs(rows).max(axis=1) / float(levels)
  safe = np.where(scales > 0, scales, 1.0)
  q = np.clip(np.rint(rows / safe[:, None]), -levels, levels).astype(np.int8)
  return q, scales.astype(np.float32)


def pack_int4(q: np.ndarray) -> np.ndarray:
  """int8 [n, d] in [-7, 7] -> uint8 [n, ceil(d/2)], low nibble first."""
  n, d = q.shape
  if d % 2:
    q = np.concatenate([q, np.zeros((n, 1), np.int8)], axis=1)
  nib = (q.astype(np.int16) & 0xF).astype(np.uint8)
  return (nib[:, 0::2] | (nib[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, d: int) -> np.ndarray:
  """uint8 [n, ceil(d/2)] -> int8 [n, d] (sign-extended nibbles)."""
  lo = (packed & 0xF).astype(np.int8)
  hi = (packed >> 4).astype(np.int8)
  out = np.empty((packed.shape[0], packed.shape[1] * 2), np.int8)
  out[:, 0::2] = np.where(lo > 7, lo - 16, lo)
  out[:, 1::2] = np.where(hi > 7, hi - 16, hi)
  return out[:, :d]


@dataclasses.dataclass(frozen=True)
class Projection:
  """Rows store P^T (x - mean); matrix float32 [D, d] (orthonormal columns), mean float32 [D]."""
  matrix: np.ndarray
  mean: np.ndarray



@dataclasses.dataclass(frozen=True, eq=False)
class DeviceLabelBank:
  """A device label bank read back.

  species_embeddings: float32 [N, D], what the device scores against in the model's space
  (dequantized rows; with a projection, mean + P @ row, so q . it == the device's score).
  stored_rows: the rows as stored (int8 [N, d] for int8/int4, float16 for float16);
  scales: float32 [N] or None; projection: Projection or None.
  """
  meta: dict
  tables: Tuple[RankTable, ...]
  species_embeddings: np.ndarray
  stored_rows: np.ndarray
  scales: Optional[np.ndarray]
  projection: Optional[Projection]

  def table(self, rank: str) -> RankTable:
    return self.tables[RANKS.index(rank)]

  @property
  def logit_scale(self) -> float:
    return float(self.meta["logit_scale"])

  @property
  def embed_dim(self) -> int:
    return int(self.meta["embed_dim"])

  @property
  def dtype(self) -> str:
    return str(self.meta["rows"]["dtype"])

  def species_ancestors(self) -> np.ndarray:
    return species_ancestors({t.rank: t.parents for t in self.tables})


def _pad4(f, written: int) -> int:
  pad = (-written) % 4
  f.write(b"\0" * pad)
  return written + pad


def encode_row_chunks(species_embeddings: np.ndarray, dtype: str,
                      projection: Optional[Projection] = None, chunk_rows: int = CHUNK_ROWS):
  """Yields (start, stored, scales) per chunk of rows, as the bank stores them: projected
  (`(row - mean) @ matrix`) when a projection is given, then int8 / packed int4 (scales float32
  per row) or float16 (scales None). The one encoder of the writer and of export.compact_bank."""
  n = species_embeddings.shape[0]
  for start in range(0, n, chunk_rows):
    chunk = np.asarray(species_embeddings[start:start + chunk_rows], np.float32)
    if projection is not None:
      chunk = ((chunk - projection.mean) @ projection.matrix).astype(np.float32)
    if dtype == "int8":
      q, scales = quantize_rows_int8(chunk)
    elif dtype == "int4":
      q, scales = quantize_rows_int4(chunk)
      q = pack_int4(q)
    else:
      q, scales = chunk.astype("<f2"), None
    yield start, q, scales


def _write_rows(f, species_embeddings: np.ndarray, dtype: str, projection: Optional[Projection],
                log: Callable[[str], None]) -> Tuple[dict, Optional[dict]]:
  n, big_d = species_embeddings.shape
  d = big_d if projection is None else int(projection.matrix.shape[1])
  scales = []
  written = 0
  for start, q, s in encode_row_chunks(species_embeddings, dtype, projection):
    data = q.tobytes()
    if s is not None:
      scales.append(s)
    f.write(data)
    written += len(data)
    if start and start % (CHUNK_ROWS * 4) == 0:
      log(f"device label bank: {start}/{n} species")
  rows = {"file": BIN_NAME, "dtype": dtype, "stored_dim": int(d), "offset": 0,
          "bytes": int(written)}
  written = _pad4(f, written)
  if dtype in ("int8", "int4"):
    rows["scales_offset"] = int(written)
    data = (np.concatenate(scales) if scales else np.zeros(0)).astype("<f4").tobytes()
    f.write(data)
    written += len(data)
  proj = None
  if projection is not None:
    proj = {"file": BIN_NAME, "offset": int(written), "shape": [int(big_d), int(d)]}
    data = np.asarray(projection.matrix, "<f4").tobytes()
    f.write(data)
    written += len(data)
    proj["mean_offset"] = int(written)
    f.write(np.asarray(projection.mean, "<f4").tobytes())
  return rows, proj


def leaf_names(tables: Sequence[RankTable]) -> List[List[str]]:
  """Per rank, each taxon's leaf name; checks that full name == parent's full name + ' ' + leaf."""
  out = []
  for depth, table in enumerate(tables):
    leaves = []
    for row, full in enumerate(table.names):
      if "\n" in full:
        raise FormatError(f"{table.rank} row {row}: name {full!r} holds a newline")
      if depth == 0:
        if " " in full:
          raise FormatError(f"kingdom row {row}: name {full!r} must be one word")
        leaves.append(full)
        continue
      parent = int(table.parents[row])
      above = tables[depth - 1].names
      if not 0 <= parent < len(above):
        raise FormatError(f"{table.rank} row {row}: parent {parent} is not a "
                          f"{tables[depth - 1].rank} row")
      prefix = above[parent] + " "
      leaf = full[len(prefix):]
      if not full.startswith(prefix) or not leaf or " " in leaf:
        raise FormatError(f"{table.rank} row {row}: name {full!r} is not its parent's name "
                          f"{above[parent]!r} plus one word")
      leaves.append(leaf)
    out.append(leaves)
  return out


def _string_part(strings: Sequence[str]) -> Tuple[bytes, bytes]:
  """(offsets uint32 [n + 1], blob) for '\n'-terminated UTF-8 entries."""
  encoded = [s.encode("utf-8") + b"\n" for s in strings]
  offsets = np.zeros(len(encoded) + 1, np.int64)
  np.cumsum([len(e) for e in encoded], out=offsets[1:])
  if offsets[-1] >= 2 ** 32:
    raise FormatError("names blob exceeds 4 GiB")
  return offsets.astype("<u4").tobytes(), b"".join(encoded)


def _write_strings(f, per_rank: Sequence[Sequence[str]], parents: Optional[Sequence[np.ndarray]]
                   ) -> dict:
  ranks = {}
  written = 0
  for depth, strings in enumerate(per_rank):
    part = {}
    if parents is not None:
      part["parents_offset"] = written
      data = np.asarray(parents[depth], "<i4").tobytes()
      f.write(data)
      written += len(data)
    offsets, blob = _string_part(strings)
    part["offsets_offset"] = written
    f.write(offsets)
    written += len(offsets)
    part["blob_offset"] = written
    part["blob_bytes"] = len(blob)
    f.write(blob)
    written = _pad4(f, written + len(blob))
    ranks[RANKS[depth]] = part
  return ranks


def write_device_label_bank(out_dir: str, tables: Sequence[RankTable],
                            species_embeddings: np.ndarray, logit_scale: float, teacher: dict,
                            dtype: str = "int8", source: Optional[dict] = None,
                            log: Callable[[str], None] = lambda msg: None,
                            projection: Optional[Projection] = None) -> dict:
  """Writes OUT/label_bank.json + label_bank.bin + names.bin (+ common_names.bin when any taxon
  has a common name), each atomically, the .json last. Returns the json.

  tables: the 7 RankTables; species_embeddings: float32 [N_species, D] (may be memory-mapped);
  projection: None, or rows are stored as projection.matrix^T (x - projection.mean).
  """
  if dtype not in DTYPES:
    raise FormatError(f"--dtype={dtype!r}: must be one of {DTYPES}")
  if len(tables) != len(RANKS) or [t.rank for t in tables] != list(RANKS):
    raise FormatError(f"device label bank: tables must be the ranks {list(RANKS)}")
  if species_embeddings.ndim != 2 or species_embeddings.shape[0] != len(tables[-1]):
    raise FormatError(f"species embeddings {list(species_embeddings.shape)} do not match the "
                      f"{len(tables[-1])} species of the taxonomy")
  big_d = int(species_embeddings.shape[1])
  if projection is not None:
    m = np.asarray(projection.matrix)
    if m.ndim != 2 or m.shape[0] != big_d or np.asarray(projection.mean).shape != (big_d,):
      raise FormatError(f"projection {list(m.shape)} / mean "
                        f"{list(np.asarray(projection.mean).shape)} do not fit D={big_d}")
  leaves = leaf_names(tables)
  os.makedirs(out_dir, exist_ok=True)
  written_files: Dict[str, str] = {}

  bin_path = os.path.join(out_dir, BIN_NAME)
  layout: dict = {}
  atomic.write_with(bin_path, lambda f: layout.update(
      zip(("rows", "projection"), _write_rows(f, species_embeddings, dtype, projection, log))))
  written_files[BIN_NAME] = bin_path

  names_path = os.path.join(out_dir, NAMES_NAME)
  names = {"file": NAMES_NAME, "leaf": "last word (the species epithet alone for species)"}
  atomic.write_with(names_path, lambda f: names.update(
      ranks=_write_strings(f, leaves, [t.parents for t in tables])))
  written_files[NAMES_NAME] = names_path

  common_path = os.path.join(out_dir, COMMON_NAMES_NAME)
  common = None
  if any(c for t in tables for c in t.common_names):
    common = {"file": COMMON_NAMES_NAME}
    atomic.write_with(common_path, lambda f: common.update(
        ranks=_write_strings(f, [list(t.common_names) for t in tables], None)))
    written_files[COMMON_NAMES_NAME] = common_path
  elif os.path.exists(common_path):
    os.remove(common_path)  # a stale one from an earlier bank in the same folder

  meta = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "embed_dim": big_d,
      "dtype": dtype,
      "logit_scale": float(logit_scale),
      "ranks": list(RANKS),
      "teacher": {k: teacher[k] for k in TEACHER_KEYS if k in teacher},
      "counts": {t.rank: len(t) for t in tables},
      "num_species": len(tables[-1]),
      "rows": layout["rows"],
      "projection": layout["projection"],
      "names": names,
      "common_names": common,
      "files": {name: {"bytes": os.path.getsize(path), "sha256": hashing.sha256_file(path)}
                for name, path in written_files.items()},
      "source": dict(source or {}),
  }
  atomic.write_text(os.path.join(out_dir, JSON_NAME),
                    json.dumps(meta, ensure_ascii=False, separators=(",", ":")))
  return meta


def _need(raw: bytes, end: int, path: str, what: str) -> None:
  if end > len(raw):
    raise FormatError(f"{path}: has {len(raw)} bytes but the {what} end at byte {end}")


def _read_strings(raw: bytes, part: dict, n: int, path: str, what: str) -> List[str]:
  off = int(part["offsets_offset"])
  _need(raw, off + 4 * (n + 1), path, f"{what} offsets")
  offsets = np.frombuffer(raw, "<u4", n + 1, off).astype(np.int64)
  start = int(part["blob_offset"])
  size = int(part["blob_bytes"])
  _need(raw, start + size, path, f"{what} blob")
  if offsets[0] != 0 or offsets[-1] != size or np.any(np.diff(offsets) < 1):
    raise FormatError(f"{path}: {what} offsets are not increasing from 0 to {size}")
  text = raw[start:start + size].decode("utf-8")
  out = text.split("\n")
  if len(out) != n + 1 or out[-1] != "":
    raise FormatError(f"{path}: {what} holds {len(out) - 1} entries, expected {n}")
  return out[:-1]


def read_device_label_bank(out_dir: str) -> DeviceLabelBank:
  """Reads and checks OUT/label_bank.json and its files; see DeviceLabelBank."""
  json_path = os.path.join(out_dir, JSON_NAME)
  if not os.path.isfile(json_path):
    raise FormatError(f"{json_path}: missing")
  meta = atomic.read_json(json_path)
  if meta.get("format") != FORMAT:
    raise FormatError(f"{json_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
  check_version(meta, json_path, "device label bank", FORMAT_VERSION, REMEDY)
  if meta.get("ranks") != list(RANKS):
    raise FormatError(f"{json_path}: ranks must be {list(RANKS)}, got {meta.get('ranks')}")
  raws = {}
  for name, info in meta["files"].items():
    path = os.path.join(out_dir, name)
    if not os.path.isfile(path):
      raise FormatError(f"{path}: missing (label_bank.json lists it)")
    with open(path, "rb") as f:
      raws[name] = f.read()
    if len(raws[name]) != info["bytes"]:
      raise FormatError(f"{path}: {len(raws[name])} bytes, label_bank.json records {info['bytes']}")
  counts = [int(meta["counts"][r]) for r in RANKS]
  n, big_d = int(meta["num_species"]), int(meta["embed_dim"])
  if counts[-1] != n:
    raise FormatError(f"{json_path}: counts.species={counts[-1]} but num_species={n}")
  rows = meta["rows"]
  dtype, d = rows["dtype"], int(rows["stored_dim"])
  raw = raws[rows["file"]]
  bin_path = os.path.join(out_dir, rows["file"])
  off = int(rows["offset"])
  scales = None
  if dtype in ("int8", "int4"):
    width = d if dtype == "int8" else (d + 1) // 2
    _need(raw, off + n * width, bin_path, f"{dtype} rows")
    _need(raw, int(rows["scales_offset"]) + 4 * n, bin_path, "per-row scales")
    stored = np.frombuffer(raw, np.int8 if dtype == "int8" else np.uint8, n * width, off)
    stored = stored.reshape(n, width)
    if dtype == "int4":
      stored = unpack_int4(stored, d)
    scales = np.frombuffer(raw, "<f4", n, int(rows["scales_offset"]))
    emb = stored.astype(np.float32) * scales[:, None]
  elif dtype == "float16":
    _need(raw, off + 2 * n * d, bin_path, "float16 rows")
    stored = np.frombuffer(raw, "<f2", n * d, off).reshape(n, d)
    emb = stored.astype(np.float32)
  else:
    raise FormatError(f"{json_path}: rows.dtype {dtype!r} not in {DTYPES}")
  projection = None
  if meta.get("projection"):
    p = meta["projection"]
    praw = raws[p["file"]]
    if list(p["shape"]) != [big_d, d]:
      raise FormatError(f"{json_path}: projection.shape {p['shape']} is not [{big_d}, {d}]")
    _need(praw, int(p["offset"]) + 4 * big_d * d, bin_path, "projection")
    _need(praw, int(p["mean_offset"]) + 4 * big_d, bin_path, "projection mean")
    projection = Projection(
        np.frombuffer(praw, "<f4", big_d * d, int(p["offset"])).reshape(big_d, d),
        np.frombuffer(praw, "<f4", big_d, int(p["mean_offset"])))
    emb = projection.mean[None, :] + emb @ projection.matrix.T
  elif d != big_d:
    raise FormatError(f"{json_path}: rows.stored_dim={d} but embed_dim={big_d} and no projection")

  names_meta = meta["names"]
  nraw = raws[names_meta["file"]]
  names_path = os.path.join(out_dir, names_meta["file"])
  common_meta = meta.get("common_names")
  tables = []
  previous: Optional[Tuple[str, ...]] = None
  for depth, rank in enumerate(RANKS):
    part = names_meta["ranks"][rank]
    size = counts[depth]
    _need(nraw, int(part["parents_offset"]) + 4 * size, names_path, f"{rank} parents")
    parents = np.frombuffer(nraw, "<i4", size, int(part["parents_offset"]))
    leaves = _read_strings(nraw, part, size, names_path, f"{rank} names")
    if depth == 0:
      if np.any(parents != -1):
        raise FormatError(f"{names_path}: kingdom parents must be -1")
      full = tuple(leaves)
    else:
      bad = np.flatnonzero((parents < 0) | (parents >= len(previous)))
      if len(bad):
        raise FormatError(f"{names_path}: {rank} row {bad[0]} has parent {parents[bad[0]]}, not "
                          f"a {RANKS[depth - 1]} row")
      full = tuple(f"{previous[p]} {leaf}" for p, leaf in zip(parents.tolist(), leaves))
    if common_meta:
      craw = raws[common_meta["file"]]
      common = _read_strings(craw, common_meta["ranks"][rank], size,
                             os.path.join(out_dir, common_meta["file"]), f"{rank} common names")
    else:
      common = [""] * size
    tables.append(make_rank_table(rank, full, parents, common))
    previous = full
  return DeviceLabelBank(meta, tuple(tables), emb, stored, scales, projection)
