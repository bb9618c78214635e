"""The device label bank of an export, made from a label_bank/ directory.

The format (labels/label_bank.json + label_bank.bin) and its one writer and reader are in
formats.device_label_bank; this module reads the source label bank (formats.label_bank, with
its teacher description from wherever the producer put it) and hands both to the writer.
At 454k species x 512 the int8 bin is 233 MB; species are converted in chunks from the
memory-mapped .npy, so the whole matrix is never in memory.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np
from absl import logging

from bioclip_lite_tf.export import compact_bank
from formats import device_label_bank as device_format
from formats import label_bank as label_bank_format
from formats.errors import FormatError
from formats.taxonomy import RankTable


@dataclasses.dataclass
class SourceLabelBank:
  """A label_bank/ directory read back. species_embeddings: float32 [N, D] (memory-mapped)."""
  directory: str
  tables: Tuple[RankTable, ...]
  species_embeddings: np.ndarray
  teacher: dict
  logit_scale: float

  def table(self, rank: str) -> RankTable:
    return next(t for t in self.tables if t.rank == rank)

  @property
  def embed_dim(self) -> int:
    return int(self.species_embeddings.shape[1])


def read_source_label_bank(directory: str, logit_scale: Optional[float] = None
                           ) -> SourceLabelBank:
  """Reads a label_bank/ directory (TSV tables + float32 .npy embeddings) and its teacher.

  logit_scale: use this instead of looking for the teacher description beside the bank.
  Raises FormatError naming the file at fault.
  """
  if not os.path.isdir(directory):
    raise FormatError(f"{directory}: not a directory")
  teacher = ({"logit_scale": float(logit_scale)} if logit_scale is not None
             else label_bank_format.find_teacher(directory))
  embed_dim = int(teacher["embed_dim"]) if "embed_dim" in teacher else None
  bank = label_bank_format.read_label_bank(directory, embed_dim=embed_dim)
  return SourceLabelBank(directory, bank.tables, bank.species_embeddings, teacher,
                         float(teacher["logit_scale"]))


def resolve_bank_option(dtype: Optional[str], dims: Optional[str], compact: Optional[str]
                        ) -> Tuple[str, int]:
  """The CLIs' --bank_dtype / --bank_dims / --bank_compact -> (dtype, dims).

  compact: an option name of bioclip_lite_tf.export.compact_bank ('pca256_int4', 'int8', ...)
  or 'default' (compact_bank.DEFAULT_COMPACT, the measured choice); it may not be combined with
  dtype or dims. dims: '0' (or None) for the full width. Raises FormatError (exit 2 in CLIs).
  """
  try:
    if compact:
      if dtype or dims not in (None, "", "0"):
        raise FormatError(f"--bank_compact={compact} sets the dtype and dims itself; do not "
                          "combine it with --bank_dtype / --bank_dims")
      return compact_bank.parse_option(compact_bank.DEFAULT_COMPACT if compact == "default"
                                       else compact)
    dtype = dtype or "int8"
    if dtype not in compact_bank.DTYPES:
      raise FormatError(f"--bank_dtype={dtype!r}: must be one of {compact_bank.DTYPES}")
    try:
      dims_value = int(dims or 0)
    except ValueError:
      raise FormatError(f"--bank_dims={dims!r}: must be an integer (0: the full width)") from None
    if dims_value < 0:
      raise FormatError(f"--bank_dims={dims_value}: must be 0 (the full width) or positive")
    return dtype, dims_value
  except compact_bank.CompactOptionError as e:
    raise FormatError(f"--bank_compact: {e}") from None


def write_device_label_bank(source: SourceLabelBank, out_dir: str, dtype: str = "int8",
                            dims: int = 0, pack: Optional[dict] = None) -> dict:
  """Writes OUT/label_bank.json + .bin; returns the label_bank.json content.

  pack: how a pack's species were chosen (recorded in the json's `source`), for packs.
  dims > 0: rows are stored in that many dims through compact_bank.fit_pca (a PCA fitted on the
  bank, turned by a fixed rotation); the writer quantizes to dtype.
  """
  where = {"label_bank_dir": os.path.abspath(source.directory)}
  if pack is not None:
    where["pack"] = pack
  if dtype not in compact_bank.DTYPES:
    raise FormatError(f"bank dtype {dtype!r}: must be one of {compact_bank.DTYPES}")
  projection = None
  if dims:
    try:
      mean, matrix = compact_bank.fit_pca(source.species_embeddings, dims)
    except compact_bank.CompactOptionError as e:
      raise FormatError(f"{source.directory}: {e}") from None
    projection = device_format.Projection(matrix, mean)
  logging.info("device label bank: %s", compact_bank.option_name(dtype, dims))
  return device_format.write_device_label_bank(
      out_dir, source.tables, source.species_embeddings, source.logit_scale, source.teacher,
      dtype, source=where, log=logging.info, projection=projection)
