r"""Evaluate the exported student on your own labelled photos: no teacher, no TFDS build.

  python -m bioclip_lite_tf.evaluate --photos=DIR_OR_CSV --export_dir=EXPORT [--out=REPORT]

DIR_OR_CSV is what teacher_cache reads (teacher_cache/sources.py, torch-free): iNat21-style
class folders NNNNN_Kingdom_Phylum_Class_Order_Family_Genus_species, or a CSV with path and
kingdom..species columns. Each photo's lineage is matched, rank by rank, to the export's device
label bank (read by formats.device_label_bank); a photo whose species the bank lacks is listed
under `unknown_names` and left out of every figure (it does not count as wrong).

Runs the three exported runtimes on the same photos, as the app would:
  keras        the export's SavedModel (serving_default: uint8 photo of any size, squashed
               inside by the student's own resize)
  tflite_int8  the export's TFLite model on the squashed photo
  tfjs         the TF.js graph model in Node (react-bio-clip/scripts/run_tfjs.js) on the same
               squashed photo
and writes REPORT/photos_report.json: per runtime, bioclip_lite_tf.metrics' accuracy (vs the
labels), hierarchy and abstention sections; unknown_names; skipped photos with the reason.
"""
from __future__ import annotations

import collections
import os
from typing import Dict, List

import numpy as np

from formats import atomic, export_manifest
from formats import device_label_bank as device_format
from formats.export_manifest import LABELS_DIR, SAVED_MODEL_DIR, TFJS_DIR, TFLITE_PATH
from formats.ranks import RANKS
from formats.taxonomy import species_ancestors, taxon_name
from bioclip_lite_tf import metrics as shared_metrics
from bioclip_lite_tf.data.decode import decode_photo
from bioclip_lite_tf.evaluate import latency as eval_latency
from bioclip_lite_tf.export import tflite as export_tflite
from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.model.layers import squash_resize
from teacher_cache import sources

REPORT_NAME = "photos_report.json"
PHOTOS_FORMAT_VERSION = 1
RUNTIMES = ("keras", "tflite_int8", "tfjs")


class PhotosInputError(ValueError):
  """Bad --photos / --export_dir: exit 2."""


def open_photos(spec: str) -> sources.Source:
  if not spec:
    raise PhotosInputError("--photos is empty")
  try:
    kind = sources.detect_source_kind(spec)
    if kind not in ("inat", "csv"):
      raise PhotosInputError(f"--photos={spec}: takes class folders or a CSV with path and "
                             f"{','.join(RANKS)} columns, not {kind} tar shards")
    return sources.open_source(spec, kind)
  except sources.SourceError as e:
    raise PhotosInputError(str(e).replace("--source", "--photos")) from e


def _bank(export_dir: str):
  labels = os.path.join(export_dir, LABELS_DIR)
  if not os.path.isfile(os.path.join(labels, device_format.JSON_NAME)):
    raise PhotosInputError(f"{labels}: no device label bank; is --export_dir={export_dir} an "
                           "export directory (python -m bioclip_lite_tf.export)?")
  bank = device_format.read_device_label_bank(labels)
  tables = [bank.table(r) for r in RANKS]
  rows = [{name: i for i, name in enumerate(t.names)} for t in tables]
  anc = species_ancestors({t.rank: t.parents for t in tables})
  agg = shared_metrics.RankAggregator(dict(zip(RANKS, anc)), {t.rank: len(t) for t in tables})
  return bank, tables, rows, agg


def truth_rows(lineage, rows: List[Dict[str, int]]):
  """The bank's row per rank for a lineage, or None when the bank lacks its species."""
  out = [rows[d].get(taxon_name(lineage, d)) for d in range(len(RANKS))]
  return None if out[-1] is None else out


def evaluate_photos(photos: str, export_dir: str, out_dir: str, batch_size: int = 32,
                    log=print) -> dict:
  manifest_path = os.path.join(export_dir, export_manifest.MANIFEST)
  if not os.path.isfile(manifest_path):
    raise PhotosInputError(f"{manifest_path}: missing; --export_dir must be an export "
                           "directory (python -m bioclip_lite_tf.export)")
  source = open_photos(photos)
  manifest = export_manifest.read_manifest(export_dir)
  resolution = int(manifest["resolution"])
  bank, tables, rows, agg = _bank(export_dir)
  species_emb = np.asarray(bank.species_embeddings, np.float32)
  scale = float(bank.logit_scale)
  serving = tf.saved_model.load(os.path.join(export_dir, SAVED_MODEL_DIR)).signatures[
      "serving_default"]
  with open(os.path.join(export_dir, TFLITE_PATH), "rb") as f:
    interp = export_tflite.interpreter(f.read())
  inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
  accs = {r: shared_metrics.MetricsAccumulator(agg, scale) for r in RUNTIMES}
  unknown = collections.Counter()
  skipped = []
  errors = []
  batch = {"squashed": [], "keras": [], "tflite_int8": [], "truth": []}

  def flush():
    if not batch["truth"]:
      return
    truth = np.asarray(batch["truth"], np.int32)
    embs = {"keras": np.stack(batch["keras"]), "tflite_int8": np.stack(batch["tflite_int8"])}
    if not errors:
      try:
        embs["tfjs"] = eval_latency.tfjs_embed(os.path.join(export_dir, TFJS_DIR),
                                               np.stack(batch["squashed"]), "wasm")
      except eval_latency.NodeRunnerError as e:
        errors.append(f"tfjs: {e}")
    for runtime, emb in embs.items():
      accs[runtime].update(scale * (emb @ species_emb.T), truth)
    for v in batch.values():
      v.clear()

  seen = 0
  for sample in source.iter_shard(0, 1):
    seen += 1
    if sample.error:
      skipped.append({"photo": sample.where, "reason": sample.error})
      continue
    row = truth_rows(sample.lineage, rows)
    if row is None:
      unknown[taxon_name(sample.lineage, len(RANKS) - 1)] += 1
      continue
    try:
      photo = decode_photo(tf.constant(sample.image_bytes))
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      skipped.append({"photo": sample.where, "reason": f"cannot decode: {str(e)[:200]}"})
      continue
    squashed = squash_resize(photo[None], resolution).numpy()[0]
    batch["keras"].append(serving(photo=photo[None])["embedding"].numpy()[0])
    interp.set_tensor(inp["index"], squashed[None].astype(np.float32))
    interp.invoke()
    batch["tflite_int8"].append(interp.get_tensor(outp["index"])[0].copy())
    batch["squashed"].append(squashed)
    batch["truth"].append(row)
    if len(batch["truth"]) >= batch_size:
      flush()
  flush()
  names = {t.rank: list(t.names) for t in tables}
  report = {"format": "bioclip-lite-photos-report", "format_version": PHOTOS_FORMAT_VERSION,
            "photos": os.path.abspath(photos), "export_dir": os.path.abspath(export_dir),
            "n_photos_read": seen, "n_evaluated": accs["keras"].n,
            "unknown_names": [{"name": k, "photos": v} for k, v in sorted(unknown.items())],
            "skipped": skipped, "errors": errors, "runtimes": {}}
  for runtime, acc in accs.items():
    if not acc.n:
      report["runtimes"][runtime] = None
      continue
    res = acc.result(names=names)
    report["runtimes"][runtime] = {"accuracy": res["accuracy"], "hierarchy": res["hierarchy"],
                                   "abstention": res["abstention"]}
  os.makedirs(out_dir, exist_ok=True)
  atomic.write_json(os.path.join(out_dir, REPORT_NAME), report, sort_keys=False, default=float)
  if unknown:
    log(f"{sum(unknown.values())} photo(s) of {len(unknown)} name(s) the label bank lacks (not "
        "counted): " + ", ".join(sorted(unknown)))
  return report
