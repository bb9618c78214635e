r"""A small `tree_of_life_distill` with learnable structure, for tests and benchmarks.

  python -m bioclip_lite_tf.testing.synthetic --out_dir=/tmp/tol_synth [--num_photos=600]

Writes a teacher_cache directory (format 2, docs/FORMATS.md section 1) and builds the TFDS
dataset from it with tfds_treeoflife, i.e. the same reader and builder as the real path; only the
source of the bytes differs. Photos are drawn so that taxa look different (background colour by
family, shape by genus, foreground colour by species, random pose and noise), and the "teacher"
is a fixed deterministic function of the photo: its embedding leans towards the species' text
embedding plus a random projection of the downsampled photo, so its top-k are usually, not
always, the true species, and a student can learn to agree with it. Width D is a parameter
(default 24): nothing may assume 512. No torch, no teacher_cache import.

Views (spec B): each photo has `num_views` teacher targets (default 2); view v's box and flip
come from formats.teacher_cache.sample_views, and the stand-in teacher embeds exactly
apply_view(decoded JPEG pixels, box, flip), as the real teacher does (then its own resize).
So a student that applies the stored view to the decoded photo sees the teacher's pixels.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

from formats import atomic
from formats import teacher_cache as cache_format
from tfds_treeoflife import make_dummy_data as dummy

SYNTHETIC_TAXA = tuple(dummy.DUMMY_TAXA) + (
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus"), "corone",
     "Carrion Crow"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Lynx"), "lynx",
     "Eurasian Lynx"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus"), "chrysippus",
     "Plain Tiger"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Helianthus"),
     "tuberosus", "Jerusalem Artichoke"),
)


def _hash_unit(text: str, n: int) -> np.ndarray:
  digest = hashlib.sha256(text.encode()).digest()
  return np.frombuffer(digest[:n], np.uint8).astype(np.float64) / 255.0


def draw_photo(rng: np.random.Generator, lineage: Tuple[str, ...], size: int) -> np.ndarray:
  """uint8 [size, size, 3]: family -> background, genus -> shape, species -> colour."""
  family, genus, species = " ".join(lineage[:5]), " ".join(lineage[:6]), " ".join(lineage)
  background = (_hash_unit(family, 3) * 200 + 30).astype(int)
  colour = (_hash_unit(species, 3) * 255).astype(int)
  shape = int(_hash_unit(genus, 1)[0] * 3)
  img = Image.new("RGB", (size, size), tuple(int(c) for c in background))
  d = ImageDraw.Draw(img)
  r = size * rng.uniform(0.22, 0.36)
  cx, cy = size * rng.uniform(0.35, 0.65, size=2)
  box = [cx - r, cy - r, cx + r, cy + r]
  fill = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in colour)
  if shape == 0:
    d.ellipse(box, fill=fill)
  elif shape == 1:
    d.rectangle(box, fill=fill)
  else:
    d.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
  pixels = np.asarray(img).astype(np.float64) + rng.normal(0, 10, size=(size, size, 3))
  return np.clip(pixels, 0, 255).astype(np.uint8)


def teacher_embedding(pixels: np.ndarray, species_text: np.ndarray,
                      projection: np.ndarray) -> np.ndarray:
  """The stand-in teacher: unit(text_emb(species) + projection @ 4x4 downsampled photo)."""
  small = np.asarray(Image.fromarray(pixels).resize((4, 4), Image.BILINEAR), np.float64)
  features = small.reshape(-1) / 255.0 - 0.5
  v = species_text + projection @ features
  return (v / np.linalg.norm(v)).astype(np.float32)


def decoded_pixels(data: bytes) -> np.ndarray:
  """uint8 [H, W, 3]: the photo as PIL decodes it (what teacher and student both start from)."""
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert("RGB"), np.uint8)


def write_cache(out_dir: str, num_photos: int = 600, embed_dim: int = 24, topk: int = 5,
                image_size: int = 64, num_shards: int = 2, logit_scale: float = 30.0,
                seed: int = 0, num_views: int = 2) -> str:
  """Writes the teacher cache to out_dir (replacing it); returns out_dir."""
  views = cache_format.views_config(num_views, seed)
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.makedirs(out_dir)
  rng = np.random.default_rng(seed)
  tables, species_paths = dummy.build_tables(SYNTHETIC_TAXA)
  bank = dummy.write_label_bank(out_dir, tables, embed_dim, rng)
  projection = rng.normal(0, 0.35, size=(embed_dim, 48))
  species_common = [c for _, _, c in tables["species"]]
  lineages = [tuple(lin) + (ep,) for lin, ep, _ in SYNTHETIC_TAXA]
  for s, rows in enumerate(np.array_split(np.arange(num_photos), num_shards)):
    shard = f"shard-{s:05d}-of-{num_shards:05d}"
    species = np.asarray([i % len(lineages) for i in rows])
    keys = [f"synthetic-{i:06d}" for i in rows]
    images, embs, boxes, flips = [], [], [], []
    for key, i, sp in zip(keys, rows, species):
      photo_rng = np.random.default_rng([seed, int(i)])
      pixels = draw_photo(photo_rng, lineages[sp], image_size)
      buf = io.BytesIO()
      Image.fromarray(pixels).save(buf, format="JPEG", quality=92)
      images.append(buf.getvalue())
      decoded = decoded_pixels(images[-1])
      b, f = cache_format.sample_views(key, decoded.shape[0], decoded.shape[1], views)
      boxes.append(b)
      flips.append(f)
      embs.append(np.stack([teacher_embedding(cache_format.apply_view(decoded, b[v], f[v]),
                                              bank["species"][sp], projection)
                            for v in range(num_views)]))
    emb = np.stack(embs)                                             # [n, V, D]
    logits = logit_scale * np.einsum("nvd,sd->nvs", emb, bank["species"])
    order = np.argsort(-logits, axis=2, kind="stable")[:, :, :topk]
    cache_format.write_part(os.path.join(out_dir, "rows", shard, "part-000000.npz"), {
        "key": np.asarray(keys),
        "image_bytes": np.frombuffer(b"".join(images), np.uint8),
        "image_offsets": np.concatenate([[0], np.cumsum([len(b) for b in images])]).astype(
            np.int64),
        "taxon_index": species_paths[species],
        "common_name": np.asarray([species_common[k] for k in species]),
        "teacher_embedding": emb,
        "topk_species_indices": order.astype(np.int32),
        "topk_species_logits": np.take_along_axis(logits, order, 2).astype(np.float32),
        "teacher_logsumexp": cache_format.logsumexp(logits, axis=2).astype(np.float32),
        "view_boxes": np.stack(boxes).astype(np.int32),
        "view_flips": np.stack(flips).astype(np.uint8),
    })
    cache_format.write_shard_done(out_dir, shard, {"shard_index": s, "num_shards": num_shards,
                                                   "parts": ["part-000000.npz"],
                                                   "rows": int(len(rows))})
    cache_format.write_skipped(out_dir, shard, [])
  manifest = dummy.generated_manifest(
      "synthetic-projection", embed_dim, logit_scale, topk,
      {"kind": "synthetic", "spec": "bioclip_lite_tf.testing.synthetic",
       "fingerprint": hashlib.sha1(f"{num_photos}:{seed}:{embed_dim}".encode()).hexdigest()},
      num_photos, num_shards, views)
  cache_format.write_manifest(out_dir, manifest)
  return out_dir


def build_dataset(out_dir: str, **cache_kwargs) -> str:
  """Writes OUT/cache and builds OUT/tfds; returns the TFDS data_dir (OUT/tfds)."""
  from tfds_treeoflife import build as tfds_build  # TF-side; imported late (it imports TFDS)
  cache_dir = write_cache(os.path.join(out_dir, "cache"), **cache_kwargs)
  data_dir = os.path.join(out_dir, "tfds")
  tfds_build.build(cache_dir, data_dir)
  return data_dir


GENERATOR_VERSION = 3  # 2: caches written by the formats package; 3: format 2 (views)


def cached_dataset(root: str = "", **cache_kwargs) -> str:
  """build_dataset into a directory keyed by the arguments, reused when already built.

  For tests: one build per parameter set per machine. A finished build is marked by
  `complete.json`, written last; anything else in the directory is rebuilt.
  """
  import tempfile
  key = hashlib.sha1(json.dumps([GENERATOR_VERSION, sorted(cache_kwargs.items())]).encode()
                     ).hexdigest()[:12]
  out_dir = os.path.join(root or tempfile.gettempdir(), f"bioclip_lite_synthetic_{key}")
  marker = os.path.join(out_dir, "complete.json")
  if os.path.exists(marker):
    return os.path.join(out_dir, "tfds")
  # Build beside it and rename into place, so concurrent test runs never see half a dataset.
  staging = f"{out_dir}.staging-{os.getpid()}"
  if os.path.exists(staging):
    shutil.rmtree(staging)
  build_dataset(staging, **cache_kwargs)
  atomic.write_json(os.path.join(staging, "complete.json"), cache_kwargs)
  if os.path.exists(out_dir) and not os.path.exists(marker):
    shutil.rmtree(out_dir, ignore_errors=True)      # an older, unfinished layout
  try:
    os.rename(staging, out_dir)
  except OSError:                                   # another process finished first
    shutil.rmtree(staging, ignore_errors=True)
  return os.path.join(out_dir, "tfds")


def main(argv):
  del argv
  from absl import flags
  f = flags.FLAGS
  data_dir = build_dataset(f.out_dir, num_photos=f.num_photos, embed_dim=f.embed_dim,
                           image_size=f.image_size, seed=f.seed, num_views=f.num_views)
  print(f"built tree_of_life_distill under {data_dir}")


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_string("out_dir", None, "Directory to write cache/ and tfds/ into.")
  flags.DEFINE_integer("num_photos", 600, "Number of photos.")
  flags.DEFINE_integer("embed_dim", 24, "Teacher embedding width D.")
  flags.DEFINE_integer("image_size", 64, "Photo side in pixels.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_integer("num_views", 2, "Teacher views per photo (V; view 0 = whole photo).")
  flags.mark_flag_as_required("out_dir")
  app.run(main)
