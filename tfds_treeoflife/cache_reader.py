"""Reads and checks a teacher_cache output directory (format version 2, docs/FORMATS.md section 1).

The format's reader is formats.teacher_cache / formats.label_bank (numpy only); this module
plugs in tf.io.gfile, so the cache can live on any filesystem TensorFlow reads (local, gs://,
hdfs://), and gathers what a build needs before reading any row. It never imports teacher_cache
or torch: the format is the contract, not the writer's code.

The cache is streamed one `part-*.npz` at a time; nothing here holds more than one part's rows.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Tuple

import tensorflow as tf

from formats import label_bank as label_bank_format
from formats import teacher_cache as cache_format
from formats.errors import FormatError
from formats.fs import GFileSystem
from formats.ranks import RANKS
from formats.taxonomy import RankTable
from formats.teacher_cache import SHARD_DIR_RE, RowChecker, image_bytes_of, iter_rows  # noqa: F401  (the readers the builder uses)

GFILE = GFileSystem(tf.io.gfile)


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
  num_views: int = 1

  @property
  def rank_sizes(self) -> Dict[str, int]:
    return {r: len(t.names) for r, t in self.tables.items()}

  def row_checker(self) -> RowChecker:
    return RowChecker(embed_dim=self.embed_dim, topk=self.topk,
                      rank_sizes=tuple(len(self.tables[r].names) for r in RANKS),
                      parents=tuple(self.tables[r].parents for r in RANKS),
                      num_views=self.num_views)


def load_part(path: str):
  """One part-*.npz, read completely through gfile (FormatError if unreadable)."""
  return cache_format.read_part(path, GFILE)


def list_part_paths(cache_dir: str, require_complete: bool = True) -> Tuple[str, ...]:
  """Sorted part files of the cache's shards.

  With require_complete, every shard named `shard-I-of-N` must have its `.done.json` marker, so
  a build never silently uses a cache that teacher_cache is still writing (or was killed in).
  """
  rows_dir = os.path.join(cache_dir, cache_format.ROWS_DIR)
  if not tf.io.gfile.isdir(rows_dir):
    raise FormatError(f"{rows_dir}: missing (no cached rows)")
  shard_dirs = sorted(d for d in GFILE.listdir(rows_dir) if SHARD_DIR_RE.match(d))
  if not shard_dirs:
    raise FormatError(f"{rows_dir}: no shard-IIIII-of-NNNNN directories")
  totals = {int(SHARD_DIR_RE.match(d).group(2)) for d in shard_dirs}
  if len(totals) != 1:
    raise FormatError(f"{rows_dir}: shard directories disagree on the shard count "
                      f"{sorted(totals)}")
  if require_complete:
    total = totals.pop()
    missing = [cache_format.shard_name(i, total) for i in range(total)
               if not tf.io.gfile.exists(
                   cache_format.done_path(cache_dir, cache_format.shard_name(i, total)))]
    if missing:
      raise FormatError(
          f"{rows_dir}: {len(missing)} of {total} shards are not finished (no .done.json), "
          f"e.g. {missing[0]}. Finish or resume teacher_cache first, or build with "
          "--allow_incomplete_cache.")
  parts: List[str] = []
  for d in shard_dirs:
    parts.extend(sorted(tf.io.gfile.glob(os.path.join(rows_dir, d, "part-*.npz"))))
  if not parts:
    raise FormatError(f"{rows_dir}: the shards hold no part-*.npz files")
  return tuple(parts)


def read_cache_spec(cache_dir: str, require_complete: bool = True) -> CacheSpec:
  """Reads the manifest and label bank and checks them against each other.

  Raises FormatError naming the file at fault.
  """
  cache_dir = os.fspath(cache_dir).rstrip("/")
  manifest_path = os.path.join(cache_dir, cache_format.MANIFEST)
  manifest = cache_format.read_manifest(cache_dir, GFILE)
  teacher = manifest.get("teacher")
  if not isinstance(teacher, dict):
    raise FormatError(f"{manifest_path}: missing the 'teacher' object")
  try:
    embed_dim = int(teacher["embed_dim"])
    logit_scale = float(teacher["logit_scale"])
    topk = int(manifest["topk"])
  except (KeyError, TypeError, ValueError) as e:
    raise FormatError(f"{manifest_path}: needs integer teacher.embed_dim, number "
                      f"teacher.logit_scale and integer topk ({e!r})") from e
  num_views = cache_format.read_views(manifest, manifest_path)["count"]
  if embed_dim <= 0 or topk <= 0:
    raise FormatError(f"{manifest_path}: embed_dim {embed_dim} and topk {topk} must be > 0")
  bank = label_bank_format.read_label_bank(
      os.path.join(cache_dir, label_bank_format.LABEL_BANK_DIR), GFILE, embed_dim=embed_dim)
  tables = {t.rank: t for t in bank.tables}
  if topk > bank.num_species:
    raise FormatError(f"{manifest_path}: topk {topk} exceeds the {bank.num_species} species of "
                      "the label bank")
  return CacheSpec(cache_dir=cache_dir, manifest=manifest, embed_dim=embed_dim, topk=topk,
                   logit_scale=logit_scale, tables=tables,
                   part_paths=list_part_paths(cache_dir, require_complete), num_views=num_views)
