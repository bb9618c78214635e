"""Split assignment by stable hashes, so a photo's split never depends on shard or worker order.

A photo goes to `validation` when sha1("validation:" + key) maps below validation_fraction. With
a species holdout, whole species are chosen the same way from their lineage names (salt
"holdout:"), and every photo of a held-out species goes to `holdout`, whatever its key hash.
Python's hash() is salted per process, so it is never used here.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import FrozenSet, Sequence, Tuple

TRAIN, VALIDATION, HOLDOUT = "train", "validation", "holdout"


def unit_hash(text: str, salt: str) -> float:
  """Maps (salt, text) to a float in [0, 1), identical on every machine and Python run."""
  digest = hashlib.sha1(f"{salt}:{text}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def holdout_species(species_names: Sequence[str], fraction: float) -> Tuple[int, ...]:
  """Rows of species.tsv held out whole: those whose name hashes below fraction.

  With fraction > 0 at least one species is held out (the lowest hash), so a tiny label bank
  still has a holdout split. The choice depends only on the names, never on the photos.
  """
  if fraction <= 0:
    return ()
  hashes = [unit_hash(n, "holdout") for n in species_names]
  chosen = [i for i, h in enumerate(hashes) if h < fraction]
  if not chosen:
    chosen = [min(range(len(hashes)), key=hashes.__getitem__)]
  return tuple(chosen)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """Decides a photo's split from its key and species row. Picklable for Beam workers."""
  validation_fraction: float
  holdout_species: FrozenSet[int] = frozenset()

  def split_of(self, key: str, species_row: int) -> str:
    if species_row in self.holdout_species:
      return HOLDOUT
    if unit_hash(key, "validation") < self.validation_fraction:
      return VALIDATION
    return TRAIN

  @property
  def split_names(self) -> Tuple[str, ...]:
    return (TRAIN, VALIDATION, HOLDOUT) if self.holdout_species else (TRAIN, VALIDATION)
