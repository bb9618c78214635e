r"""The device label bank: taxonomy + species text embeddings in a form a phone loads quickly.

  python -m bioclip_lite_tf.device_label_bank --label_bank_dir=DIR/label_bank --out_dir=OUT \
      [--dtype=int8|float16]

Reads a label_bank/ directory (docs/FORMATS.md sections 1-2): `<rank>.tsv` (index, name,
parent_index, common_name) and `<rank>.npy` (float32 [N_rank, D], L2-normalized) for the 7 ranks,
inside a TFDS dataset directory (teacher info in ../teacher.json), a teacher_cache directory
(../manifest.json) or a `python -m teacher_cache.label_bank` output (label_bank.json beside the
tables). Writes OUT/label_bank.json + OUT/label_bank.bin (format version 1):

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

Only species embeddings are shipped: the device ranks species and sums their probabilities up
the parent links for the higher ranks (DESIGN.md), so higher-rank text embeddings are not
needed. At 454k species x 512 the int8 bin is 233 MB (float32 would be 930 MB); the species are
converted in chunks from a memory-mapped .npy so the whole matrix is never in memory.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags, logging

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
FORMAT = "bioclip-lite-device-label-bank"
FORMAT_VERSION = 1
JSON_NAME = "label_bank.json"
BIN_NAME = "label_bank.bin"
DTYPES = ("int8", "float16")
_CHUNK_ROWS = 65536


class LabelBankFormatError(ValueError):
  """A label bank (source or device) is missing, malformed or inconsistent; says where."""


@dataclasses.dataclass
class RankTaxa:
  names: List[str]
  parents: List[int]
  common_names: List[str]


@dataclasses.dataclass
class SourceLabelBank:
  """A label_bank/ directory read back. species_embeddings: float32 [N, D] (memory-mapped)."""
  directory: str
  taxa: Dict[str, RankTaxa]
  species_embeddings: np.ndarray
  teacher: dict
  logit_scale: float

  @property
  def embed_dim(self) -> int:
    return int(self.species_embeddings.shape[1])


@dataclasses.dataclass
class DeviceLabelBank:
  """A device label bank read back. species_embeddings: float32 [N, D] dequantized."""
  meta: dict
  taxa: Dict[str, RankTaxa]
  species_embeddings: np.ndarray

  @property
  def logit_scale(self) -> float:
    return float(self.meta["logit_scale"])

  @property
  def embed_dim(self) -> int:
    return int(self.meta["embed_dim"])


def _read_tsv(path: str, rank: str, previous_size: Optional[int]) -> RankTaxa:
  """One `<rank>.tsv`, parsed and checked by the TFDS stage's reader (the format is one)."""
  from tfds_treeoflife.cache_reader import CacheFormatError, read_rank_table
  if not os.path.isfile(path):
    raise LabelBankFormatError(f"{path}: missing (the label bank needs {rank}.tsv)")
  try:
    table = read_rank_table(path, rank, previous_size)
  except CacheFormatError as e:
    raise LabelBankFormatError(str(e)) from e
  return RankTaxa(list(table.names), [int(p) for p in table.parents], list(table.common_names))


def _find_teacher(directory: str) -> dict:
  """Teacher description for a label_bank/ directory, from wherever its producer put it."""
  parent = os.path.dirname(os.path.abspath(directory))
  candidates = [
      (os.path.join(directory, "label_bank.json"), lambda d: d.get("teacher")),
      (os.path.join(parent, "teacher.json"), lambda d: d),
      (os.path.join(parent, "manifest.json"), lambda d: d.get("teacher")),
  ]
  for path, pick in candidates:
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        teacher = pick(json.load(f))
      if isinstance(teacher, dict) and "logit_scale" in teacher:
        return teacher
  raise LabelBankFormatError(
      f"{directory}: no teacher description with logit_scale found in label_bank.json, "
      f"../teacher.json or ../manifest.json; pass --logit_scale")


def read_source_label_bank(directory: str, logit_scale: Optional[float] = None
                           ) -> SourceLabelBank:
  """Reads a label_bank/ directory (TSV tables + float32 .npy embeddings)."""
  if not os.path.isdir(directory):
    raise LabelBankFormatError(f"{directory}: not a directory")
  taxa: Dict[str, RankTaxa] = {}
  previous = None
  for rank in RANKS:
    taxa[rank] = _read_tsv(os.path.join(directory, f"{rank}.tsv"), rank, previous)
    previous = len(taxa[rank].names)
  npy = os.path.join(directory, "species.npy")
  if not os.path.isfile(npy):
    raise LabelBankFormatError(f"{npy}: missing species text embeddings")
  emb = np.load(npy, mmap_mode="r")
  if emb.ndim != 2 or emb.shape[0] != len(taxa["species"].names) or emb.dtype != np.float32:
    raise LabelBankFormatError(
        f"{npy}: {emb.dtype} {list(emb.shape)}, expected float32 "
        f"[{len(taxa['species'].names)}, D] (one row per species.tsv row)")
  if logit_scale is not None:
    teacher = {"logit_scale": float(logit_scale)}
  else:
    teacher = _find_teacher(directory)
  if "embed_dim" in teacher and int(teacher["embed_dim"]) != emb.shape[1]:
    raise LabelBankFormatError(f"{directory}: embeddings are {emb.shape[1]}-d but the teacher "
                               f"description says embed_dim {teacher['embed_dim']}")
  return SourceLabelBank(directory, taxa, emb, teacher, float(teacher["logit_scale"]))


def quantize_rows_int8(rows: np.ndarray):
  """float32 [n, D] -> (int8 [n, D], float32 [n] scales), symmetric per row."""
  rows = np.asarray(rows, np.float32)
  scales = np.abs(rows).max(axis=1) / 127.0
  safe = np.where(scales > 0, scales, 1.0)
  q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
  return q, scales.astype(np.float32)


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def write_device_label_bank(source: SourceLabelBank, out_dir: str, dtype: str = "int8") -> dict:
  """Writes OUT/label_bank.json + .bin (atomically: temp files renamed, .json last).

  Returns the label_bank.json content.
  """
  if dtype not in DTYPES:
    raise LabelBankFormatError(f"--dtype={dtype!r}: must be one of {DTYPES}")
  os.makedirs(out_dir, exist_ok=True)
  emb = source.species_embeddings
  n, d = emb.shape
  fd, tmp_bin = tempfile.mkstemp(prefix=".label_bank.bin.", dir=out_dir)
  try:
    with os.fdopen(fd, "wb") as f:
      scales = []
      for start in range(0, n, _CHUNK_ROWS):
        chunk = np.asarray(emb[start:start + _CHUNK_ROWS], np.float32)
        if dtype == "int8":
          q, s = quantize_rows_int8(chunk)
          f.write(q.tobytes())
          scales.append(s)
        else:
          f.write(chunk.astype("<f2").tobytes())
        if start and start % (_CHUNK_ROWS * 4) == 0:
          logging.info("device label bank: %d/%d species", start, n)
      layout = {"file": BIN_NAME, "shape": [int(n), int(d)], "offset": 0, "dtype": dtype}
      if dtype == "int8":
        pad = (-n * d) % 4
        f.write(b"\0" * pad)
        layout["scales_offset"] = int(n * d + pad)
        layout["scales_dtype"] = "float32"
        f.write(np.concatenate(scales).astype("<f4").tobytes())
    os.replace(tmp_bin, os.path.join(out_dir, BIN_NAME))
  except BaseException:
    if os.path.exists(tmp_bin):
      os.remove(tmp_bin)
    raise
  bin_path = os.path.join(out_dir, BIN_NAME)
  teacher = {k: source.teacher[k] for k in ("id", "pretrained", "real_weights", "embed_dim",
                                            "checkpoint_sha256") if k in source.teacher}
  meta = {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "embed_dim": int(d),
      "dtype": dtype,
      "logit_scale": float(source.logit_scale),
      "ranks": list(RANKS),
      "teacher": teacher,
      "taxa": {rank: dataclasses.asdict(source.taxa[rank]) for rank in RANKS},
      "species_embeddings": layout,
      "bin": {"bytes": os.path.getsize(bin_path), "sha256": _sha256(bin_path)},
      "source": {"label_bank_dir": os.path.abspath(source.directory)},
  }
  tmp_json = os.path.join(out_dir, f".{JSON_NAME}.tmp")
  with open(tmp_json, "w", encoding="utf-8") as f:
    json.dump(meta, f, ensure_ascii=False, separators=(",", ":"))
  os.replace(tmp_json, os.path.join(out_dir, JSON_NAME))
  return meta


def read_device_label_bank(out_dir: str) -> DeviceLabelBank:
  """Reads and checks OUT/label_bank.json + .bin; embeddings dequantized to float32 [N, D]."""
  json_path = os.path.join(out_dir, JSON_NAME)
  if not os.path.isfile(json_path):
    raise LabelBankFormatError(f"{json_path}: missing")
  with open(json_path, encoding="utf-8") as f:
    meta = json.load(f)
  if meta.get("format_version") != FORMAT_VERSION:
    raise LabelBankFormatError(f"{json_path}: format_version {meta.get('format_version')}, "
                               f"this reader knows {FORMAT_VERSION}")
  layout = meta["species_embeddings"]
  n, d = layout["shape"]
  if d != meta["embed_dim"]:
    raise LabelBankFormatError(f"{json_path}: species_embeddings.shape[1]={d} but "
                               f"embed_dim={meta['embed_dim']}")
  with open(os.path.join(out_dir, layout["file"]), "rb") as f:
    raw = f.read()
  if meta["dtype"] == "int8":
    q = np.frombuffer(raw, np.int8, n * d, layout["offset"]).reshape(n, d)
    scales = np.frombuffer(raw, "<f4", n, layout["scales_offset"])
    emb = q.astype(np.float32) * scales[:, None]
  elif meta["dtype"] == "float16":
    emb = np.frombuffer(raw, "<f2", n * d, layout["offset"]).reshape(n, d).astype(np.float32)
  else:
    raise LabelBankFormatError(f"{json_path}: dtype {meta['dtype']!r} not in {DTYPES}")
  taxa = {rank: RankTaxa(**meta["taxa"][rank]) for rank in RANKS}
  if len(taxa["species"].names) != n:
    raise LabelBankFormatError(f"{json_path}: {len(taxa['species'].names)} species names but "
                               f"{n} embedding rows")
  return DeviceLabelBank(meta, taxa, emb)


def species_ancestors(taxa: Dict[str, RankTaxa]) -> Dict[str, np.ndarray]:
  """For each rank, int32 [N_species]: the row at that rank of each species' ancestor."""
  current = np.arange(len(taxa["species"].names), dtype=np.int32)
  out = {}
  for depth in range(len(RANKS) - 1, -1, -1):
    out[RANKS[depth]] = current
    if depth:
      current = np.asarray(taxa[RANKS[depth]].parents, np.int32)[current]
  return out


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("label_bank_dir", None, "A label_bank/ directory: <rank>.tsv and "
                      "<rank>.npy for the 7 ranks (inside a TFDS dataset dir, a teacher_cache "
                      "dir, or written by `python -m teacher_cache.label_bank`).")
  flags.DEFINE_string("out_dir", None, "Where to write label_bank.json and label_bank.bin.")
  flags.DEFINE_enum("dtype", "int8", list(DTYPES), "Storage of the species text embeddings: "
                    "int8 with a float32 scale per row, or float16.")
  flags.DEFINE_float("logit_scale", None, "The logit multiplier (exp applied, ~100 for "
                     "BioCLIP); only needed when no teacher description sits beside the bank.")


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.label_bank_dir or not FLAGS.out_dir:
    print("error: --label_bank_dir and --out_dir are required", file=sys.stderr)
    return 2
  try:
    source = read_source_label_bank(FLAGS.label_bank_dir, FLAGS.logit_scale)
    meta = write_device_label_bank(source, FLAGS.out_dir, FLAGS.dtype)
  except LabelBankFormatError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {FLAGS.out_dir}/{JSON_NAME} and {BIN_NAME}: "
        f"{meta['species_embeddings']['shape'][0]} species, D={meta['embed_dim']}, "
        f"{meta['dtype']}, {meta['bin']['bytes']} bytes")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
