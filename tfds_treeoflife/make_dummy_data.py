r"""Writes a tiny teacher_cache directory (format 2) for tests: `tfds_treeoflife/dummy_data/`.

It follows docs/FORMATS.md section 1 with numpy and PIL only (no teacher_cache import, no
torch): 8 real taxa, small JPEG photos (one PNG, to exercise transcoding), random unit text
embeddings, and teacher image embeddings that lean towards the photo's true species so the
top-k logits look like a teacher's. Width D=16 on purpose: nothing may assume 512.

  python -m tfds_treeoflife.make_dummy_data            # rewrites tfds_treeoflife/dummy_data
  python -m tfds_treeoflife.make_dummy_data --out_dir=/tmp/cache --num_photos=2000
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from formats import label_bank as label_bank_format
from formats import teacher_cache as cache_format
from formats.ranks import RANKS
from formats.taxonomy import TEXT_TEMPLATE, make_rank_table

# (lineage kingdom..genus, epithet, common name)
DUMMY_TAXA: Tuple[Tuple[Tuple[str, ...], str, str], ...] = (
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus"), "migratorius",
     "American Robin"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus"), "merula",
     "Common Blackbird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus"), "corax",
     "Common Raven"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Lynx"), "rufus", "Bobcat"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus"), "plexippus",
     "Monarch"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Helianthus"),
     "annuus", "Common Sunflower"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa"), "canina",
     "Dog Rose"),
    (("Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita"),
     "muscaria", ""),
)


def synthetic_taxa(num_species: int, branching: int = 4):
  """num_species made-up taxa in a balanced tree (for benchmarks that need a bigger bank)."""
  taxa = []
  for i in range(num_species):
    lineage = tuple(f"{rank.capitalize()}{(i // branching ** (6 - r)) % (branching ** (r + 1))}"
                    for r, rank in enumerate(RANKS[:-1]))
    taxa.append((lineage, f"species{i}", f"synthetic {i}" if i % 3 else ""))
  return tuple(taxa)


def _unit(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def build_tables(taxa=DUMMY_TAXA) -> Tuple[Dict[str, List[Tuple[str, int, str]]],
                                            np.ndarray]:
  """Rank tables {rank: [(lineage name, parent row, common name)]} and taxon_index [S, 7]."""
  tables: Dict[str, List[Tuple[str, int, str]]] = {r: [] for r in RANKS}
  row_of: Dict[str, Dict[str, int]] = {r: {} for r in RANKS}
  species_rows = []
  for lineage, epithet, common in taxa:
    words = list(lineage) + [epithet]
    path = []
    parent = -1
    for r, rank in enumerate(RANKS):
      name = " ".join(words[:r + 1])
      if name not in row_of[rank]:
        row_of[rank][name] = len(tables[rank])
        tables[rank].append((name, parent, common if rank == "species" else ""))
      parent = row_of[rank][name]
      path.append(parent)
    species_rows.append(path)
  return tables, np.asarray(species_rows, np.int32)


def write_label_bank(out_dir: str, tables, embed_dim: int, rng: np.random.Generator
                     ) -> Dict[str, np.ndarray]:
  """Writes out_dir/label_bank/ (random unit text embeddings); returns them by rank."""
  rank_tables = [make_rank_table(rank, [n for n, _, _ in tables[rank]],
                                 [p for _, p, _ in tables[rank]], [c for _, _, c in tables[rank]])
                 for rank in RANKS]
  embeddings = {rank: _unit(rng.normal(size=(len(tables[rank]), embed_dim))) for rank in RANKS}
  label_bank_format.write_label_bank(os.path.join(out_dir, label_bank_format.LABEL_BANK_DIR),
                                     rank_tables, embed_dim,
                                     label_bank_format.in_memory_rows(embeddings))
  return embeddings


def _photo(rng: np.random.Generator, fmt: str, size: int = 0) -> bytes:
  """A random photo: tiny noise of random shape, or (size > 0) a smooth size x size picture
  whose JPEG is about as large as a TreeOfLife-10M photo's (~15 KB at 224)."""
  if size:
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((size, size), Image.BICUBIC), np.float32)
    pixels = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
  else:
    h, w = (int(v) for v in rng.integers(12, 40, size=2))
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
  return out.getvalue()


def generated_manifest(teacher_id: str, embed_dim: int, logit_scale: float, topk: int,
                       source: dict, num_photos: int, num_shards: int,
                       views: dict = None) -> dict:
  """The manifest of a generated cache: a stand-in teacher with BioCLIP's preprocessing."""
  return {
      "views": views or cache_format.views_config(1),
      "teacher": {"id": teacher_id, "pretrained": "none", "checkpoint_sha256": "",
                  "embed_dim": embed_dim, "logit_scale": logit_scale},
      "preprocessing": {"size": 224, "resize": "squash", "interpolation": "bicubic",
                        "mean": [0.48145466, 0.4578275, 0.40821073],
                        "std": [0.26862954, 0.26130258, 0.27577711]},
      "text_template": TEXT_TEMPLATE,
      "topk": topk,
      "source": source,
      "counts": {"written": num_photos, "skipped": 0},
      "shards": {"num_shards": num_shards},
  }


def view_targets(keys, images, base_emb, noise_rngs, species_bank, views, logit_scale, topk):
  """The per-view arrays of a generated part (spec: docs/FORMATS.md section 1).

  View 0's embedding is base_emb (the whole photo); view v > 0 adds fresh noise, as if the
  teacher saw another crop. Boxes/flips come from formats.teacher_cache.sample_views on the
  decoded photo size; logsumexp is over all species, brute force.
  """
  n, d = base_emb.shape
  count = int(views["count"])
  emb = np.zeros((n, count, d), np.float32)
  boxes = np.zeros((n, count, 4), np.int32)
  flips = np.zeros((n, count), np.uint8)
  for i, (key, data) in enumerate(zip(keys, images)):
    with Image.open(io.BytesIO(data)) as im:
      w, h = im.size
    boxes[i], flips[i] = cache_format.sample_views(key, h, w, views)
    emb[i, 0] = base_emb[i]
    for v in range(1, count):
      emb[i, v] = _unit(base_emb[i] + 0.3 * noise_rngs[i].normal(size=d))
  k = min(topk, len(species_bank))
  idx = np.zeros((n, count, k), np.int32)
  top = np.zeros((n, count, k), np.float32)
  lse = np.zeros((n, count), np.float32)
  for s in range(0, n, 16):  # 16 rows at a time: [16, V, S] logits stay small at 454k species
    logits = logit_scale * np.einsum("nvd,sd->nvs", emb[s:s + 16], species_bank)
    order = np.argsort(-logits, axis=2, kind="stable")[:, :, :k]
    idx[s:s + 16] = order
    top[s:s + 16] = np.take_along_axis(logits, order, 2)
    lse[s:s + 16] = cache_format.logsumexp(logits, axis=2)
  return {
      "teacher_embedding": emb,
      "topk_species_indices": idx,
      "topk_species_logits": top,
      "teacher_logsumexp": lse,
      "view_boxes": boxes,
      "view_flips": flips,
  }


def write_cache(out_dir: str, num_photos: int = 40, num_shards: int = 2, parts_per_shard: int = 2,
                embed_dim: int = 16, topk: int = 5, logit_scale: float = 100.0, seed: int = 0,
                taxa: Sequence = DUMMY_TAXA, png_every: int = 17, photo_size: int = 0,
                num_views: int = 2) -> str:
  """Writes a complete format-2 cache to out_dir (replacing it). Returns out_dir.

  Photo i has key `dummy-{i:06d}` and species i % len(taxa); every png_every-th photo is PNG
  (png_every=0: none). photo_size=0 makes tiny photos of random shape; N makes N x N photos.
  num_views: V (view 0 the whole photo; views seeded by `seed`).
  """
  views = cache_format.views_config(num_views, seed)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.makedirs(out_dir)
  rng = np.random.default_rng(seed)
  tables, species_paths = build_tables(taxa)
  bank = write_label_bank(out_dir, tables, embed_dim, rng)
  species_common = [c for _, _, c in tables["species"]]

  per_shard = np.array_split(np.arange(num_photos), num_shards)
  for s, shard_rows in enumerate(per_shard):
    shard = f"shard-{s:05d}-of-{num_shards:05d}"
    parts = []
    for p, rows in enumerate(np.array_split(shard_rows, parts_per_shard)):
      if len(rows) == 0:
        continue
      species = np.asarray([i % len(taxa) for i in rows])
      # One generator per photo, so a photo's bytes and embedding do not depend on how the
      # photos are cut into shards and parts (the determinism tests rely on it).
      photo_rngs = [np.random.default_rng([seed, int(i)]) for i in rows]
      images = [_photo(r, "PNG" if png_every and i % png_every == png_every - 1 else "JPEG",
                       photo_size) for r, i in zip(photo_rngs, rows)]
      offsets = np.concatenate([[0], np.cumsum([len(b) for b in images])]).astype(np.int64)
      noise = np.stack([r.normal(size=embed_dim) for r in photo_rngs])
      emb = _unit(bank["species"][species] + 0.7 * noise)
      keys = [f"dummy-{i:06d}" for i in rows]
      part_path = os.path.join(out_dir, "rows", shard, f"part-{p:06d}.npz")
      cache_format.write_part(part_path, {
          "key": np.asarray(keys),
          "image_bytes": np.frombuffer(b"".join(images), np.uint8),
          "image_offsets": offsets,
          "taxon_index": species_paths[species],
          "common_name": np.asarray([species_common[k] for k in species]),
          **view_targets(keys, images, emb, photo_rngs, bank["species"], views, logit_scale,
                         topk),
      })
      parts.append(os.path.basename(part_path))
    cache_format.write_shard_done(out_dir, shard, {"shard_index": s, "num_shards": num_shards,
                                                   "parts": parts, "rows": int(len(shard_rows))})
    cache_format.write_skipped(out_dir, shard, [])

  manifest = generated_manifest("ViT-B-16", embed_dim, logit_scale, topk,
                                {"kind": "dummy", "spec": "tfds_treeoflife.make_dummy_data",
                                 "fingerprint": hashlib.sha1(f"{num_photos}:{seed}".encode()
                                                             ).hexdigest()},
                                num_photos, num_shards, views)
  cache_format.write_manifest(out_dir, manifest)
  return out_dir


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  write_cache(f.out_dir, num_photos=f.num_photos, num_shards=f.num_shards,
              parts_per_shard=f.parts_per_shard, embed_dim=f.embed_dim, seed=f.seed,
              num_views=f.num_views)
  print(f"wrote a {f.num_photos}-photo teacher cache to {f.out_dir}")


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("out_dir", os.path.join(os.path.dirname(__file__), "dummy_data"),
                      "Directory to (re)write the dummy teacher cache into.")
  flags.DEFINE_integer("num_photos", 40, "Number of photos in the cache.")
  flags.DEFINE_integer("num_shards", 2, "Number of teacher_cache shards.")
  flags.DEFINE_integer("parts_per_shard", 2, "Part files per shard.")
  flags.DEFINE_integer("embed_dim", 16, "Teacher embedding width D.")
  flags.DEFINE_integer("seed", 0, "Random seed (photos, embeddings).")
  flags.DEFINE_integer("num_views", 2, "Views per photo (V; view 0 is the whole photo).")
  app.run(main)
