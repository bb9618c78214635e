r"""Writes a small SYNTHETIC dataset in the TreeOfLife-10M shard format (or iNat21 folders / CSV).

  python -m teacher_cache.demo_data --out_dir=/tmp/tol_demo [--format=wds|inat|csv]
      [--num_photos=480] [--num_shards=4] [--seed=0]

The taxa are real (correct kingdom..species and common names); the photos are NOT: each one is
drawn procedurally. Visual parameters are a sum of per-rank random vectors seeded by the taxon
name at each rank, so species in one genus share every term but the last, species in one
family share all but two, and so on; per-photo noise adds pose, scale, colour and background
variation. A student can therefore learn the hierarchy, but nothing learned here says anything
about real organisms. The output directory carries SYNTHETIC_DATA.txt saying so.
"""
from __future__ import annotations

import colorsys
import csv
import hashlib
import io
import os
import shutil
import sys
import tarfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
from absl import app, flags, logging
from PIL import Image

from formats import atomic
from teacher_cache import webdataset
from formats.ranks import RANKS
from formats.taxonomy import Lineage, taxon_name

SYNTHETIC_NOTE = (
    "SYNTHETIC DATA. The photos in this directory were drawn by a program "
    "(teacher_cache.demo_data); they are not photographs of organisms. The taxon names and "
    "common names are real, the images only mimic the dataset layout (TreeOfLife-10M webdataset "
    "shards, iNat21 class folders or a CSV catalog) and carry a hierarchical visual signal so a "
    "student model can learn something. Do not use them to judge real-world accuracy.\n")

# (kingdom, phylum, class, order, family, genus, species epithet), common name.
# Several species share genera (Rosa, Quercus, Vanessa, Turdus, Sciurus, Amanita) and families.
DEMO_SPECIES: Tuple[Tuple[Lineage, str], ...] = (
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"), "dog rose"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "rugosa"), "rugosa rose"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Prunus", "avium"), "wild cherry"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Fagales", "Fagaceae", "Quercus", "robur"), "English oak"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Fagales", "Fagaceae", "Quercus", "alba"), "white oak"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Helianthus", "annuus"), "common sunflower"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Taraxacum", "officinale"), "common dandelion"),
    (("Plantae", "Tracheophyta", "Pinopsida", "Pinales", "Pinaceae", "Pinus", "sylvestris"), "Scots pine"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus", "plexippus"), "monarch butterfly"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa", "atalanta"), "red admiral"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa", "cardui"), "painted lady"),
    (("Animalia", "Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis", "mellifera"), "western honey bee"),
    (("Animalia", "Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Bombus", "terrestris"), "buff-tailed bumblebee"),
    (("Animalia", "Arthropoda", "Insecta", "Coleoptera", "Coccinellidae", "Coccinella", "septempunctata"), "seven-spot ladybird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "migratorius"), "American robin"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"), "common blackbird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Sialia", "sialis"), "eastern bluebird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax"), "common raven"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Cyanocitta", "cristata"), "blue jay"),
    (("Animalia", "Chordata", "Aves", "Accipitriformes", "Accipitridae", "Haliaeetus", "leucocephalus"), "bald eagle"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes"), "red fox"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Canis", "lupus"), "gray wolf"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Felidae", "Lynx", "rufus"), "bobcat"),
    (("Animalia", "Chordata", "Mammalia", "Rodentia", "Sciuridae", "Sciurus", "carolinensis"), "eastern gray squirrel"),
    (("Animalia", "Chordata", "Mammalia", "Rodentia", "Sciuridae", "Sciurus", "vulgaris"), "Eurasian red squirrel"),
    (("Animalia", "Chordata", "Amphibia", "Anura", "Ranidae", "Lithobates", "catesbeianus"), "American bullfrog"),
    (("Animalia", "Mollusca", "Gastropoda", "Stylommatophora", "Helicidae", "Cornu", "aspersum"), "garden snail"),
    (("Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita", "muscaria"), "fly agaric"),
    (("Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita", "phalloides"), "death cap"),
    (("Fungi", "Basidiomycota", "Agaricomycetes", "Boletales", "Boletaceae", "Boletus", "edulis"), "king bolete"),
)

# How much each rank moves the visual parameters. Later ranks move them less, so nearer
# relatives look more alike, but the species term stays large enough to tell species apart.
_RANK_WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.65, 0.6, 0.55)
_NUM_PARAMS = 14


def _taxon_vector(name: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(_NUM_PARAMS)


def species_parameters(lineage: Lineage) -> np.ndarray:
    """float64 [_NUM_PARAMS]: the sum over ranks of weighted per-taxon random vectors."""
    return sum(w * _taxon_vector(taxon_name(lineage, r)) for r, w in enumerate(_RANK_WEIGHTS))


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hsv(h, s, v) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))))


def render_photo(lineage: Lineage, rng: np.random.Generator, size: int = 224) -> np.ndarray:
    """Draws one synthetic 'photo' of a species. Returns uint8 [size, size, 3] RGB."""
    p = species_parameters(lineage)
    jit = rng.normal(0, 1, _NUM_PARAMS) * 0.08  # per-photo variation of the species look
    q = p + jit
    body = _hsv(0.13 * q[0], 0.35 + 0.6 * _sig(q[1]), 0.35 + 0.6 * _sig(q[2]))
    mark = _hsv(0.13 * q[0] + 0.25 + 0.5 * _sig(q[3]), 0.3 + 0.7 * _sig(q[4]), 1.0 - 0.8 * _sig(q[5]))
    eye = _hsv(0.2 * q[6], 0.8, 0.2 + 0.7 * _sig(q[7]))
    lobes = 2 + int(round(6 * _sig(p[8])))  # from p: an integer must not flicker per photo
    depth = 0.05 + 0.35 * _sig(q[9])
    aspect = 0.45 + 0.9 * _sig(q[10])
    pattern = int(np.argmax(p[11:14]))  # 0 plain-ish rings, 1 stripes, 2 spots
    freq = 6 + 14 * _sig(q[12])

    # Photo-level pose, framing, light and background.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    scale = (0.22 + 0.12 * _sig(q[13])) * rng.uniform(0.8, 1.2)
    cx, cy = rng.uniform(-0.12, 0.12, 2)
    x, y = xx - cx, yy - cy
    xr = (np.cos(angle) * x + np.sin(angle) * y) / scale
    yr = (-np.sin(angle) * x + np.cos(angle) * y) / (scale * aspect)
    r = np.hypot(xr, yr)
    theta = np.arctan2(yr, xr)
    outline = 1.0 + depth * np.cos(lobes * theta + rng.uniform(0, 0.3))
    inside = r < outline
    if pattern == 1:
        marked = np.sin(freq * xr) > 0.2
    elif pattern == 2:
        marked = (np.sin(freq * xr) * np.sin(freq * yr)) > 0.55
    else:
        marked = np.sin(freq * r) > 0.5
    centre = r < 0.18 + 0.1 * _sig(q[7])

    bg_hue = rng.uniform(0.2, 0.45) if rng.random() < 0.6 else rng.uniform(0.0, 1.0)
    top = _hsv(bg_hue, rng.uniform(0.2, 0.6), rng.uniform(0.4, 0.9))
    bottom = _hsv(bg_hue + rng.normal(0, 0.05), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.7))
    t = (yy + 0.5)[..., None]
    img = top * (1 - t) + bottom * t
    img = img + rng.normal(0, 0.04, (1, 1, 3)) * np.sin(xx * rng.uniform(3, 9))[..., None]
    img = np.where(inside[..., None], body, img)
    img = np.where((inside & marked)[..., None], mark, img)
    img = np.where((inside & centre)[..., None], eye, img)
    shade = 1.0 - 0.35 * np.clip(r / np.maximum(outline, 1e-3), 0, 1) * inside
    img = img * shade[..., None] * rng.uniform(0.8, 1.15)
    img = img + rng.normal(0, 0.025, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def caption_members(lineage: Lineage, common: str) -> Dict[str, bytes]:
    """The text members of a TreeOfLife-10M sample for one lineage (UTF-8 bytes)."""
    taxonomic = " ".join(lineage)
    scientific = f"{lineage[5]} {lineage[6]}"
    tagged = " ".join(f"{rank} {name}" for rank, name in zip(RANKS, lineage))
    texts = {
        "taxonomic_name.txt": taxonomic,
        "scientific_name.txt": scientific,
        "common_name.txt": common,
        "sci.txt": f"a photo of {scientific}.",
        "com.txt": f"a photo of {common}.",
        "taxon.txt": f"a photo of {taxonomic}.",
        "taxonTag.txt": f"a photo of {tagged}.",
        "sci_com.txt": f"a photo of {scientific} with common name {common}.",
        "taxon_com.txt": f"a photo of {taxonomic} with common name {common}.",
        "taxonTag_com.txt": f"a photo of {tagged} with common name {common}.",
    }
    return {k: v.encode("utf-8") for k, v in texts.items()}


def inat_folder_name(index: int, lineage: Lineage) -> str:
    """iNat21 class folder: NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_species."""
    return f"{index:05d}_" + "_".join(lineage)


def plan_photos(num_photos: int, seed: int, species: Sequence[Tuple[Lineage, str]]):
    """Deterministic list of (key, lineage, common, photo_seed), shuffled across taxa."""
    rng = np.random.default_rng(seed)
    order = [i % len(species) for i in range(num_photos)]
    rng.shuffle(order)
    plan = []
    for i, s in enumerate(order):
        key = hashlib.sha256(f"{seed}:{i}".encode()).hexdigest()[:32]
        lineage, common = species[s]
        plan.append((key, lineage, common, int(rng.integers(0, 2**63 - 1))))
    return plan


CATALOG_COLUMNS = ("key", "source") + RANKS + ("common_name",)


def write_demo(out_dir: str, fmt: str = "wds", num_photos: int = 480, num_shards: int = 4,
               seed: int = 0, image_size: int = 224, num_species: int = 0,
               jpeg_quality: int = 90) -> Dict[str, object]:
    """Writes the dataset; returns a summary dict. The directory appears complete only at the
    end (written under OUT.tmp-PID, then renamed)."""
    species = DEMO_SPECIES[: num_species] if num_species > 0 else DEMO_SPECIES
    if num_photos < 1 or num_shards < 1:
        raise ValueError("--num_photos and --num_shards must be >= 1")
    plan = plan_photos(num_photos, seed, species)
    sorted_species = sorted({l for l, _ in species})
    folder_index = {l: i for i, l in enumerate(sorted_species)}

    tmp = atomic.fresh_tmp_dir(out_dir)
    rows = []
    if fmt == "wds":
        per = -(-len(plan) // num_shards)
        for s in range(num_shards):
            chunk = plan[s * per:(s + 1) * per]
            tar_name = f"shard-{s:06d}.tar"
            with tarfile.open(os.path.join(tmp, tar_name), "w", format=tarfile.USTAR_FORMAT) as tar:
                for key, lineage, common, pseed in chunk:
                    pixels = render_photo(lineage, np.random.default_rng(pseed), image_size)
                    members = {"jpg": encode_jpeg(pixels, jpeg_quality)}
                    members.update(caption_members(lineage, common))
                    webdataset.add_sample(tar, key, members)
                    rows.append((key, "synthetic-demo") + lineage + (common,))
            logging.info("demo_data: wrote %s (%d synthetic photos)", tar_name, len(chunk))
        _write_csv(os.path.join(tmp, "catalog.csv"), CATALOG_COLUMNS, rows)
    elif fmt in ("inat", "csv"):
        for n, (key, lineage, common, pseed) in enumerate(plan):
            pixels = render_photo(lineage, np.random.default_rng(pseed), image_size)
            if fmt == "inat":
                rel = os.path.join(inat_folder_name(folder_index[lineage], lineage), f"{key}.jpg")
            else:
                rel = os.path.join("images", f"{key}.jpg")
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            with open(os.path.join(tmp, rel), "wb") as f:
                f.write(encode_jpeg(pixels, jpeg_quality))
            rows.append((rel, key, "synthetic-demo") + lineage + (common,))
            if (n + 1) % 100 == 0:
                logging.info("demo_data: %d/%d synthetic photos", n + 1, len(plan))
        if fmt == "csv":
            _write_csv(os.path.join(tmp, "catalog.csv"), ("path",) + CATALOG_COLUMNS, rows)
    else:
        raise ValueError(f"unknown --format {fmt!r}; expected wds, inat or csv")
    with open(os.path.join(tmp, "SYNTHETIC_DATA.txt"), "w", encoding="utf-8") as f:
        f.write(SYNTHETIC_NOTE)
        f.write(f"format={fmt} photos={len(plan)} species={len(species)} seed={seed}\n")
    atomic.commit_dir(tmp, out_dir)
    return {"out_dir": out_dir, "format": fmt, "photos": len(plan), "species": len(species)}


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


FLAGS = flags.FLAGS


def _define_flags():
    """Flags live in a function so importing this module (tests, the bench) defines none."""
    flags.DEFINE_string("out_dir", None, "Directory to create; must not exist or be empty.")
    flags.DEFINE_enum("format", "wds", ["wds", "inat", "csv"],
                      "wds: TreeOfLife-10M webdataset tar shards + catalog.csv; inat: iNat21-style "
                      "class folders NNNNN_Kingdom_..._Genus_species/KEY.jpg; csv: images/ plus a "
                      "catalog.csv with a path column and kingdom..species columns.")
    flags.DEFINE_integer("num_photos", 480, "Number of photos to generate (spread evenly over taxa).")
    flags.DEFINE_integer("num_shards", 4, "Number of tar shards (wds format only).")
    flags.DEFINE_integer("num_species", 0, "Use only the first N demo species (0 = all of them).")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed writes byte-identical output.")
    flags.DEFINE_integer("image_size", 224, "Width and height of the JPEGs (TreeOfLife-10M uses 224).")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the generated photos.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.out_dir:
        print("error: --out_dir is required", file=sys.stderr)
        return 2
    if os.path.exists(FLAGS.out_dir) and os.listdir(FLAGS.out_dir):
        print(f"error: --out_dir {FLAGS.out_dir} exists and is not empty; refusing to overwrite",
              file=sys.stderr)
        return 2
    logging.warning("demo_data: the photos are SYNTHETIC (procedurally drawn); taxon names are "
                    "real. See SYNTHETIC_DATA.txt in the output.")
    summary = write_demo(FLAGS.out_dir, FLAGS.format, FLAGS.num_photos, FLAGS.num_shards,
                         FLAGS.seed, FLAGS.image_size, FLAGS.num_species, FLAGS.jpeg_quality)
    logging.info("demo_data: done: %s (synthetic photos)", summary)
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(main)
