r"""Writes a TreeOfLife-sized device label bank (454k species x 512, int8) for the scale bench.

  .venv/bin/python react-bio-clip/bench/make_scale_bank.py --out_dir=/tmp/bioclip_scale_bank \
      [--num_species=454103] [--embed_dim=512] [--dtype=int8]

The bank is written by the real writer (formats.device_label_bank, format version 2), so its
files are byte for byte what an export ships. The taxonomy is synthetic but shaped like
TreeOfLife-10M's (the tree shape of bench/structured_label_bank.py: rank_counts
and assign_parents), with leaf names of realistic length (Latin-looking words of 5-14 letters) and a common
name for about a third of the species. Rows are random unit vectors, generated chunk by chunk
(no float32 [N, D] matrix is ever held: the writer pulls slices of a lazy source).
Nothing here is an accuracy number; react-bio-clip/bench/label_bank_scale.js measures it.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags, logging

from bench.structured_label_bank import assign_parents, rank_counts
from formats import device_label_bank
from formats.errors import FormatError
from formats.ranks import RANKS
from formats.taxonomy import make_rank_table

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", None, "Directory to write the device label bank into.")
flags.DEFINE_integer("num_species", 454103, "Species (TreeOfLife-10M names 454,103 taxa).")
flags.DEFINE_integer("embed_dim", 512, "Row width D (BioCLIP's is 512).")
flags.DEFINE_enum("dtype", "int8", list(device_label_bank.DTYPES), "Row storage.")
flags.DEFINE_integer("seed", 0, "Seed for names and rows.")

SYLLABLES = ("ra", "mi", "lo", "ta", "cu", "phy", "ter", "on", "al", "is", "um", "ae", "ops",
             "dra", "ni", "co", "pus", "the", "ri", "a", "o", "li", "na", "sto", "ma", "gen")


def _word(rng: np.random.Generator, serial: int, capital: bool) -> str:
  """A Latin-looking word, unique by its serial (base-26 tail), 5-14 letters."""
  parts = rng.choice(SYLLABLES, size=int(rng.integers(2, 5)))
  tail = ""
  n = serial
  while True:
    tail = chr(ord("a") + n % 26) + tail
    n //= 26
    if not n:
      break
  word = "".join(parts) + tail
  return word.capitalize() if capital else word


def synthetic_tables(num_species: int, seed: int):
  rng = np.random.default_rng(seed)
  sizes = rank_counts(num_species)
  tables = []
  previous = None
  for depth, (rank, size) in enumerate(zip(RANKS, sizes)):
    if depth == 0:
      parents = np.full(size, -1, np.int32)
    else:
      parents = assign_parents(rng, size, len(previous))
    names, commons = [], []
    for i in range(size):
      leaf = _word(rng, i, capital=rank != "species")
      names.append(leaf if depth == 0 else f"{previous[parents[i]]} {leaf}")
      commons.append(f"{_word(rng, i, True)} {_word(rng, i, False)}"
                     if rank == "species" and i % 3 == 0 else "")
    tables.append(make_rank_table(rank, names, parents, commons))
    previous = names
  return tables


class LazyRows:
  """float32 [n, D] unit rows, made on demand per slice (deterministic per row block)."""

  def __init__(self, n: int, d: int, seed: int, block: int = 65536):
    self.shape = (n, d)
    self.ndim = 2
    self._seed, self._block = seed, block

  def __len__(self):
    return self.shape[0]

  def __getitem__(self, key):
    start, stop, _ = key.indices(self.shape[0])
    out = []
    for b in range(start // self._block, (max(stop, start + 1) - 1) // self._block + 1):
      rows = np.random.default_rng([self._seed, b]).standard_normal(
          (min(self._block, self.shape[0] - b * self._block), self.shape[1]), np.float32)
      rows /= np.linalg.norm(rows, axis=1, keepdims=True)
      lo = max(start - b * self._block, 0)
      hi = min(stop - b * self._block, len(rows))
      out.append(rows[lo:hi])
    return np.concatenate(out) if out else np.zeros((0, self.shape[1]), np.float32)


def main(argv):
  del argv
  if not FLAGS.out_dir:
    print("error: --out_dir is required", file=sys.stderr)
    return 2
  tables = synthetic_tables(FLAGS.num_species, FLAGS.seed)
  logging.info("taxonomy: %s", {t.rank: len(t) for t in tables})
  try:
    meta = device_label_bank.write_device_label_bank(
        FLAGS.out_dir, tables, LazyRows(FLAGS.num_species, FLAGS.embed_dim, FLAGS.seed), 100.0,
        {"id": "synthetic-scale-bench", "real_weights": False}, FLAGS.dtype,
        source={"script": "react-bio-clip/bench/make_scale_bank.py", "seed": FLAGS.seed},
        log=logging.info)
  except FormatError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print({name: f["bytes"] for name, f in meta["files"].items()})
  return 0


if __name__ == "__main__":
  os.environ.setdefault("PYTHONHASHSEED", "0")
  app.run(main)
