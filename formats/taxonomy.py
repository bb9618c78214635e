"""Lineages, taxon names, captions and the deterministic taxonomy tables behind a label bank.

A *lineage* is a tuple of the 7 bare names (kingdom, phylum, class, order, family, genus,
species epithet). The *taxon name* at rank r is the lineage up to r joined by single spaces
(docs/FORMATS.md), which keeps names unique where bare names recur across kingdoms.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from formats.errors import FormatError
from formats.ranks import NUM_RANKS, RANKS

# The one text template BioCLIP was trained with for taxonomic + common name captions.
TEXT_TEMPLATE = "a photo of {taxonomic_name} with common name {common_name}."
# Used when a taxon has no common name (all higher ranks, and species whose source has none):
# BioCLIP's "taxonomic" caption variant without the common-name clause.
TEXT_TEMPLATE_NO_COMMON = "a photo of {taxonomic_name}."

Lineage = Tuple[str, str, str, str, str, str, str]

_WORD = re.compile(r"^\S+$")


class TaxonomyError(ValueError):
  """A lineage or species list is malformed; the message names the offending row."""


def normalize_lineage(values: Sequence[Optional[str]], where: str = "") -> Lineage:
  """Validates 7 bare names and returns them as a tuple.

  A species value that repeats its genus ("Turdus migratorius") is reduced to the epithet,
  so catalogs that store binomials and catalogs that store epithets both work.

  Raises:
    TaxonomyError: a rank is missing/empty or a name contains whitespace.
  """
  if len(values) != NUM_RANKS:
    raise TaxonomyError(f"{where}: expected {NUM_RANKS} ranks, got {len(values)}: {values!r}")
  names = [("" if v is None else str(v)).strip() for v in values]
  genus, species = names[5], names[6]
  parts = species.split()
  if len(parts) == 2 and parts[0] == genus:
    names[6] = parts[1]
  for rank, name in zip(RANKS, names):
    if not name:
      raise TaxonomyError(f"{where}: rank '{rank}' is empty in {values!r}")
    if not _WORD.match(name):
      raise TaxonomyError(f"{where}: rank '{rank}' name {name!r} contains whitespace")
  return tuple(names)  # type: ignore[return-value]


def taxon_name(lineage: Sequence[str], rank_index: int) -> str:
  """Full lineage name down to RANKS[rank_index], e.g. 'Animalia Chordata Aves'."""
  return " ".join(lineage[: rank_index + 1])


def short_name(lineage: Sequence[str], rank_index: int) -> str:
  """Last word of the taxon name (last two, the binomial, for species)."""
  if rank_index == NUM_RANKS - 1:
    return f"{lineage[5]} {lineage[6]}"
  return lineage[rank_index]


def taxon_text(name: str, common_name: str = "") -> str:
  """The exact caption BioCLIP scores a taxon with (see module constants)."""
  if common_name:
    return TEXT_TEMPLATE.format(taxonomic_name=name, common_name=common_name)
  return TEXT_TEMPLATE_NO_COMMON.format(taxonomic_name=name)


@dataclasses.dataclass(frozen=True, eq=False)
class RankTable:
  """One rank of the label bank: row i is taxon i.

  names: full lineage names, unique, in row order (== the ClassLabel names of that rank).
  parents: int32 [N], the row of each taxon's parent in the previous rank (-1 for kingdom).
  common_names: [N] str, '' when unknown.
  """
  rank: str
  names: Tuple[str, ...]
  parents: np.ndarray
  common_names: Tuple[str, ...]

  def __len__(self) -> int:
    return len(self.names)


def make_rank_table(rank: str, names: Sequence[str], parents: Sequence[int],
                    common_names: Sequence[str]) -> RankTable:
  return RankTable(rank, tuple(names), np.asarray(parents, np.int32).reshape(-1),
                   tuple(common_names))


def species_ancestors(parents: Mapping[str, Sequence[int]]) -> np.ndarray:
  """parents[rank]: the parent row of each taxon of that rank -> int32 [7, S].

  Row r of the result holds, for every species s, the row of its ancestor at RANKS[r]
  (the last row is s itself).

  Raises:
    FormatError: a taxon below kingdom has parent -1.
  """
  num_species = len(parents[RANKS[-1]])
  out = np.zeros((NUM_RANKS, num_species), np.int32)
  current = np.arange(num_species)
  out[-1] = current
  for r in range(NUM_RANKS - 1, 0, -1):
    current = np.asarray(parents[RANKS[r]])[current]
    if (current < 0).any():
      raise FormatError(f"label bank: a {RANKS[r]} row has parent_index -1 but is not a kingdom")
    out[r - 1] = current
  return out


class Taxonomy:
  """All taxa at all 7 ranks, built deterministically from a set of species lineages.

  Rows at each rank are sorted by taxon name (plain code-point order), so every worker that
  sees the same set of species builds the same tables, independent of input order.
  """

  def __init__(self, species: Mapping[Lineage, str]):
    """species: lineage -> common name ('' if none). Higher ranks get no common name."""
    if not species:
      raise TaxonomyError("the taxonomy is empty: no species with a complete 7-rank lineage")
    self.tables: List[RankTable] = []
    self._index: List[Dict[str, int]] = []
    for r, rank in enumerate(RANKS):
      names = sorted({taxon_name(l, r) for l in species})
      index = {n: i for i, n in enumerate(names)}
      if r == 0:
        parents = [-1] * len(names)
      else:
        parents = [self._index[r - 1][n.rsplit(" ", 1)[0]] for n in names]
      if r == NUM_RANKS - 1:
        by_name = {taxon_name(l, r): c for l, c in species.items()}
        commons = [by_name[n] for n in names]
      else:
        commons = [""] * len(names)
      self.tables.append(make_rank_table(rank, names, parents, commons))
      self._index.append(index)

  @classmethod
  def from_tables(cls, tables: Sequence[RankTable]) -> "Taxonomy":
    """The taxonomy whose tables these are (e.g. a label bank's, as read back from its TSVs):
    how later teacher_cache workers get the taxonomy without re-reading the catalog."""
    if [t.rank for t in tables] != list(RANKS):
      raise TaxonomyError(f"taxonomy tables must be the ranks {list(RANKS)} in order")
    self = cls.__new__(cls)
    self.tables = list(tables)
    self._index = [{n: i for i, n in enumerate(t.names)} for t in self.tables]
    return self

  @classmethod
  def from_rows(cls, rows: Iterable[Tuple[Lineage, str]]) -> "Taxonomy":
    """rows: (lineage, common_name). Conflicting common names: the first non-empty wins
    in sorted order, so the result does not depend on row order."""
    commons: Dict[Lineage, set] = {}
    for lineage, common in rows:
      commons.setdefault(lineage, set())
      if common:
        commons[lineage].add(common)
    return cls({l: (sorted(c)[0] if c else "") for l, c in commons.items()})

  def index_of(self, lineage: Lineage) -> Tuple[int, ...]:
    """Row indices of the lineage at each of the 7 ranks. KeyError if unknown."""
    return tuple(self._index[r][taxon_name(lineage, r)] for r in range(NUM_RANKS))

  def contains(self, lineage: Lineage) -> bool:
    return taxon_name(lineage, NUM_RANKS - 1) in self._index[-1]

  @property
  def num_species(self) -> int:
    return len(self.tables[-1])

  def texts(self, rank_index: int) -> List[str]:
    """The caption for each row of one rank, in row order."""
    t = self.tables[rank_index]
    return [taxon_text(n, c) for n, c in zip(t.names, t.common_names)]

  def fingerprint(self) -> str:
    """sha256 over every rank's rows (names, parents, common names)."""
    h = hashlib.sha256()
    for t in self.tables:
      for n, p, c in zip(t.names, t.parents.tolist(), t.common_names):
        h.update(f"{t.rank}\t{n}\t{p}\t{c}\n".encode("utf-8"))
    return h.hexdigest()
