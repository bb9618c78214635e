"""The label bank directory: every taxon at every rank, its parent, and a teacher text embedding.

One reader (`read_label_bank`) and one writer (`write_label_bank`) for this layout, used by
teacher_cache (writes it), tfds_treeoflife (checks it, copies it into the dataset),
bioclip_lite_tf (trains and exports from it) and the fixture scripts:

  label_bank/<rank>.tsv        header `index\tname\tparent_index\tcommon_name`, one taxon a row,
                               index 0..N-1; parent_index is a row of the previous rank (-1 for
                               kingdom); names are full lineage names, unique per rank
  label_bank/<rank>.npy        float32 [N_rank, D], L2-normalized teacher text embeddings
  label_bank/label_bank.json   optional: format_version, teacher, text templates, ranks{rank: N},
                               taxonomy_sha256 (teacher_cache writes it; a TFDS dataset keeps the
                               teacher in ../teacher.json instead)

The .npy files are checked by their headers and first rows only and loaded lazily (memory-mapped
on a local disk): 454k species x 768 float32 is 1.4 GB.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from formats import atomic
from formats.errors import FormatError, check_version
from formats.fs import LOCAL, is_local_path
from formats.ranks import RANKS
from formats.taxonomy import RankTable, make_rank_table, species_ancestors

FORMAT_VERSION = 1
LABEL_BANK_DIR = "label_bank"
META_FILE = "label_bank.json"
TSV_HEADER = ("index", "name", "parent_index", "common_name")
# How many rows of each .npy are checked for unit norm (the whole bank can be 454k x 768).
NORM_CHECK_ROWS = 4096


# ----------------------------------------------------------------------------------------------
# <rank>.tsv

def _tsv_field(text: str, where: str) -> str:
  if any(c in text for c in "\t\n\r"):
    raise FormatError(f"{where}: taxon field {text!r} contains a tab or newline")
  return text


def rank_table_text(table: RankTable) -> str:
  """The bytes of `<rank>.tsv` for one table (header first, a final newline)."""
  where = f"{table.rank}.tsv"
  lines = ["\t".join(TSV_HEADER)]
  lines += [f"{i}\t{_tsv_field(n, where)}\t{int(p)}\t{_tsv_field(c, where)}"
            for i, (n, p, c) in enumerate(zip(table.names, table.parents.tolist(),
                                              table.common_names))]
  return "\n".join(lines) + "\n"


def read_rank_table(path: str, rank: str, prev_size: Optional[int], fs=LOCAL) -> RankTable:
  """Parses and checks `<rank>.tsv`. prev_size is the previous rank's row count (None: kingdom)."""
  if not fs.exists(path):
    raise FormatError(f"{path}: missing label bank table for rank {rank!r}")
  names: List[str] = []
  parents: List[int] = []
  commons: List[str] = []
  with fs.open(path, "r") as f:
    header = f.readline().rstrip("\n").split("\t")
    if tuple(header) != TSV_HEADER:
      raise FormatError(f"{path}: header is {header}, expected {list(TSV_HEADER)}")
    for line_no, line in enumerate(f, start=2):
      line = line.rstrip("\n")
      if not line:
        continue
      cols = line.split("\t")
      if len(cols) != 4:
        raise FormatError(f"{path}:{line_no}: expected 4 tab-separated columns, got {len(cols)}")
      try:
        index, parent = int(cols[0]), int(cols[2])
      except ValueError as e:
        raise FormatError(f"{path}:{line_no}: index/parent_index not integers") from e
      if index != len(names):
        raise FormatError(f"{path}:{line_no}: index {index}, expected {len(names)} "
                          "(rows must be numbered 0..N-1 in order)")
      if not cols[1]:
        raise FormatError(f"{path}:{line_no}: empty taxon name")
      if prev_size is None:
        if parent != -1:
          raise FormatError(f"{path}:{line_no}: kingdom rows need parent_index -1, got {parent}")
      elif not 0 <= parent < prev_size:
        raise FormatError(f"{path}:{line_no}: parent_index {parent} out of range "
                          f"[0, {prev_size}) of the previous rank's table")
      names.append(cols[1])
      parents.append(parent)
      commons.append(cols[3])
  if not names:
    raise FormatError(f"{path}: no taxa")
  if len(set(names)) != len(names):
    dup = next(n for n, c in collections.Counter(names).items() if c > 1)
    raise FormatError(f"{path}: taxon name {dup!r} appears twice (names must be unique lineage "
                      "names, they become ClassLabel names)")
  return make_rank_table(rank, names, parents, commons)


# ----------------------------------------------------------------------------------------------
# <rank>.npy

def _read_npy_header(f) -> Tuple[Tuple[int, ...], bool, np.dtype]:
  version = np.lib.format.read_magic(f)
  if version == (1, 0):
    return np.lib.format.read_array_header_1_0(f)
  return np.lib.format.read_array_header_2_0(f)


def npy_header(path: str, fs=LOCAL) -> Tuple[Tuple[int, ...], np.dtype]:
  """(shape, dtype) from a .npy file's header alone. FormatError if it is no .npy file."""
  try:
    with fs.open(path, "rb") as f:
      shape, _, dtype = _read_npy_header(f)
  except ValueError as e:
    raise FormatError(f"{path}: not a .npy file ({e})") from e
  return shape, dtype


def read_npy_head(path: str, max_rows: int, fs=LOCAL) -> np.ndarray:
  """The first max_rows rows of a C-order 2-D .npy, without reading the rest."""
  with fs.open(path, "rb") as f:
    shape, fortran, dtype = _read_npy_header(f)
    if fortran:
      raise FormatError(f"{path}: Fortran-order arrays are not supported")
    rows = min(max_rows, shape[0])
    row_items = int(np.prod(shape[1:]))
    data = f.read(rows * row_items * dtype.itemsize)
  return np.frombuffer(data, dtype=dtype).reshape((rows,) + tuple(shape[1:]))


def load_npy(path: str, fs=LOCAL, mmap: bool = True) -> np.ndarray:
  """Loads a .npy; memory-maps it when it is on the local disk and mmap is set."""
  if is_local_path(path):
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
  with fs.open(path, "rb") as f:
    return np.load(io.BytesIO(f.read()), allow_pickle=False)


def check_text_embeddings(path: str, rank: str, rows: int, embed_dim: Optional[int],
                          fs=LOCAL) -> int:
  """Checks `<rank>.npy` by header and first rows; returns its width D."""
  if not fs.exists(path):
    raise FormatError(f"{path}: missing text embeddings for rank {rank!r}")
  shape, dtype = npy_header(path, fs)
  if dtype != np.float32 or len(shape) != 2:
    raise FormatError(f"{path}: expected float32 [N, D], got {dtype} {list(shape)}")
  if shape[0] != rows:
    raise FormatError(f"{path}: {shape[0]} rows but {rank}.tsv has {rows} taxa")
  if embed_dim is not None and shape[1] != embed_dim:
    raise FormatError(f"{path}: embedding width {shape[1]} does not match the teacher's "
                      f"embed_dim {embed_dim}")
  head = read_npy_head(path, NORM_CHECK_ROWS, fs)
  norms = np.linalg.norm(head, axis=1)
  if not np.all(np.abs(norms - 1.0) < 1e-3):
    bad = int(np.argmax(np.abs(norms - 1.0)))
    raise FormatError(f"{path}: row {bad} has norm {norms[bad]:.4f}; text embeddings must be "
                      "L2-normalized")
  return int(shape[1])


# ----------------------------------------------------------------------------------------------
# The directory

@dataclasses.dataclass(frozen=True, eq=False)
class LabelBank:
  """A label bank directory, checked. Embeddings are read on demand (`embeddings(rank)`).

  tables: one RankTable per rank, in RANKS order.
  embed_dim: D, the width of every `<rank>.npy`.
  meta: label_bank.json's content, or None when the directory has none.
  """
  directory: str
  tables: Tuple[RankTable, ...]
  embed_dim: int
  meta: Optional[dict]
  fs: object = LOCAL

  def table(self, rank: str) -> RankTable:
    return self.tables[RANKS.index(rank)]

  @property
  def rank_sizes(self) -> Tuple[int, ...]:
    return tuple(len(t) for t in self.tables)

  @property
  def num_species(self) -> int:
    return len(self.tables[-1])

  def embeddings(self, rank: str, mmap: bool = True) -> np.ndarray:
    """float32 [N_rank, D] (memory-mapped on a local disk unless mmap=False)."""
    return load_npy(os.path.join(self.directory, f"{rank}.npy"), self.fs, mmap)

  @property
  def species_embeddings(self) -> np.ndarray:
    return self.embeddings(RANKS[-1])

  def parents(self) -> Dict[str, np.ndarray]:
    return {t.rank: t.parents for t in self.tables}

  def species_ancestors(self) -> np.ndarray:
    """int32 [7, S]: for each rank, the row of every species' ancestor (see taxonomy)."""
    return species_ancestors(self.parents())


def read_label_bank(directory: str, fs=LOCAL, embed_dim: Optional[int] = None,
                    require_meta: bool = False) -> LabelBank:
  """Reads and checks a label bank directory. Raises FormatError naming the file at fault.

  embed_dim: the width the caller expects (the teacher's), or None to take the files'.
  require_meta: label_bank.json must exist (a teacher_cache label bank, not a TFDS copy).
  """
  directory = os.fspath(directory).rstrip("/")
  if not fs.isdir(directory):
    raise FormatError(f"{directory}: not a label bank directory (it does not exist)")
  meta_path = os.path.join(directory, META_FILE)
  meta = None
  if fs.exists(meta_path):
    meta = check_version(atomic.read_json(meta_path, fs), meta_path, "label bank",
                         FORMAT_VERSION, "Rebuild it with this version's teacher_cache.")
  elif require_meta:
    raise FormatError(f"{directory}: no {META_FILE} (not a label bank, or unfinished)")
  tables: List[RankTable] = []
  prev = None
  for rank in RANKS:
    table = read_rank_table(os.path.join(directory, f"{rank}.tsv"), rank, prev, fs)
    embed_dim = check_text_embeddings(os.path.join(directory, f"{rank}.npy"), rank, len(table),
                                      embed_dim, fs)
    tables.append(table)
    prev = len(table)
  return LabelBank(directory, tuple(tables), int(embed_dim), meta, fs)


EmbedRows = Callable[[RankTable], Iterable[np.ndarray]]


def write_label_bank(final_dir: str, tables: Sequence[RankTable], embed_dim: int,
                     embed_rows: EmbedRows, meta: Optional[dict] = None) -> str:
  """Writes a label bank directory atomically (built in a temp sibling, renamed at the end).

  tables: the 7 RankTables in RANKS order.
  embed_rows(table) yields float32 [n_i, D] chunks of that rank's embeddings, in row order;
    they stream into memory-mapped .npy files, so 454k x D never sits in RAM.
  meta: label_bank.json's content (format_version is added), or None for no label_bank.json.
  An existing final_dir is an error (FileExistsError): callers decide whether to reuse it.
  """
  if [t.rank for t in tables] != list(RANKS):
    raise ValueError(f"tables must be the ranks {RANKS} in order, got {[t.rank for t in tables]}")
  if os.path.exists(final_dir) and os.listdir(final_dir):
    raise FileExistsError(f"{final_dir} already exists")
  parent = os.path.dirname(os.path.abspath(final_dir))
  atomic.remove_tmp_litter(parent)
  tmp = atomic.fresh_tmp_dir(final_dir)
  for table in tables:
    with open(os.path.join(tmp, f"{table.rank}.tsv"), "w", encoding="utf-8", newline="") as f:
      f.write(rank_table_text(table))
    emb = np.lib.format.open_memmap(os.path.join(tmp, f"{table.rank}.npy"), mode="w+",
                                    dtype=np.float32, shape=(len(table), int(embed_dim)))
    start = 0
    for chunk in embed_rows(table):
      chunk = np.asarray(chunk, np.float32)
      emb[start:start + len(chunk)] = chunk
      start += len(chunk)
    if start != len(table):
      raise ValueError(f"{table.rank}: embed_rows gave {start} rows for {len(table)} taxa")
    emb.flush()
    del emb
  if meta is not None:
    atomic.write_json(os.path.join(tmp, META_FILE), dict(meta, format_version=FORMAT_VERSION))
  atomic.commit_dir(tmp, final_dir)
  return final_dir


def in_memory_rows(embeddings: Dict[str, np.ndarray]) -> EmbedRows:
  """embed_rows for embeddings already in memory: {rank: float32 [N_rank, D]}."""
  return lambda table: [embeddings[table.rank]]


def find_teacher(directory: str) -> dict:
  """The teacher description (with logit_scale) of a label bank, wherever its producer put it:
  label_bank.json (teacher_cache.label_bank), ../teacher.json (a TFDS dataset) or
  ../manifest.json (a teacher cache). FormatError when none has a logit_scale."""
  parent = os.path.dirname(os.path.abspath(directory))
  candidates = [
      (os.path.join(directory, META_FILE), lambda d: d.get("teacher")),
      (os.path.join(parent, "teacher.json"), lambda d: d),
      (os.path.join(parent, "manifest.json"), lambda d: d.get("teacher")),
  ]
  for path, pick in candidates:
    if os.path.isfile(path):
      teacher = pick(atomic.read_json(path))
      if isinstance(teacher, dict) and "logit_scale" in teacher:
        return teacher
  raise FormatError(f"{directory}: no teacher description with logit_scale found in "
                    f"{META_FILE}, ../teacher.json or ../manifest.json; pass --logit_scale")
