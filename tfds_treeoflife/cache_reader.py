"""Reads and checks a teacher_cache output directory (format version 1, docs/FORMATS.md section 1).

Only numpy, json and tf.io.gfile are used, so the cache can live on any filesystem TensorFlow
reads (local, gs://, hdfs://). This module never imports teacher_cache or torch: the format is
the contract, not the writer's code.

The cache is streamed one `part-*.npz` at a time; nothing here holds more than one part's rows.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import zipfile
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf

CACHE_FORMAT_VERSION = 1
RANKS: Tuple[str, ...] = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
TSV_HEADER = ("index", "name", "parent_index", "common_name")
PART_ARRAYS = ("key", "image_bytes", "image_offsets", "taxon_index", "common_name",
               "teacher_embedding", "topk_species_indices", "topk_species_logits")

_SHARD_DIR_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
# How many label-bank rows are checked for unit norm; the whole bank can be 454k x 768.
_NORM_CHECK_ROWS = 4096


class CacheFormatError(ValueError):
  """The teacher cache is not a valid format-1 cache. The message names the file and the fault."""


@dataclasses.dataclass(frozen=True)
class RankTable:
  """One rank's rows of the label bank `<rank>.tsv`.

  names: taxon lineage names, row order (row i is ClassLabel int i).
  parents: int32 [N], row in the previous rank's table, -1 for kingdom.
  common_names: str [N], may be empty strings.
  """
  names: List[str]
  parents: np.ndarray
  common_names: List[str]


@dataclasses.dataclass(frozen=True)
class CacheSpec:
  """What a build needs to know about a cache before reading any row.

  part_paths are sorted, so every build sees the parts in the same order.
  """
  cache_dir: str
  manifest: dict
  embed_dim: int
  topk: int
  logit_scale: float
  tables: Dict[str, RankTable]
  part_paths: Tuple[str, ...]

  @property
  def rank_sizes(self) -> Dict[str, int]:
    return {r: len(t.names) for r, t in self.tables.items()}

  def row_checker(self) -> "RowChecker":
    return RowChecker(embed_dim=self.embed_dim, topk=self.topk,
                      rank_sizes=tuple(len(self.tables[r].names) for r in RANKS),
                      parents=tuple(self.tables[r].parents for r in RANKS))


def _join(*parts: str) -> str:
  return os.path.join(*parts)


def _read_json(path: str) -> dict:
  if not tf.io.gfile.exists(path):
    raise CacheFormatError(f"{path}: missing (is this a teacher_cache output directory?)")
  try:
    with tf.io.gfile.GFile(path, "r") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise CacheFormatError(f"{path}: not valid JSON ({e})") from e


def read_rank_table(path: str, rank: str, prev_size: Optional[int]) -> RankTable:
  """Parses and checks `label_bank/<rank>.tsv`. prev_size is the previous rank's row count."""
  if not tf.io.gfile.exists(path):
    raise CacheFormatError(f"{path}: missing label bank table for rank {rank!r}")
  names: List[str] = []
  parents: List[int] = []
  commons: List[str] = []
  with tf.io.gfile.GFile(path, "r") as f:
    header = f.readline().rstrip("\n").split("\t")
    if tuple(header) != TSV_HEADER:
      raise CacheFormatError(f"{path}: header is {header}, expected {list(TSV_HEADER)}")
    for line_no, line in enumerate(f, start=2):
      line = line.rstrip("\n")
      if not line:
        continue
      cols = line.split("\t")
      if len(cols) != 4:
        raise CacheFormatError(f"{path}:{line_no}: expected 4 tab-separated columns, "
                               f"got {len(cols)}")
      try:
        index, parent = int(cols[0]), int(cols[2])
      except ValueError as e:
        raise CacheFormatError(f"{path}:{line_no}: index/parent_index not integers") from e
      if index != len(names):
        raise CacheFormatError(f"{path}:{line_no}: index {index}, expected {len(names)} "
                               "(rows must be numbered 0..N-1 in order)")
      if not cols[1]:
        raise CacheFormatError(f"{path}:{line_no}: empty taxon name")
      if prev_size is None:
        if parent != -1:
          raise CacheFormatError(f"{path}:{line_no}: kingdom rows need parent_index -1, "
                                 f"got {parent}")
      elif not 0 <= parent < prev_size:
        raise CacheFormatError(f"{path}:{line_no}: parent_index {parent} out of range "
                               f"[0, {prev_size}) of the previous rank's table")
      names.append(cols[1])
      parents.append(parent)
      commons.append(cols[3])
  if not names:
    raise CacheFormatError(f"{path}: no taxa")
  if len(set(names)) != len(names):
    dup = next(n for n in names if names.count(n) > 1)
    raise CacheFormatError(f"{path}: taxon name {dup!r} appears twice (names must be unique "
                           "lineage names, they become ClassLabel names)")
  return RankTable(names=names, parents=np.asarray(parents, np.int32), common_names=commons)


def _npy_header(path: str) -> Tuple[Tuple[int, ...], np.dtype]:
  """Reads only the header of a .npy file: (shape, dtype)."""
  with tf.io.gfile.GFile(path, "rb") as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    else:
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
  return shape, dtype


def _check_text_embeddings(path: str, rank: str, rows: int, embed_dim: int) -> None:
  if not tf.io.gfile.exists(path):
    raise CacheFormatError(f"{path}: missing text embeddings for rank {rank!r}")
  try:
    shape, dtype = _npy_header(path)
  except ValueError as e:
    raise CacheFormatError(f"{path}: not a .npy file ({e})") from e
  if dtype != np.float32 or len(shape) != 2:
    raise CacheFormatError(f"{path}: expected float32 [N, D], got {dtype} {list(shape)}")
  if shape[0] != rows:
    raise CacheFormatError(f"{path}: {shape[0]} rows but {rank}.tsv has {rows} taxa")
  if shape[1] != embed_dim:
    raise CacheFormatError(f"{path}: embedding width {shape[1]} does not match "
                           f"manifest teacher.embed_dim {embed_dim}")
  head = read_npy_head(path, _NORM_CHECK_ROWS)
  norms = np.linalg.norm(head, axis=1)
  if not np.all(np.abs(norms - 1.0) < 1e-3):
    bad = int(np.argmax(np.abs(norms - 1.0)))
    raise CacheFormatError(f"{path}: row {bad} has norm {norms[bad]:.4f}; text embeddings "
                           "must be L2-normalized")


def read_npy_head(path: str, max_rows: int) -> np.ndarray:
  """The first max_rows rows of a C-order 2-D .npy, read through gfile without loading it all."""
  with tf.io.gfile.GFile(path, "rb") as f:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(f)
    if fortran:
      raise CacheFormatError(f"{path}: Fortran-order arrays are not supported")
    rows = min(max_rows, shape[0])
    row_items = int(np.prod(shape[1:]))
    data = f.read(rows * row_items * dtype.itemsize)
  return np.frombuffer(data, dtype=dtype).reshape((rows,) + tuple(shape[1:]))


def load_npy(path: str, max_rows: Optional[int] = None) -> np.ndarray:
  """Loads a .npy through gfile; memory-maps it when it is a local file."""
  if "://" not in path:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return np.asarray(arr[:max_rows]) if max_rows is not None else arr
  with tf.io.gfile.GFile(path, "rb") as f:
    arr = np.load(io.BytesIO(f.read()), allow_pickle=False)
  return arr[:max_rows] if max_rows is not None else arr


def list_part_paths(cache_dir: str, require_complete: bool = True) -> Tuple[str, ...]:
  """Sorted part files of the cache's shards.

  With require_complete, every shard named `shard-I-of-N` must have its `.done.json` marker, so
  a build never silently uses a cache that teacher_cache is still writing (or was killed in).
  """
  rows_dir = _join(cache_dir, "rows")
  if not tf.io.gfile.isdir(rows_dir):
    raise CacheFormatError(f"{rows_dir}: missing (no cached rows)")
  shard_dirs = sorted(d.rstrip("/") for d in tf.io.gfile.listdir(rows_dir)
                      if _SHARD_DIR_RE.match(d.rstrip("/")))
  if not shard_dirs:
    raise CacheFormatError(f"{rows_dir}: no shard-IIIII-of-NNNNN directories")
  totals = {int(_SHARD_DIR_RE.match(d).group(2)) for d in shard_dirs}
  if len(totals) != 1:
    raise CacheFormatError(f"{rows_dir}: shard directories disagree on the shard count "
                           f"{sorted(totals)}")
  if require_complete:
    total = totals.pop()
    missing = [f"shard-{i:05d}-of-{total:05d}" for i in range(total)
               if not tf.io.gfile.exists(_join(rows_dir, f"shard-{i:05d}-of-{total:05d}.done.json"))]
    if missing:
      raise CacheFormatError(
          f"{rows_dir}: {len(missing)} of {total} shards are not finished (no .done.json), "
          f"e.g. {missing[0]}. Finish or resume teacher_cache first, or build with "
          "--allow_incomplete_cache.")
  parts: List[str] = []
  for d in shard_dirs:
    parts.extend(sorted(tf.io.gfile.glob(_join(rows_dir, d, "part-*.npz"))))
  if not parts:
    raise CacheFormatError(f"{rows_dir}: the shards hold no part-*.npz files")
  return tuple(parts)


def read_cache_spec(cache_dir: str, require_complete: bool = True) -> CacheSpec:
  """Reads the manifest and label bank and checks them against each other.

  Raises CacheFormatError naming the file at fault.
  """
  cache_dir = os.fspath(cache_dir).rstrip("/")
  manifest_path = _join(cache_dir, "manifest.json")
  manifest = _read_json(manifest_path)
  version = manifest.get("format_version")
  if version != CACHE_FORMAT_VERSION:
    raise CacheFormatError(f"{manifest_path}: format_version is {version!r}; this builder reads "
                           f"teacher_cache format {CACHE_FORMAT_VERSION}")
  teacher = manifest.get("teacher")
  if not isinstance(teacher, dict):
    raise CacheFormatError(f"{manifest_path}: missing the 'teacher' object")
  try:
    embed_dim = int(teacher["embed_dim"])
    logit_scale = float(teacher["logit_scale"])
    topk = int(manifest["topk"])
  except (KeyError, TypeError, ValueError) as e:
    raise CacheFormatError(f"{manifest_path}: needs integer teacher.embed_dim, number "
                           f"teacher.logit_scale and integer topk ({e!r})") from e
  if embed_dim <= 0 or topk <= 0:
    raise CacheFormatError(f"{manifest_path}: embed_dim {embed_dim} and topk {topk} must be > 0")

  tables: Dict[str, RankTable] = {}
  prev_size = None
  for rank in RANKS:
    tsv = _join(cache_dir, "label_bank", f"{rank}.tsv")
    table = read_rank_table(tsv, rank, prev_size)
    _check_text_embeddings(_join(cache_dir, "label_bank", f"{rank}.npy"), rank,
                           len(table.names), embed_dim)
    tables[rank] = table
    prev_size = len(table.names)
  if topk > len(tables["species"].names):
    raise CacheFormatError(f"{manifest_path}: topk {topk} exceeds the "
                           f"{len(tables['species'].names)} species of the label bank")
  return CacheSpec(cache_dir=cache_dir, manifest=manifest, embed_dim=embed_dim, topk=topk,
                   logit_scale=logit_scale, tables=tables,
                   part_paths=list_part_paths(cache_dir, require_complete))


@dataclasses.dataclass(frozen=True)
class RowChecker:
  """Checks one part's arrays against the label bank. Small and picklable (sent to Beam workers).

  parents[r] is int32 [N_r]: for each row of rank r, its row in rank r-1.
  """
  embed_dim: int
  topk: int
  rank_sizes: Tuple[int, ...]
  parents: Tuple[np.ndarray, ...]

  def check(self, part: Dict[str, np.ndarray], path: str) -> int:
    """Returns the part's row count; raises CacheFormatError on the first fault found."""
    missing = [a for a in PART_ARRAYS if a not in part]
    if missing:
      raise CacheFormatError(f"{path}: missing arrays {missing}")
    n = len(part["key"])
    off = part["image_offsets"]

    def bad(msg: str, row: Optional[int] = None):
      where = f" (row {row}, key {str(part['key'][row])!r})" if row is not None else ""
      raise CacheFormatError(f"{path}: {msg}{where}")

    if off.shape != (n + 1,) or off[0] != 0 or off[-1] != part["image_bytes"].shape[0]:
      bad(f"image_offsets must be [n+1] from 0 to len(image_bytes); got shape {off.shape}")
    if np.any(np.diff(off) <= 0):
      bad("empty or negative image span", int(np.argmax(np.diff(off) <= 0)))
    ti = part["taxon_index"]
    if ti.shape != (n, len(RANKS)) or not np.issubdtype(ti.dtype, np.integer):
      bad(f"taxon_index must be int [{n}, {len(RANKS)}], got {ti.dtype} {list(ti.shape)}")
    for r, rank in enumerate(RANKS):
      col = ti[:, r]
      out = (col < 0) | (col >= self.rank_sizes[r])
      if np.any(out):
        i = int(np.argmax(out))
        bad(f"taxon_index[:, {r}] ({rank}) = {int(col[i])} out of range "
            f"[0, {self.rank_sizes[r]}) of {rank}.tsv", i)
      if r > 0:
        wrong = self.parents[r][col] != ti[:, r - 1]
        if np.any(wrong):
          i = int(np.argmax(wrong))
          bad(f"{rank} row {int(col[i])} has parent {int(self.parents[r][col[i]])} in "
              f"{RANKS[r - 1]}.tsv but the row says {int(ti[i, r - 1])}", i)
    emb = part["teacher_embedding"]
    if emb.shape != (n, self.embed_dim) or emb.dtype != np.float32:
      bad(f"teacher_embedding must be float32 [{n}, {self.embed_dim}] (manifest embed_dim), "
          f"got {emb.dtype} {list(emb.shape)}")
    if not np.all(np.isfinite(emb)):
      bad("teacher_embedding has non-finite values", int(np.argmax(~np.isfinite(emb).all(1))))
    idx, logits = part["topk_species_indices"], part["topk_species_logits"]
    if idx.shape != (n, self.topk) or logits.shape != (n, self.topk):
      bad(f"topk arrays must be [{n}, {self.topk}] (manifest topk), got "
          f"{list(idx.shape)} and {list(logits.shape)}")
    out = (idx < 0) | (idx >= self.rank_sizes[-1])
    if np.any(out):
      bad(f"topk_species_indices out of range [0, {self.rank_sizes[-1]})",
          int(np.argmax(out.any(1))))
    if part["common_name"].shape != (n,):
      bad(f"common_name must be [{n}], got {list(part['common_name'].shape)}")
    return n


def load_part(path: str) -> Dict[str, np.ndarray]:
  """Reads one part-*.npz completely (one part is the unit of streaming)."""
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      return {name: z[name] for name in z.files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise CacheFormatError(f"{path}: unreadable .npz ({e})") from e


def iter_rows(part: Dict[str, np.ndarray]) -> Iterator[Tuple[int, str]]:
  """Yields (row, key) of a part in stored order."""
  for i, key in enumerate(part["key"]):
    yield i, str(key)


def image_bytes_of(part: Dict[str, np.ndarray], row: int) -> bytes:
  off = part["image_offsets"]
  return part["image_bytes"][int(off[row]):int(off[row + 1])].tobytes()

