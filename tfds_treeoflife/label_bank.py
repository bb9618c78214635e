"""The label bank and teacher identity that travel inside a built `tree_of_life_distill` dataset.

Files in the dataset version directory (`info.data_dir`), beside TFDS's own files:

  metadata.json          small summary: format_version, ranks, num_taxa, embed_dim, topk,
                         logit_scale, teacher, split settings, holdout_species rows
  teacher.json           teacher id, pretrained, checkpoint_sha256, embed_dim, logit_scale
                         (multiplier, exp applied), real_weights, preprocessing, text_template
  label_bank/<rank>.tsv  `index, name, parent_index, common_name`, copied from the cache
  label_bank/<rank>.npy  float32 [N_rank, D], L2-normalized teacher text embeddings

The bank is kept as .npy rather than JSON: 454k x 512 float32 is 0.9 GB.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from formats import atomic
from formats import label_bank as label_bank_format
from formats.label_bank import FORMAT_VERSION as LABEL_BANK_FORMAT_VERSION  # noqa: F401
from formats.label_bank import LABEL_BANK_DIR
from formats.ranks import RANKS
from tfds_treeoflife.cache_reader import GFILE

METADATA_FILE = "metadata.json"
TEACHER_FILE = "teacher.json"


@dataclasses.dataclass(frozen=True)
class RankBank:
  """One rank of the label bank.

  names: lineage names in row order (== the ClassLabel names of that rank's feature).
  parents: int32 [N], row in the previous rank (-1 for kingdom).
  common_names: [N] str, may be empty.
  text_embeddings: float32 [N, D], L2-normalized (memory-mapped when the dataset is local).
  """
  names: List[str]
  parents: np.ndarray
  common_names: List[str]
  text_embeddings: np.ndarray


@dataclasses.dataclass(frozen=True)
class LabelBank:
  """Everything needed for zero-shot logits: `logit_scale * image_emb @ ranks['species'].text_embeddings.T`.

  logit_scale is the multiplier (exp already applied, ~100 for BioCLIP).
  """
  ranks: Dict[str, RankBank]
  logit_scale: float
  embed_dim: int
  teacher_id: str
  teacher: dict
  holdout_species: Tuple[int, ...]

  @property
  def rank_names(self) -> Tuple[str, ...]:
    return RANKS


class TreeOfLifeMetadata(tfds.core.Metadata):
  """`info.metadata` of tree_of_life_distill: a dict summary that also saves the label bank files.

  When built, it knows the source cache and copies its label bank into the dataset directory.
  When restored from a built dataset it holds the summary from metadata.json; the full bank is
  read by `load_label_bank(info.data_dir)`.
  """

  def __init__(self, summary: Optional[dict] = None, teacher: Optional[dict] = None,
               source_cache_dir: Optional[str] = None):
    super().__init__(summary or {})
    self._teacher = teacher
    self._source_cache_dir = source_cache_dir

  def save_metadata(self, data_dir):
    data_dir = os.fspath(data_dir)
    bank_dir = os.path.join(data_dir, LABEL_BANK_DIR)
    tf.io.gfile.makedirs(bank_dir)
    if self._source_cache_dir:
      src = os.path.join(self._source_cache_dir, LABEL_BANK_DIR)
      for rank in RANKS:
        for ext in ("tsv", "npy"):
          # gfile.copy streams, so a 1 GB species bank never sits in memory.
          tf.io.gfile.copy(os.path.join(src, f"{rank}.{ext}"),
                           os.path.join(bank_dir, f"{rank}.{ext}"), overwrite=True)
    if self._teacher is not None:
      atomic.write_json(os.path.join(data_dir, TEACHER_FILE), self._teacher, GFILE,
                        ensure_ascii=True)
    atomic.write_json(os.path.join(data_dir, METADATA_FILE), dict(self), GFILE,
                      ensure_ascii=True)

  def load_metadata(self, data_dir):
    path = os.path.join(os.fspath(data_dir), METADATA_FILE)
    self.clear()
    if tf.io.gfile.exists(path):
      self.update(atomic.read_json(path, GFILE))


def load_label_bank(data_dir: str, mmap: bool = True) -> LabelBank:
  """Loads the label bank saved inside a built dataset.

  Args:
    data_dir: the dataset version directory, i.e. `info.data_dir` (works the same for
      `tfds.load(..., with_info=True)` and `tfds.builder_from_directory`).
    mmap: memory-map the .npy files when the directory is local (a 454k-taxon bank is ~1 GB).

  Returns:
    LabelBank with names/parents/common_names/text_embeddings per rank, logit_scale, embed_dim.
  """
  data_dir = os.fspath(data_dir)
  teacher_path = os.path.join(data_dir, TEACHER_FILE)
  meta_path = os.path.join(data_dir, METADATA_FILE)
  for p in (teacher_path, meta_path):
    if not tf.io.gfile.exists(p):
      raise FileNotFoundError(f"{p}: missing; is {data_dir} a built tree_of_life_distill "
                              "dataset version directory (info.data_dir)?")
  teacher = atomic.read_json(teacher_path, GFILE)
  meta = atomic.read_json(meta_path, GFILE)
  embed_dim = int(teacher["embed_dim"])
  bank = label_bank_format.read_label_bank(os.path.join(data_dir, LABEL_BANK_DIR), GFILE,
                                           embed_dim=embed_dim)
  ranks: Dict[str, RankBank] = {}
  for table in bank.tables:
    emb = label_bank_format.load_npy(os.path.join(bank.directory, f"{table.rank}.npy"), GFILE,
                                     mmap)
    ranks[table.rank] = RankBank(names=list(table.names), parents=table.parents,
                                 common_names=list(table.common_names), text_embeddings=emb)
  return LabelBank(ranks=ranks, logit_scale=float(teacher["logit_scale"]), embed_dim=embed_dim,
                   teacher_id=str(teacher.get("id", "")), teacher=teacher,
                   holdout_species=tuple(meta.get("holdout_species", ())))
