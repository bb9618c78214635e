"""The teacher cache directory (format version 2): manifest, rows in parts, shard markers.

One writer (teacher_cache, and the generated test caches, through `write_part`,
`write_shard_done` and `write_manifest`) and one reader (tfds_treeoflife, through `read_manifest`,
`read_part` and `RowChecker`). The full layout is in docs/FORMATS.md section 1:

  CACHE/manifest.json                                  see docs/FORMATS.md
  CACHE/label_bank/                                    formats.label_bank
  CACHE/taxonomy/                                      formats.taxonomy (persisted catalog taxonomy)
  CACHE/rows/shard-IIIII-of-NNNNN/part-PPPPPP.npz      one part: PART_ARRAYS + SPAN_ARRAYS
  CACHE/rows/shard-IIIII-of-NNNNN.done.json            written last, when the shard is complete
  CACHE/skipped/shard-IIIII-of-NNNNN.jsonl             {key, reason, where} per skipped sample
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import zipfile
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from formats import atomic
from formats.errors import FormatError, check_version
from formats.fs import LOCAL
from formats.ranks import NUM_RANKS, RANKS

# 2: every teacher array has a view axis V; teacher_logsumexp, view_boxes, view_flips added.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
ROWS_DIR = "rows"
SKIPPED_DIR = "skipped"
# The per-view teacher arrays (shape [n, V, ...]; view 0 is the whole photo, unflipped) ...
VIEW_ARRAYS = ("teacher_embedding", "topk_species_indices", "topk_species_logits",
               "teacher_logsumexp", "view_boxes", "view_flips")
# ... the arrays of one part: the rows ...
PART_ARRAYS = ("key", "image_bytes", "image_offsets", "taxon_index", "common_name") + VIEW_ARRAYS
# ... and the resume bookkeeping teacher_cache adds (readers may ignore them).
SPAN_ARRAYS = ("span", "skipped_key", "skipped_reason", "skipped_where")

SHARD_DIR_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
PART_RE = re.compile(r"^part-(\d{6})\.npz$")


REMEDY = ("Rebuild the cache with this version of teacher_cache (`python -m teacher_cache ... "
          "--out_dir=NEW_DIR`, a new directory); format 1 caches have no view axis and no "
          "teacher_logsumexp.")


# ----------------------------------------------------------------------------------------------
# Views (docs/FORMATS.md section 1): random-resized-crop boxes + flips, seeded per sample key

# The demo default: the whole photo plus one random crop + flip.
DEFAULT_VIEW_SCALE = (0.35, 1.0)
DEFAULT_VIEW_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def views_config(count: int, seed: int = 0, scale=DEFAULT_VIEW_SCALE, ratio=DEFAULT_VIEW_RATIO,
                 flip: bool = True) -> dict:
  """The manifest's `views` object; ValueError naming the bad value."""
  count, seed = int(count), int(seed)
  scale, ratio = [float(v) for v in scale], [float(v) for v in ratio]
  if count < 1:
    raise ValueError(f"views count must be >= 1 (view 0 is the whole photo), got {count}")
  if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
    raise ValueError(f"views scale must be [min, max] with 0 < min <= max <= 1, got {scale}")
  if len(ratio) != 2 or not 0.0 < ratio[0] <= ratio[1]:
    raise ValueError(f"views ratio must be [min, max] with 0 < min <= max, got {ratio}")
  return {"count": count, "seed": seed, "scale": scale, "ratio": ratio, "flip": bool(flip)}


def read_views(manifest: dict, where: str) -> dict:
  """The manifest's `views`, checked; FormatError naming `where`."""
  v = manifest.get("views")
  if not isinstance(v, dict):
    raise FormatError(f"{where}: missing the 'views' object (format {FORMAT_VERSION})")
  try:
    return views_config(v["count"], v["seed"], v["scale"], v["ratio"], v["flip"])
  except (KeyError, TypeError, ValueError) as e:
    raise FormatError(f"{where}: bad 'views' {v!r} ({e})") from e


def _view_rng(key: str, seed: int) -> np.random.Generator:
  digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8", "surrogateescape")).digest()
  return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def sample_views(key: str, height: int, width: int, views: dict) -> Tuple[np.ndarray, np.ndarray]:
  """(view_boxes int32 [V, 4] (y0, x0, y1, x1), view_flips uint8 [V]) of one photo.

  A function of (key, photo size, views) only, so every worker and every resumed run draws the
  same views. View 0 is (0, 0, H, W) unflipped. Views 1.. are random-resized crops: area a
  uniform fraction of scale of H*W, aspect ratio w/h log-uniform in ratio (10 tries, then the
  largest centred box whose ratio is clamped into ratio), and a left-right flip with p = 1/2.
  """
  if height < 1 or width < 1:
    raise ValueError(f"{key!r}: photo size {height}x{width}")
  count = int(views["count"])
  rng = _view_rng(key, int(views["seed"]))
  boxes = np.zeros((count, 4), np.int32)
  flips = np.zeros((count,), np.uint8)
  boxes[0] = (0, 0, height, width)
  lo, hi = math.log(views["ratio"][0]), math.log(views["ratio"][1])
  area = height * width
  for v in range(1, count):
    for _ in range(10):
      target = area * rng.uniform(views["scale"][0], views["scale"][1])
      aspect = math.exp(rng.uniform(lo, hi))
      w = int(round(math.sqrt(target * aspect)))
      h = int(round(math.sqrt(target / aspect)))
      if 0 < w <= width and 0 < h <= height:
        y0 = int(rng.integers(0, height - h + 1))
        x0 = int(rng.integers(0, width - w + 1))
        break
    else:
      aspect = width / height
      if aspect < views["ratio"][0]:
        w, h = width, max(1, min(height, int(round(width / views["ratio"][0]))))
      elif aspect > views["ratio"][1]:
        h, w = height, max(1, min(width, int(round(height * views["ratio"][1]))))
      else:
        h, w = height, width
      y0, x0 = (height - h) // 2, (width - w) // 2
    boxes[v] = (y0, x0, y0 + h, x0 + w)
    flips[v] = 1 if views["flip"] and rng.random() < 0.5 else 0
  return boxes, flips


def logsumexp(logits: np.ndarray, axis: int = -1) -> np.ndarray:
  """Stable log(sum(exp(logits))) over axis, in float64 (a reference for small banks)."""
  x = np.asarray(logits, np.float64)
  m = x.max(axis=axis, keepdims=True)
  return (np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def apply_view(pixels: np.ndarray, box, flip) -> np.ndarray:
  """uint8 [h, w, C]: the box of decoded pixels [H, W, C], then mirrored left-right if flip.

  The reference the teacher (PIL crop + FLIP_LEFT_RIGHT) and the student must both equal.
  """
  y0, x0, y1, x1 = (int(v) for v in box)
  out = pixels[y0:y1, x0:x1]
  return np.ascontiguousarray(out[:, ::-1] if int(flip) else out)


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
  """manifest: see docs/FORMATS.md section 1; `views` (views_config) is required."""
  v = manifest.get("views") or {}
  views_config(v.get("count", 0), v.get("seed", 0), v.get("scale", DEFAULT_VIEW_SCALE),
               v.get("ratio", DEFAULT_VIEW_RATIO), v.get("flip", True))
  atomic.write_json(os.path.join(cache_dir, MANIFEST), dict(manifest, format_version=FORMAT_VERSION))


# ----------------------------------------------------------------------------------------------
# Reader

def read_manifest(cache_dir: str, fs=LOCAL) -> dict:
  """manifest.json, checked for its format version. FormatError naming the file otherwise."""
  path = os.path.join(os.fspath(cache_dir).rstrip("/"), MANIFEST)
  if not fs.exists(path):
    raise FormatError(f"{path}: missing (is this a teacher_cache output directory?)")
  return check_version(atomic.read_json(path, fs), path, "teacher cache", FORMAT_VERSION, REMEDY)


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

  parents[r] is int32 [N_r]: for each row of rank r, its row in rank r-1. num_views: V.
  """
  embed_dim: int
  topk: int
  rank_sizes: Tuple[int, ...]
  parents: Tuple[np.ndarray, ...]
  num_views: int = 1

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
    self._check_views(part, n, bad)
    if part["common_name"].shape != (n,):
      bad(f"common_name must be [{n}], got {list(part['common_name'].shape)}")
    return n

  def _check_views(self, part: Dict[str, np.ndarray], n: int, bad) -> None:
    v, d, k = self.num_views, self.embed_dim, self.topk
    if part["teacher_embedding"].ndim == 2:
      bad("teacher_embedding has no view axis (a format 1 part); " + REMEDY)
    want = {"teacher_embedding": (np.float32, (n, v, d)),
            "topk_species_indices": (np.int32, (n, v, k)),
            "topk_species_logits": (np.float32, (n, v, k)),
            "teacher_logsumexp": (np.float32, (n, v)),
            "view_boxes": (np.int32, (n, v, 4)),
            "view_flips": (np.uint8, (n, v))}
    for name, (dtype, shape) in want.items():
      a = part[name]
      if a.dtype != dtype or a.shape != shape:
        bad(f"{name} must be {np.dtype(dtype).name} {list(shape)} (manifest views.count={v}, "
            f"embed_dim={d}, topk={k}), got {a.dtype} {list(a.shape)}")
    for name in ("teacher_embedding", "topk_species_logits", "teacher_logsumexp"):
      finite = np.isfinite(part[name]).reshape(n, -1).all(1)
      if not finite.all():
        bad(f"{name} has non-finite values", int(np.argmax(~finite)))
    idx, logits, lse = (part["topk_species_indices"], part["topk_species_logits"],
                        part["teacher_logsumexp"])
    out = ((idx < 0) | (idx >= self.rank_sizes[-1])).reshape(n, -1).any(1)
    if np.any(out):
      bad(f"topk_species_indices out of range [0, {self.rank_sizes[-1]})", int(np.argmax(out)))
    if n and k:
      # The normalizer over all species is at least the largest logit (tolerance: float32).
      low = (lse < logits.max(axis=2) - 1e-3 * np.maximum(1.0, np.abs(lse))).any(1)
      if np.any(low):
        bad("teacher_logsumexp is below the largest top-k logit (it must be the logsumexp over "
            "ALL species)", int(np.argmax(low)))
    boxes, flips = part["view_boxes"], part["view_flips"]
    bad_box = ((boxes[..., 0] < 0) | (boxes[..., 1] < 0) | (boxes[..., 2] <= boxes[..., 0])
               | (boxes[..., 3] <= boxes[..., 1])).any(1)
    if np.any(bad_box):
      bad("view_boxes must be (y0, x0, y1, x1) with 0 <= y0 < y1 and 0 <= x0 < x1",
          int(np.argmax(bad_box)))
    if n and ((boxes[:, 0, :2] != 0).any() or (flips[:, 0] != 0).any()):
      i = int(np.argmax((boxes[:, 0, :2] != 0).any(1) | (flips[:, 0] != 0)))
      bad("view 0 must be the whole photo (0, 0, H, W), unflipped", i)
    if np.any(flips > 1):
      bad("view_flips must be 0 or 1", int(np.argmax((flips > 1).any(1))))

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
