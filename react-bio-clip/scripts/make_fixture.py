"""Writes react-bio-clip's parity fixture: a real export directory plus the Python-side answers.

Run from the repo root with the project's venv:

  .venv/bin/python react-bio-clip/scripts/make_fixture.py --out_dir=react-bio-clip/test/fixtures

What it writes under --out_dir (all small; the whole fixture stays well under 1 MB):

  export/, export_small/      export directories (R = --resolution, --small_resolution) in the layout
                              of docs/FORMATS.md section 4
                              (manifest.json, tfjs/model.json + shards, labels/ label_bank.json, label_bank.bin, names.bin,
                              common_names.bin)
                              made by the project's own export stage (bioclip_lite_tf.export.export
                              on a tiny QAT student; saved_model/ (and export_small/'s tflite/) are then deleted to
                              keep the fixture small)
  photos/<name>.jpg           the photos, JPEG bytes as a phone or TreeOfLife would give them
  photos/square_a.rgb         Python's (PIL/libjpeg) decode of that JPEG, uint8 [R, R, 3] row-major
                              (one photo only, to keep the fixture small)
  photos/large.bicubic.rgb    PIL bicubic squash of the large photo's PIL decode to R x R, uint8
                              [R, R, 3]: the teacher's geometry
  expected.json               per R x R photo: embedding float32 [D] from the Keras student on the
                              PIL decode, top-5 species rows, top-5 logits and all N logits against
                              the device label bank (dequantized exactly as the device does); for
                              the large photo, the embedding of its PIL bicubic squash

The student here is tiny and randomly initialised: parity is about the code path (decode,
resize, graph conversion, uint8 weight storage, label bank encoding, scoring), not accuracy.
"""
from __future__ import annotations

import io
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from formats import atomic  # noqa: E402
from formats import device_label_bank  # noqa: E402
from formats import label_bank as label_bank_format  # noqa: E402
from formats.ranks import RANKS  # noqa: E402
from formats.taxonomy import make_rank_table, species_ancestors  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out_dir", "react-bio-clip/test/fixtures",
                    "Directory the fixture is written to (replaced atomically).")
flags.DEFINE_integer("resolution", 224,
                     "Input resolution R of the parity export (export/): the photos are R x R, as "
                     "TreeOfLife photos are 224 x 224.")
flags.DEFINE_integer("small_resolution", 32,
                     "Input resolution of the second, fast export (export_small/) that the leak, "
                     "error, few-shot and React tests use: 1,000 classify calls on the pure-JS cpu "
                     "backend take seconds at 32, minutes at 224.")
flags.DEFINE_integer("embed_dim", 32, "Embedding width D of the tiny student (never assumed 512).")
flags.DEFINE_integer("seed", 0, "Seed for the photos, the student weights and the text embeddings.")
flags.DEFINE_enum("label_dtype", "int8", ["int8", "float16"],
                  "Storage dtype of the species text embeddings in labels/label_bank.bin.")

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# A hand-checkable tree: (lineage of 7 names, common name). Two genera share a family, two
# species share a genus, so the rank sums in the JS tests have something to add up.
SPECIES = [
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "migratorius"),
     "American robin"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
     "Common blackbird"),
    (("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax"),
     "Common raven"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Canis", "lupus"), "Gray wolf"),
    (("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes"), "Red fox"),
    (("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus", "plexippus"),
     "Monarch"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"),
     "Dog rose"),
    (("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "rugosa"), ""),
]


def taxonomy_tables():
  """Per rank: list of (full lineage name, parent row, common name), rows in first-seen order."""
  tables = {rank: [] for rank in RANKS}
  row_of = {rank: {} for rank in RANKS}
  for lineage, common in SPECIES:
    parent = -1
    for depth, rank in enumerate(RANKS):
      name = " ".join(lineage[:depth + 1])
      if name not in row_of[rank]:
        row_of[rank][name] = len(tables[rank])
        tables[rank].append((name, parent, common if rank == "species" else ""))
      parent = row_of[rank][name]
  return tables


def make_photos(rng: np.random.Generator, resolution: int) -> dict[str, np.ndarray]:
  """Smooth synthetic 'photos' (gradients, blobs, mild noise): uint8 [H, W, 3].

  Smooth content keeps JPEG decoders close to each other, as real photos do; three are R x R
  (TreeOfLife photos already are, so the resize is the identity) and one is large, to exercise
  the squash resize: at twice R or more the JS side box-filters, as an antialiased resize must).
  """
  photos = {}
  shapes = {"square_a": (resolution, resolution), "square_b": (resolution, resolution),
            "square_c": (resolution, resolution), "large": (2 * resolution + 32, 3 * resolution)}
  for name, (h, w) in shapes.items():
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
      a, b, phase = rng.uniform(-1, 1, 3)
      img[..., c] = 128 + 80 * np.sin(a * xx / 23.0 + b * yy / 17.0 + 6 * phase)
    for _ in range(4):
      cy, cx = rng.uniform(0, h), rng.uniform(0, w)
      radius = rng.uniform(0.08, 0.25) * min(h, w)
      blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius ** 2))
      img += blob[..., None] * rng.uniform(-90, 90, 3)
    img += rng.normal(0, 4, img.shape)
    photos[name] = np.clip(np.round(img), 0, 255).astype(np.uint8)
  return photos


def jpeg_bytes(pixels: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
  return buf.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def pil_bicubic_squash(pixels: np.ndarray, resolution: int) -> np.ndarray:
  """The teacher's geometry: the whole photo squashed to R x R with PIL bicubic."""
  img = Image.fromarray(pixels).resize((resolution, resolution), Image.BICUBIC)
  return np.asarray(img, dtype=np.uint8)


def device_bank_embeddings(export_dir: str) -> tuple[np.ndarray, float]:
  """The species text embeddings exactly as a device reads them back: float32 [N, D]."""
  bank = device_label_bank.read_device_label_bank(os.path.join(export_dir, "labels"))
  return bank.species_embeddings, bank.logit_scale


# ----------------------------------------------------------------------------------------------
# The project's export stage: a tiny QAT student (real tfmot wrappers) through
# bioclip_lite_tf.export.export, the same call `python -m bioclip_lite_tf.export` makes.
# ----------------------------------------------------------------------------------------------

def _write_source_label_bank(directory: str, text_embeddings: np.ndarray, logit_scale: float):
  """A label_bank/ directory as teacher_cache / TFDS write it (docs/FORMATS.md section 1), plus
  the teacher description beside it that the device label bank reads logit_scale from.
  Higher ranks get their species' mean embedding (normalized): any unit rows would do, the
  device bank ships species only."""
  tables = [make_rank_table(rank, [r[0] for r in rows], [r[1] for r in rows],
                            [r[2] for r in rows]) for rank, rows in taxonomy_tables().items()]
  species = text_embeddings.astype(np.float32)
  ancestors = species_ancestors({t.rank: t.parents for t in tables})
  embeddings = {}
  for r, table in enumerate(tables):
    rows = np.zeros((len(table), species.shape[1]), np.float64)
    np.add.at(rows, ancestors[r], species)
    embeddings[table.rank] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
  embeddings["species"] = species
  label_bank_format.write_label_bank(directory, tables, species.shape[1],
                                     label_bank_format.in_memory_rows(embeddings))
  atomic.write_json(os.path.join(os.path.dirname(directory), "teacher.json"),
                    {"id": "hf-hub:imageomics/bioclip", "real_weights": False,
                     "logit_scale": logit_scale, "embed_dim": int(text_embeddings.shape[1])})


def project_export(export_dir: str, resolution: int, embed_dim: int, text_embeddings: np.ndarray,
                   logit_scale: float, dtype: str, seed: int, drop=("tflite", "saved_model")):
  """Exports a tiny, briefly trained QAT student with bioclip_lite_tf.export.export.

  Returns a function float32 [n, R, R, 3] 0..255 -> float32 [n, D]: the Python-side reference
  (export_graph.weights_only_reference, what the exporter promises TF.js reproduces).
  """
  from bioclip_lite_tf import export
  from bioclip_lite_tf.export import plain_graph as export_graph
  from bioclip_lite_tf.testing import export_fixtures as export_testing
  from bioclip_lite_tf.keras import keras
  keras.utils.set_random_seed(seed)
  qat = export_testing.quantize_per_tensor(
      export_testing.tiny_float_model(resolution=resolution, embed_dim=embed_dim))
  photos = export.synthetic_photos(16, resolution, seed=seed)
  targets = export_testing.unit_rows(
      np.random.default_rng(seed).normal(size=(16, embed_dim)).astype(np.float32))
  export_testing.train_briefly(qat, photos, targets, steps=3, seed=seed)
  with tempfile.TemporaryDirectory() as scratch:
    bank_dir = os.path.join(scratch, "label_bank")
    _write_source_label_bank(bank_dir, text_embeddings, logit_scale)
    export.export(workdir=scratch, out_dir=export_dir, label_bank_dir=bank_dir,
                  label_bank_dtype=dtype, num_representative=4, qat_model=qat)
  # The npm package reads only tfjs/, labels/ and manifest.json (react-bio-clip/tflite also
  # tflite/); the rest stays listed in the manifest but is dropped (`drop`) to keep it small.
  import shutil
  for unused in drop:
    shutil.rmtree(os.path.join(export_dir, unused), ignore_errors=True)
  return lambda images: export_graph.weights_only_reference(qat, images)


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if FLAGS.small_resolution < 32 or FLAGS.resolution < 32:
    print("error: --resolution and --small_resolution must be >= 32", file=sys.stderr)
    return 2
  rng = np.random.default_rng(FLAGS.seed)
  resolution, embed_dim = FLAGS.resolution, FLAGS.embed_dim
  out_dir = os.path.abspath(FLAGS.out_dir)
  os.makedirs(os.path.dirname(out_dir), exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".fixture-", dir=os.path.dirname(out_dir))
  os.chmod(staging, 0o755)  # mkdtemp makes it private; the fixture is ordinary repo content
  export_dir = os.path.join(staging, "export")

  text = rng.normal(size=(len(SPECIES), embed_dim)).astype(np.float32)
  text /= np.linalg.norm(text, axis=1, keepdims=True)
  logit_scale = 100.0

  small_dir = os.path.join(staging, "export_small")
  # export/ keeps its TFLite model: the example app's TFLite screen bundles it.
  reference = project_export(export_dir, resolution, embed_dim, text, logit_scale,
                             FLAGS.label_dtype, FLAGS.seed, drop=("saved_model",))
  project_export(small_dir, FLAGS.small_resolution, embed_dim, text, logit_scale,
                 FLAGS.label_dtype, FLAGS.seed + 1)

  bank, scale = device_bank_embeddings(export_dir)
  photos_dir = os.path.join(staging, "photos")
  os.makedirs(photos_dir)
  expected = {"resolution": resolution, "embed_dim": embed_dim, "logit_scale": scale,
              "exporter": "project", "photos": []}
  for name, pixels in make_photos(rng, resolution).items():
    data = jpeg_bytes(pixels)
    decoded = pil_decode(data)
    with open(os.path.join(photos_dir, name + ".jpg"), "wb") as f:
      f.write(data)
    if name == "square_a":
      with open(os.path.join(photos_dir, name + ".rgb"), "wb") as f:
        f.write(decoded.tobytes())
    entry = {"name": name, "height": int(decoded.shape[0]), "width": int(decoded.shape[1])}
    if decoded.shape[:2] == (resolution, resolution):
      embedding = reference(decoded[None].astype(np.float32))[0]
      logits = scale * bank @ embedding
      top5 = np.argsort(-logits, kind="stable")[:5]
      entry.update(embedding=[float(v) for v in embedding],
                   top5_species=[int(i) for i in top5],
                   top5_logits=[float(logits[i]) for i in top5],
                   logits=[float(v) for v in logits])
    else:
      squashed = pil_bicubic_squash(decoded, resolution)
      with open(os.path.join(photos_dir, name + ".bicubic.rgb"), "wb") as f:
        f.write(squashed.tobytes())
      entry["bicubic_file"] = name + ".bicubic.rgb"
      embedding = reference(squashed[None].astype(np.float32))[0]
      entry["bicubic_embedding"] = [float(v) for v in embedding]
    expected["photos"].append(entry)
  with open(os.path.join(staging, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)

  # Swap the finished fixture in whole, so a half-written one never looks complete.
  atomic.replace_dir(staging, out_dir)
  total = sum(os.path.getsize(os.path.join(r, n)) for r, _, ns in os.walk(out_dir) for n in ns)
  logging.info("fixture written to %s (%d bytes)", out_dir, total)
  if total > 1 << 20:
    logging.warning("fixture is %d bytes, over the 1 MB budget for a committed fixture", total)


if __name__ == "__main__":
  sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
  app.run(main)
