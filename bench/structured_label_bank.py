"""A generated species bank with taxonomic structure, at any scale (454k species and up).

Each taxon's vector is its parent's plus Gaussian noise of a per-rank scale, so species sit near
their genus, genera near their family, and so on up to a few kingdoms around a shared offset
(CLIP text embeddings share a large common component: the caption template). The noise has a
power-law spectrum in a random orthonormal basis (variance of axis k ~ (k + 1)^-spectrum_decay),
as learned embeddings do, rather than being isotropic; decay 0 is isotropic. Species rows are
L2-normalized. Queries are species rows plus image-like noise, renormalized.

Used by bench/label_bank_compact.py and its tests; rank_counts and assign_parents also shape the
generated taxonomies of bench/scale_sim.py and react-bio-clip/bench/make_scale_bank.py (one
tree shape for every generated 454k bank). Nothing here is a real taxonomy.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from formats.ranks import RANKS

# Roughly TreeOfLife-10M's shape: 454k species in ~70k genera and ~8k families.
TOL_COUNTS = (6, 120, 420, 1800, 8000, 70000, 454103)
# Noise scale per rank (kingdom first), relative to the shared offset's norm of 1.
NOISE_SCALES = (1.0, 0.8, 0.7, 0.6, 0.5, 0.45, 0.35)


@dataclasses.dataclass(frozen=True)
class StructuredBank:
  """species: float32 [S, D] unit rows; parents: {rank: int32 [N_rank]} (-1 for kingdom);
  species_to_genus: int32 [S]; params: what made it."""
  species: np.ndarray
  parents: Dict[str, np.ndarray]
  params: dict

  @property
  def counts(self) -> Dict[str, int]:
    return {rank: int(len(p)) for rank, p in self.parents.items()}


def rank_counts(num_species: int, shape: Sequence[int] = TOL_COUNTS) -> List[int]:
  """kingdom..species counts in `shape`'s proportions (TreeOfLife-10M's by default) for
  num_species species: at least 1 per rank, never more taxa at a rank than at the rank below."""
  if num_species < 1:
    raise ValueError(f"num_species {num_species}: must be >= 1")
  counts = [max(1, int(round(c * num_species / shape[-1]))) for c in shape]
  counts[-1] = int(num_species)
  for r in range(len(counts) - 2, -1, -1):
    counts[r] = min(counts[r], counts[r + 1])
  return counts


def assign_parents(rng: np.random.Generator, n_children: int, n_parents: int) -> np.ndarray:
  """int32 [n_children] parent indices: every parent gets a child; the rest go to parents by a
  heavy-tailed weight (a few huge genera, many with one species), sorted so that siblings are
  contiguous (as in a name-sorted taxonomy)."""
  if n_children < n_parents:
    raise ValueError(f"{n_children} children for {n_parents} parents: every parent needs one")
  weights = rng.lognormal(0.0, 1.2, n_parents)
  extra = rng.choice(n_parents, n_children - n_parents, p=weights / weights.sum())
  return np.sort(np.concatenate([np.arange(n_parents), extra])).astype(np.int32)


def generate(counts: Sequence[int] = TOL_COUNTS, embed_dim: int = 512,
             noise_scales: Sequence[float] = NOISE_SCALES, spectrum_decay: float = 1.0,
             seed: int = 0, chunk_rows: int = 65536) -> StructuredBank:
  """The bank; counts and noise_scales are per rank, kingdom first, each count >= the last."""
  if len(counts) != len(RANKS) or any(b < a for a, b in zip(counts, counts[1:])):
    raise ValueError(f"counts {counts}: 7 non-decreasing counts, kingdom first")
  rng = np.random.default_rng(seed)
  basis, _ = np.linalg.qr(rng.standard_normal((embed_dim, embed_dim)))
  spectrum = (1.0 + np.arange(embed_dim)) ** (-spectrum_decay / 2.0)
  spectrum = spectrum / np.sqrt(np.sum(spectrum ** 2))  # noise of scale s has norm ~ s
  mix = (spectrum[:, None] * basis.T).astype(np.float32)  # [D, D]

  def noise(n: int, scale: float) -> np.ndarray:
    return (rng.standard_normal((n, embed_dim), dtype=np.float32) @ mix) * np.float32(scale)

  common = rng.standard_normal(embed_dim).astype(np.float32)
  common /= np.linalg.norm(common)
  parents = {RANKS[0]: np.full(counts[0], -1, np.int32)}
  level = common[None, :] + noise(counts[0], noise_scales[0])
  for r in range(1, len(RANKS) - 1):
    parent = assign_parents(rng, counts[r], counts[r - 1])
    parents[RANKS[r]] = parent
    level = level[parent] + noise(counts[r], noise_scales[r])
  genus_of = assign_parents(rng, counts[-1], counts[-2])
  parents[RANKS[-1]] = genus_of
  species = np.empty((counts[-1], embed_dim), np.float32)
  for start in range(0, counts[-1], chunk_rows):
    g = genus_of[start:start + chunk_rows]
    rows = level[g] + noise(len(g), noise_scales[-1])
    species[start:start + len(g)] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
  params = {"counts": dict(zip(RANKS, map(int, counts))), "embed_dim": int(embed_dim),
            "noise_scales": dict(zip(RANKS, map(float, noise_scales))),
            "spectrum_decay": float(spectrum_decay), "seed": int(seed)}
  return StructuredBank(species, parents, params)


def queries(bank: StructuredBank, num: int, image_noise: float, seed: int = 1
            ) -> Tuple[np.ndarray, np.ndarray]:
  """(float32 [num, D] unit queries, int64 [num] true species): a species row plus isotropic
  noise of norm ~image_noise, renormalized (species drawn uniformly)."""
  rng = np.random.default_rng(seed)
  truth = rng.integers(0, len(bank.species), num)
  d = bank.species.shape[1]
  q = bank.species[truth] + rng.standard_normal((num, d)).astype(np.float32) * np.float32(
      image_noise / np.sqrt(d))
  return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32), truth
