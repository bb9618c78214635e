"""The device label bank of an export, made from a label_bank/ directory.

The format (labels/label_bank.json, label_bank.bin, names.bin, common_names.bin) and its one writer and reader are in
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


def write_device_label_bank(source: SourceLabelBank, out_dir: str, dtype: str = "int8",
                            projection_dim: Optional[int] = None) -> dict:
  """Writes OUT/label_bank.json, label_bank.bin, names.bin (+ common_names.bin); returns the json.

  projection_dim: store rows in this many dimensions, through a PCA fitted on the bank
  (device_format.fit_projection); None keeps all D.
  """
  projection = (device_format.fit_projection(source.species_embeddings, projection_dim)
                if projection_dim else None)
  return device_format.write_device_label_bank(
      out_dir, source.tables, source.species_embeddings, source.logit_scale, source.teacher,
      dtype, source={"label_bank_dir": os.path.abspath(source.directory)}, log=logging.info,
      projection=projection)
