"""Regional and clade packs: the species of a checklist or of some clades, cut out of a label bank.

A pack is an ordinary device label bank (formats.device_label_bank) holding only the chosen
species and their ancestors; its rows are the source bank's rows for those species (the same
teacher text embeddings, so a pack scores exactly as the global bank restricted to them). No
teacher runs.

Names are resolved against the source bank's taxonomy:
  - a full lineage name at any rank ("Animalia Chordata Aves"),
  - a leaf name at any rank ("Aves", "Turdus"), or for species "Genus epithet"
    ("Turdus merula"). A leaf name shared by several taxa is ambiguous: PackSelectionError
    lists the candidates' full names, to be given instead.
Unknown names raise PackSelectionError listing every unknown name with close matches (difflib).
"""
from __future__ import annotations

import csv
import dataclasses
import difflib
from typing import Dict, List, Sequence, Tuple

import numpy as np

from formats.ranks import NUM_RANKS, RANKS
from formats.taxonomy import RankTable, TaxonomyError, make_rank_table, normalize_lineage, \
    species_ancestors, taxon_name

# Close-match suggestions are looked up for at most this many unknown names (difflib over a
# 454k-name taxonomy takes about a second a name).
MAX_SUGGESTED = 20


class PackSelectionError(ValueError):
  """Unknown or ambiguous taxon names, or an unreadable checklist; the message lists them."""


Taxon = Tuple[int, int]  # (rank index, row)


@dataclasses.dataclass(frozen=True)
class Pack:
  """species: sorted int64 rows of the source's species; tables: the pack's 7 RankTables."""
  species: np.ndarray
  tables: Tuple[RankTable, ...]


def _leaf(name: str, rank_index: int) -> str:
  words = name.split(" ")
  return " ".join(words[-2:]) if rank_index == NUM_RANKS - 1 else words[-1]


class NameIndex:
  """Full lineage names and leaf names of every taxon of a taxonomy, at every rank."""

  def __init__(self, tables: Sequence[RankTable]):
    self.tables = tuple(tables)
    self.full: Dict[str, Taxon] = {}
    self.leaf: Dict[str, List[Taxon]] = {}
    for r, table in enumerate(self.tables):
      for i, name in enumerate(table.names):
        self.full[name] = (r, i)
        self.leaf.setdefault(_leaf(name, r), []).append((r, i))

  def name_of(self, taxon: Taxon) -> str:
    return self.tables[taxon[0]].names[taxon[1]]

  def describe(self, taxon: Taxon) -> str:
    return f"{self.name_of(taxon)} ({RANKS[taxon[0]]})"

  def lookup(self, name: str, species_only: bool = False) -> List[Taxon]:
    """Every taxon `name` may mean (empty: unknown; several: ambiguous)."""
    name = " ".join(name.split())
    found = [self.full[name]] if name in self.full else self.leaf.get(name, [])
    if species_only:
      found = [t for t in found if t[0] == NUM_RANKS - 1]
    return found

  def close_matches(self, name: str, species_only: bool = False) -> List[str]:
    words = len(name.split())
    pool = {n for n in (list(self.full) + list(self.leaf)) if len(n.split()) == words}
    if species_only:
      pool = {n for n in pool if any(t[0] == NUM_RANKS - 1 for t in self.lookup(n))}
    return difflib.get_close_matches(name, sorted(pool), n=3, cutoff=0.75)

  def resolve(self, names: Sequence[str], species_only: bool = False) -> List[Taxon]:
    """One taxon per name, in order. PackSelectionError listing all unknown / ambiguous ones."""
    taxa, unknown, ambiguous = [], [], []
    for name in names:
      found = self.lookup(name, species_only)
      if not found:
        unknown.append(name)
      elif len(found) > 1:
        ambiguous.append((name, found))
      else:
        taxa.append(found[0])
    problems = []
    if unknown:
      what = "species" if species_only else "taxon names"
      lines = []
      for i, name in enumerate(unknown):
        close = self.close_matches(name, species_only) if i < MAX_SUGGESTED else []
        lines.append(f"  {name!r}" + (f" (close: {', '.join(close)})" if close else ""))
      problems.append(f"{len(unknown)} unknown {what} (not in the label bank):\n" +
                      "\n".join(lines))
    if ambiguous:
      lines = [f"  {name!r}: " + "; ".join(self.describe(t) for t in found)
               for name, found in ambiguous]
      problems.append(f"{len(ambiguous)} ambiguous names (give the full lineage name of one "
                      "of the candidates):\n" + "\n".join(lines))
    if problems:
      raise PackSelectionError("\n".join(problems))
    return taxa


def read_checklist(path: str) -> List[str]:
  """A checklist CSV -> its species names. Columns: `species` (a full lineage name or
  "Genus epithet"), or kingdom..species (the species column may hold the epithet or the
  binomial); other columns are ignored. PackSelectionError names the file and row at fault."""
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      reader = csv.DictReader(f)
      header = {(h or "").strip().lower(): h for h in (reader.fieldnames or [])}
      if "species" not in header:
        raise PackSelectionError(f"{path}: no `species` column (header: "
                                 f"{reader.fieldnames}); give a species column of full lineage "
                                 "names or 'Genus epithet', or the columns " + ",".join(RANKS))
      lineage_columns = all(r in header for r in RANKS)
      names = []
      for line_no, row in enumerate(reader, start=2):
        values = [(row.get(header[r]) or "").strip() for r in
                  (RANKS if lineage_columns else ("species",))]
        if not any(values):
          continue
        if lineage_columns:
          try:
            names.append(taxon_name(normalize_lineage(values, f"{path}:{line_no}"),
                                    NUM_RANKS - 1))
          except TaxonomyError as e:
            raise PackSelectionError(str(e)) from None
        else:
          names.append(values[0])
  except (OSError, UnicodeDecodeError, csv.Error) as e:
    raise PackSelectionError(f"{path}: cannot read the checklist ({e})") from None
  if not names:
    raise PackSelectionError(f"{path}: the checklist names no species")
  return names


def select_species(tables: Sequence[RankTable], taxa: Sequence[Taxon]) -> np.ndarray:
  """Sorted unique species rows under any of `taxa` (a species taxon selects itself)."""
  ancestors = species_ancestors({t.rank: t.parents for t in tables})
  keep = np.zeros(ancestors.shape[1], bool)
  for r, i in taxa:
    keep |= ancestors[r] == i
  return np.flatnonzero(keep)


def pack_tables(tables: Sequence[RankTable], species: np.ndarray) -> Tuple[RankTable, ...]:
  """The taxonomy of just `species` (sorted rows of tables[-1]) and their ancestors. Rows stay
  in the source's (name-sorted) order, so the pack's order is the one its taxonomy builds."""
  ancestors = species_ancestors({t.rank: t.parents for t in tables})
  out = []
  previous_new = None
  for r, table in enumerate(tables):
    rows = np.unique(ancestors[r][species]) if r < NUM_RANKS - 1 else np.asarray(species)
    if r == 0:
      parents = np.full(len(rows), -1, np.int32)
    else:
      parents = previous_new[table.parents[rows]]
    new = np.full(len(table), -1, np.int64)
    new[rows] = np.arange(len(rows))
    previous_new = new
    out.append(make_rank_table(table.rank, [table.names[i] for i in rows], parents,
                               [table.common_names[i] for i in rows]))
  return tuple(out)


def make_pack(tables: Sequence[RankTable], names: Sequence[str], species_only: bool) -> Pack:
  """Resolves `names` (checklist species or clades) and cuts the taxonomy to their species."""
  taxa = NameIndex(tables).resolve(names, species_only)
  species = select_species(tables, taxa)
  return Pack(species, pack_tables(tables, species))
