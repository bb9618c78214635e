"""The teacher cache directory (format version 1): manifest, rows in parts, shard markers.

One writer (teacher_cache, and the generated test caches, through `write_part`,
`write_shard_done` and `write_manifest`) and one reader (tfds_treeoflife, through `read_manifest`,
`read_part` and `RowChecker`). The full layout is in docs/FORMATS.md section 1:

  CACHE/manifest.json                                  see docs/FORMATS.md
  CACHE/label_bank/                                    formats.label_bank
  CACHE/rows/shard-IIIII-of-NNNNN/part-PPPPPP.npz      one part: PART_ARRAYS + SPAN_ARRAYS
  CACHE/rows/shard-IIIII-of-NNNNN.done.json            written last, when the shard is complete
  CACHE/skipped/shard-IIIII-of-NNNNN.jsonl             {key, reason, where} per skipped sample
"""
from __future__ import annotations

import collections
import dataclasses
import io
import json
import os
import re
import zipfile
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from formats import atomic
from formats.errors import FormatError, check_version
from formats.fs import LOCAL
from formats.ranks import NUM_RANKS, RANKS

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS_DIR = "rows"
SKIPPED_DIR = "skipped"
# The arrays of one part: the rows ...
PART_ARRAYS = ("key", "image_bytes", "image_offsets", "taxon_index", "common_name",
               "teacher_embedding", "topk_species_indices", "topk_species_logits")
# ... and the resume bookkeeping teacher_cache adds (readers may ignore them).
SPAN_ARRAYS = ("span", "skipped_key", "skipped_reason", "skipped_where")

SHARD_DIR_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
PART_RE = re.compile(r"^part-(\d{6})\.npz$")


def shard_name(index: int, num_shards: int) -> str:
  return f"shard-{index:05d}-of-{num_shards:05d}"


def part_name(number: int) -> str:
  return f"part-{number:06d}.npz"


def done_path(cache_dir: str, shard: str) -> str:
  return os.path.join(cache_dir, ROWS_DIR, shard + ".done.json")


def skipped_path(cache_dir: str, shard: str) -> str:
  return os.path.join(cache_dir, SKIPPED_DIR, shard + ".jsonl")


# ----------------------------------------------------------------------------------------------
# Writer

def write_part(path: str, arrays: Dict[str, np.ndarray]) -> None:
  """Writes one part-*.npz atomically. arrays: at least PART_ARRAYS (see docs/FORMATS.md)."""
  missing = [a for a in PART_ARRAYS if a not in arrays]
  if missing:
    raise ValueError(f"{path}: a part needs the arrays {missing}")
  # Zip in memory first (a part is a few MB): a write that fails on a full disk then fails in
  # one plain write, with no half-closed ZipFile left for the garbage collector to trip over.
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  atomic.write_bytes(path, buf.getvalue())


def write_shard_done(cache_dir: str, shard: str, done: dict) -> None:
  atomic.write_json(done_path(cache_dir, shard), done)


def write_skipped(cache_dir: str, shard: str, records) -> None:
  """records: dicts {key, reason, where}, one JSON line each."""
  atomic.write_bytes(skipped_path(cache_dir, shard),
                     "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records
                             ).encode("utf-8"))


def write_manifest(cache_dir: str, manifest: dict) -> None:
  atomic.write_json(os.path.join(cache_dir, MANIFEST), dict(manifest, format_version=FORMAT_VERSION))


# ----------------------------------------------------------------------------------------------
# Reader

def read_manifest(cache_dir: str, fs=LOCAL) -> dict:
  """manifest.json, checked for its format version. FormatError naming the file otherwise."""
  path = os.path.join(os.fspath(cache_dir).rstrip("/"), MANIFEST)
  if not fs.exists(path):
    raise FormatError(f"{path}: missing (is this a teacher_cache output directory?)")
  return check_version(atomic.read_json(path, fs), path, "teacher cache", FORMAT_VERSION,
                       "Re-run teacher_cache of this version into a new --out_dir.")


def read_part(path: str, fs=LOCAL) -> Dict[str, np.ndarray]:
  """Reads one part-*.npz completely (one part is the unit of streaming)."""
  try:
    with fs.open(path, "rb") as f:
      data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
      return {name: z[name] for name in z.files}
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise FormatError(f"{path}: unreadable .npz ({e})") from e


def read_part_span(path: str) -> Tuple[int, int]:
  """[first, end) sample ordinals a committed part covers (teacher_cache's resume point)."""
  with np.load(path, allow_pickle=False) as z:
    start, stop = (int(v) for v in z["span"])
  return start, stop


def iter_rows(part: Dict[str, np.ndarray]) -> Iterator[Tuple[int, str]]:
  """Yields (row, key) of a part in stored order."""
  for i, key in enumerate(part["key"]):
    yield i, str(key)


def image_bytes_of(part: Dict[str, np.ndarray], row: int) -> bytes:
  off = part["image_offsets"]
  return part["image_bytes"][int(off[row]):int(off[row + 1])].tobytes()


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
    """Returns the part's row count; raises FormatError on the first fault found."""
    missing = [a for a in PART_ARRAYS if a not in part]
    if missing:
      raise FormatError(f"{path}: missing arrays {missing}")
    n = len(part["key"])
    off = part["image_offsets"]
    if len(set(part["key"].tolist())) != n:
      dup = next(k for k, c in collections.Counter(part["key"].tolist()).items() if c > 1)
      raise FormatError(f"{path}: two rows share the same sample key {dup!r} (keys must be "
                        "unique in the cache)")

    def bad(msg: str, row: Optional[int] = None):
      where = f" (row {row}, key {str(part['key'][row])!r})" if row is not None else ""
      raise FormatError(f"{path}: {msg}{where}")

    if off.shape != (n + 1,) or off[0] != 0 or off[-1] != part["image_bytes"].shape[0]:
      bad(f"image_offsets must be [n+1] from 0 to len(image_bytes); got shape {off.shape}")
    if np.any(np.diff(off) <= 0):
      bad("empty or negative image span", int(np.argmax(np.diff(off) <= 0)))
    self._check_taxa(part["taxon_index"], n, bad)
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

  def _check_taxa(self, ti: np.ndarray, n: int, bad) -> None:
    if ti.shape != (n, NUM_RANKS) or not np.issubdtype(ti.dtype, np.integer):
      bad(f"taxon_index must be int [{n}, {NUM_RANKS}], got {ti.dtype} {list(ti.shape)}")
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
