r"""Compact global bank: bytes for 454k species against species top-1 agreement with float32.

  python -m bench.label_bank_compact [--demo_cache=runs/demo/teacher_cache] [--species=454103]
  (measured: --demo_cache=<a copy of runs/demo/teacher_cache>, other flags at their defaults;
  about 15 minutes on 2 heavily shared cores, most of it scoring 454k species)

For each option of bioclip_lite_tf.export.compact_bank (int8, int4, PCA projections + int8 or
int4, float16) it encodes
  (a) the demo teacher cache's label bank (CACHE/label_bank/species.npy), queried with that
      cache's teacher image embeddings (CACHE/rows/*/part-*.npz `teacher_embedding`, view 0);
  (b) a generated bank with taxonomic structure at TreeOfLife-10M's size
      (bench/structured_label_bank.py), queried with species rows plus image-like
      noise whose scale is picked here so that float32 top-1 against the true species is neither
      trivial nor hopeless (recorded beside the results),
and scores every query with the decoded compact bank exactly as the device does
(q . mean + (q @ P) . row, CompactBank.top1) against float32 scoring of the original rows.
Bytes are the encoded bank's at the generated bank's size (rows + scales + projection), plus an
estimate of the names file (leaf names + parent index per rank) reported separately.

Writes bench/results/label_bank_scale.json keys `compact` (compact.<option>.{bytes,
top1_agreement_demo_bank, top1_agreement_structured_bank, ...}) and `compact_bench` (parameters,
machine, the chosen default) by read-modify-write: the file's other keys belong to the device
bank bench and are kept.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np

from bench.results_io import machine, write_result
from bioclip_lite_tf.export import compact_bank
from bench import structured_label_bank
from formats import atomic
from formats import label_bank as label_bank_format
from formats.ranks import RANKS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, "bench", "results", "label_bank_scale.json")
OPTIONS = ("float16", "int8", "int4", "pca256_int4", "pca192_int4", "pca128_int4",
           "pca128_int8", "pca96_int8", "pca64_int8", "pca16_int8")
BUDGET_BYTES = 64_000_000  # "<= 64 MB" read as 10^6 bytes, the stricter reading
MIN_AGREEMENT = 0.99
# Image-noise scales tried on the generated bank, smallest first; the first whose float32 top-1
# against the true species is <= TARGET_TRUE_TOP1 is used.
IMAGE_NOISES = (1.0, 1.2, 1.4, 1.6, 2.0)
TARGET_TRUE_TOP1 = 0.85
# A names file of leaf names + offsets + parent index per taxon: UTF-8 bytes + 4 + 4 per taxon.
NAME_OVERHEAD_BYTES = 8


def measure_options(rows: np.ndarray, queries: np.ndarray, options: Sequence[str],
                    log=lambda msg: None) -> Dict[str, dict]:
  """{option: {bytes, top1_agreement}} for one bank: every option encoded, its top-1 computed
  with the decoded compact bank, compared with float32 top-1 of `rows`."""
  reference = compact_bank.float32_top1(rows, queries)
  basis = None
  out = {}
  for option in options:
    start = time.time()
    dtype, dims = compact_bank.parse_option(option)
    if dims and basis is None:
      basis = compact_bank.pca_basis(rows)
    if dims > rows.shape[1]:
      continue
    bank = compact_bank.encode(rows, dtype, dims, basis=basis)
    agreement = compact_bank.top1_agreement(rows, bank, queries, reference)
    out[option] = {"bytes": bank.bytes["total"], "bytes_detail": bank.bytes,
                   "top1_agreement": agreement}
    log(f"{option}: {bank.bytes['total']} bytes, top-1 agreement {agreement:.4f} "
        f"({time.time() - start:.1f}s)")
    del bank
  return out


def demo_bank(cache_dir: str, max_queries: int):
  """(species rows float32 [S, D], teacher image embeddings float32 [m, D], leaf name bytes per
  rank) of a teacher cache."""
  bank = label_bank_format.read_label_bank(os.path.join(cache_dir, "label_bank"))
  parts = sorted(glob.glob(os.path.join(cache_dir, "rows", "*", "part-*.npz")))
  if not parts:
    raise FileNotFoundError(f"{cache_dir}/rows/*/part-*.npz: no teacher cache parts")
  embeddings = []
  for path in parts:
    with np.load(path) as part:
      e = part["teacher_embedding"]
      embeddings.append(e[:, 0] if e.ndim == 3 else e)  # format 2: view 0 is the whole photo
  queries = np.concatenate(embeddings)[:max_queries].astype(np.float32)
  leaf_bytes = {t.rank: float(np.mean([len(n.rsplit(" ", 1)[-1].encode("utf-8"))
                                       for n in t.names])) for t in bank.tables}
  return np.asarray(bank.species_embeddings, np.float32), queries, leaf_bytes


def names_bytes_estimate(counts: Dict[str, int], leaf_bytes: Dict[str, float]) -> int:
  """Bytes of a names file for `counts` taxa per rank with the given mean leaf-name length."""
  return int(sum(counts[r] * (leaf_bytes[r] + NAME_OVERHEAD_BYTES) for r in RANKS))


def choose_default(compact: Dict[str, dict], names_bytes: int) -> dict:
  """The smallest option with both agreements >= MIN_AGREEMENT within BUDGET_BYTES (names
  included); else the within-budget option with the best worse-of-the-two agreement."""
  def worst(o):
    return min(compact[o]["top1_agreement_demo_bank"],
               compact[o]["top1_agreement_structured_bank"])
  within = [o for o in compact if compact[o]["bytes"] + names_bytes <= BUDGET_BYTES]
  passing = [o for o in within if worst(o) >= MIN_AGREEMENT]
  if passing:
    best = min(passing, key=lambda o: compact[o]["bytes"])
    return {"option": best, "meets_goal": True,
            "why": f"smallest with top-1 agreement >= {MIN_AGREEMENT} on both banks within "
                   f"{BUDGET_BYTES} bytes including names"}
  if not within:
    return {"option": None, "meets_goal": False, "why": "no option fits the budget"}
  best = max(within, key=lambda o: (worst(o), -compact[o]["bytes"]))
  return {"option": best, "meets_goal": False,
          "why": f"no option reaches {MIN_AGREEMENT} on both banks within {BUDGET_BYTES} bytes "
                 "including names; this one has the best worse-of-the-two agreement within it"}


def run(demo_cache: str, num_species: int, embed_dim: int, num_queries: int,
        options: Sequence[str], seed: int, spectrum_decay: float, log=print) -> dict:
  start = time.time()
  demo_rows, demo_queries, leaf_bytes = demo_bank(demo_cache, num_queries)
  log(f"demo bank: {demo_rows.shape[0]} species x {demo_rows.shape[1]}, "
      f"{len(demo_queries)} teacher image embeddings")
  demo = measure_options(demo_rows, demo_queries, options, log)

  counts = structured_label_bank.TOL_COUNTS[:-1] + (num_species,)
  counts = tuple(min(c, num_species) for c in counts)
  generated = structured_label_bank.generate(counts, embed_dim, seed=seed,
                                             spectrum_decay=spectrum_decay)
  log(f"generated bank: {generated.counts} in {time.time() - start:.0f}s")
  noise, true_top1 = None, None
  for noise in IMAGE_NOISES:
    q, truth = structured_label_bank.queries(generated, 200, noise, seed + 1)
    true_top1 = float(np.mean(compact_bank.float32_top1(generated.species, q) == truth))
    log(f"image noise {noise}: float32 top-1 vs true species {true_top1:.3f}")
    if true_top1 <= TARGET_TRUE_TOP1:
      break
  queries, truth = structured_label_bank.queries(generated, num_queries, noise, seed + 2)
  true_top1 = float(np.mean(compact_bank.float32_top1(generated.species, queries) == truth))
  structured = measure_options(generated.species, queries, options, log)

  names_bytes = names_bytes_estimate(generated.counts, leaf_bytes)
  compact = {}
  for option in options:
    if option not in structured or option not in demo:
      continue
    compact[option] = {
        "bytes": structured[option]["bytes"],
        "bytes_with_names": structured[option]["bytes"] + names_bytes,
        "bytes_detail": structured[option]["bytes_detail"],
        # the demo bank has fewer species than dims: a projection to >= S - 1 dims loses nothing
        "top1_agreement_demo_bank": demo[option]["top1_agreement"],
        "top1_agreement_structured_bank": structured[option]["top1_agreement"],
    }
  choice = choose_default(compact, names_bytes)
  info = {
      "num_species": int(generated.species.shape[0]), "embed_dim": embed_dim,
      "num_queries": int(len(queries)), "names_bytes_estimate": names_bytes,
      "names_estimate": f"sum over ranks of N_rank x (mean leaf-name UTF-8 bytes of the demo "
                        f"bank + {NAME_OVERHEAD_BYTES} for offset and parent index)",
      "budget_bytes": BUDGET_BYTES, "min_agreement": MIN_AGREEMENT,
      "structured_bank": dict(generated.params, image_noise=noise,
                              float32_top1_vs_true_species=true_top1),
      "demo_bank": {"cache": os.path.relpath(os.path.abspath(demo_cache), REPO),
                    "num_species": int(demo_rows.shape[0]),
                    "num_queries": int(len(demo_queries)),
                    "queries": "teacher image embeddings (the demo teacher has random weights)"},
      "scoring": "decoded compact bank: q . mean + (q @ P) . (q_row * scale), chunked",
      "default": choice,
      "seconds": round(time.time() - start, 1),
      "machine": machine(),
  }
  return {"compact": compact, "compact_bench": info}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--demo_cache", default=os.path.join(REPO, "runs", "demo",
                                                           "teacher_cache"),
                      help="A teacher cache directory (label_bank/ and rows/), e.g. the one "
                           "`make demo` writes (only read).")
  parser.add_argument("--species", type=int, default=structured_label_bank.TOL_COUNTS[-1])
  parser.add_argument("--embed_dim", type=int, default=512)
  parser.add_argument("--queries", type=int, default=400)
  parser.add_argument("--options", default=",".join(OPTIONS))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--spectrum_decay", type=float, default=1.0)
  parser.add_argument("--out", default=RESULT)
  args = parser.parse_args(argv)
  try:
    options = [o for o in args.options.split(",") if o]
    for o in options:
      compact_bank.parse_option(o)
  except compact_bank.CompactOptionError as e:
    print(f"error: --options: {e}", file=sys.stderr)
    return 2
  if not os.path.isdir(os.path.join(args.demo_cache, "label_bank")):
    print(f"error: --demo_cache={args.demo_cache}: no label_bank/ (run `make demo`, or point "
          "it at a teacher cache)", file=sys.stderr)
    return 2
  result = run(args.demo_cache, args.species, args.embed_dim, args.queries, options, args.seed,
               args.spectrum_decay, log=lambda m: print(m, flush=True))
  existing = atomic.read_json(args.out) if os.path.isfile(args.out) else {}
  existing.update(result)
  write_result(args.out, existing)
  print(f"wrote {args.out}: default {result['compact_bench']['default']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
