"""Micro-benchmark of the species head at scale: the default distillation losses' value and
gradient w.r.t. a [B, D] embedding, inside tf.function, on a synthetic 454,103-species bank.

Variants: 'chunked_<c>' is the training path (StudentOutputs without species_logits, the bank's
chunk_size = c; c >= S is one chunk); 'dense' passes the [B, S] logits (StudentOutputs with
species_logits: the segment ops on [S, B] of commit 24c69b3's losses/common.py, kept as the
dense path), the reference the chunked head is compared against. Median of --steps steps after
one warm-up (trace) step. Results merge into bench/results/head.json under --label.

  python bench/head_bench.py --label after --batch 8 --variants dense,chunked_8192,...
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from bench import results_io
from bioclip_lite_tf import losses
from bioclip_lite_tf.keras import tf

RANK_SIZES = (7, 100, 500, 1900, 11000, 78000, 454103)
LOSS_CONFIG = {"soft_label": {"weight": 1.0, "temperature": 1.0, "normalizer": "full"},
               "hierarchical": {"weight": 0.5, "teacher_weight": 1.0, "label_weight": 1.0,
                                "normalizer": "full"}}   # configs/default.py's head losses


def synthetic_bank(dim: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  num_species = RANK_SIZES[-1]
  anc = np.zeros((7, num_species), np.int32)
  anc[6] = np.arange(num_species)
  anc[5] = rng.integers(0, RANK_SIZES[5], num_species)
  for r in range(4, -1, -1):
    anc[r] = rng.integers(0, RANK_SIZES[r], RANK_SIZES[r + 1])[anc[r + 1]]
  text = rng.standard_normal((num_species, dim), dtype=np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  return tf.constant(text), tf.constant(anc)


def synthetic_batch(batch: int, k: int, dim: int, anc: np.ndarray, seed: int = 1):
  rng = np.random.default_rng(seed)
  num_species = anc.shape[1]
  logits = np.sort(rng.normal(size=(batch, k)).astype(np.float32) * 3)[:, ::-1] + 20
  teacher = rng.standard_normal((batch, dim)).astype(np.float32)
  return {"topk_species_indices": rng.integers(0, num_species, (batch, k)).astype(np.int32),
          "topk_species_logits": np.ascontiguousarray(logits),
          "teacher_logsumexp": (np.log(np.exp(logits).sum(1)) + 0.5).astype(np.float32),
          "labels": anc[:, rng.integers(0, num_species, batch)].T.astype(np.int32),
          "teacher_embedding": teacher / np.linalg.norm(teacher, axis=1, keepdims=True)}


def time_variant(variant: str, text, anc, batch_np, dim: int, steps: int):
  chunk = 0 if variant == "dense" else int(variant.split("_", 1)[1])
  bank = losses.LabelBankTensors(text, anc, RANK_SIZES, 100.0, chunk_size=chunk)
  b = batch_np["labels"].shape[0]
  batch = {k: tf.constant(v) for k, v in batch_np.items()}
  rng = np.random.default_rng(2)
  init = rng.standard_normal((b, dim)).astype(np.float32)
  var = tf.Variable(init / np.linalg.norm(init, axis=1, keepdims=True))

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      out = (losses.StudentOutputs(var, losses.species_logits(var, bank)) if variant == "dense"
             else losses.StudentOutputs(var))
      total = losses.total_loss(out, batch, bank, LOSS_CONFIG, global_batch_size=b)["total"]
    return total, tape.gradient(total, var)

  t0 = time.perf_counter()
  total, grad = step()
  warm = time.perf_counter() - t0
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    total, grad = step()
    grad.numpy()
    times.append(time.perf_counter() - t0)
  return {"variant": variant, "batch": b, "chunk_size": chunk, "warmup_s": round(warm, 3),
          "median_s": round(statistics.median(times), 4), "steps_s": [round(t, 4) for t in times],
          "loss": float(total.numpy()), "grad_norm": float(np.linalg.norm(grad.numpy()))}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--label", required=True, help="e.g. before / after")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--dim", type=int, default=512)
  p.add_argument("--k", type=int, default=32)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--variants", default="dense,chunked_8192,chunked_65536,chunked_454103")
  p.add_argument("--out", default="bench/results/head.json")
  a = p.parse_args()
  text, anc = synthetic_bank(a.dim)
  batch_np = synthetic_batch(a.batch, a.k, a.dim, anc.numpy())
  rows = []
  for v in a.variants.split(","):
    row = time_variant(v, text, anc, batch_np, a.dim, a.steps)
    print(json.dumps(row), flush=True)
    rows.append(row)
  result = {}
  if os.path.exists(a.out):
    with open(a.out) as f:
      result = json.load(f)
  result.setdefault("bank", {"species": RANK_SIZES[-1], "rank_sizes": list(RANK_SIZES),
                             "dim": a.dim, "k": a.k, "losses": LOSS_CONFIG})
  result.setdefault("runs", {})[f"{a.label}_B{a.batch}"] = {
      "machine": results_io.machine(), "rows": rows}
  results_io.write_result(a.out, result)


if __name__ == "__main__":
  main()
