"""The label bank of a built dataset as arrays for training, export and evaluation.

Read with formats.label_bank (the one reader of label_bank/) plus the dataset's teacher.json.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict

import numpy as np

from formats import label_bank as label_bank_format
from formats.errors import FormatError
from bioclip_lite_tf.data.discovery import GFILE, DataError, read_teacher


@dataclasses.dataclass
class LabelBankArrays:
  """The label bank as arrays (numpy; see losses.LabelBankTensors for the TF form).

  species_text_embeddings: float32 [S, D], L2-normalized.
  ancestors: int32 [7, S]; ancestors[r, s] = row of species s's taxon at rank r (last row: s).
  rank_sizes: number of taxa per rank.
  names: taxon names per rank (row order).
  logit_scale: the multiplier of zero-shot logits (exp already applied).
  """
  species_text_embeddings: np.ndarray
  ancestors: np.ndarray
  rank_sizes: tuple
  names: Dict[str, list]
  logit_scale: float
  teacher: dict

  @property
  def embed_dim(self) -> int:
    return int(self.species_text_embeddings.shape[1])

  @property
  def num_species(self) -> int:
    return int(self.species_text_embeddings.shape[0])


def load_label_bank(dataset_dir: str) -> LabelBankArrays:
  """Reads label_bank/ and teacher.json from a built dataset version directory.

  Raises DataError (wrapping formats' FormatError) naming the file at fault.
  """
  teacher = read_teacher(dataset_dir)
  try:
    bank = label_bank_format.read_label_bank(
        os.path.join(dataset_dir, label_bank_format.LABEL_BANK_DIR), GFILE,
        embed_dim=int(teacher["embed_dim"]) if "embed_dim" in teacher else None)
    ancestors = bank.species_ancestors()
  except FormatError as e:
    raise DataError(f"label bank in {dataset_dir}: {e}") from e
  return LabelBankArrays(
      species_text_embeddings=np.asarray(bank.species_embeddings, np.float32),
      ancestors=ancestors,
      rank_sizes=bank.rank_sizes,
      names={t.rank: list(t.names) for t in bank.tables},
      logit_scale=float(teacher["logit_scale"]),
      teacher=teacher)
