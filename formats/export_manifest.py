"""manifest.json of an export directory (format "bioclip-lite-export", version 1).

The writer is bioclip_lite_tf.export (and the fixture scripts through `write_manifest`); the
Python reader is `read_manifest`; react-bio-clip/src/io.ts is the JS reader. The fields are in
docs/FORMATS.md section 4. `files` lists sha256 and bytes of every file but manifest.json, so
a reader can tell a complete, untouched export from anything else.
"""
from __future__ import annotations

import json
import os
from typing import Dict

from formats import atomic, hashing
from formats.errors import FormatError, check_version

FORMAT = "bioclip-lite-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TFJS_DIR = "tfjs"
TFLITE_PATH = "tflite/model_int8.tflite"
SAVED_MODEL_DIR = "saved_model"
LABELS_DIR = "labels"


def file_table(root: str) -> Dict[str, dict]:
  """{relative path: {sha256, bytes}} for every file under root but manifest.json (sorted)."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in sorted(files):
      full = os.path.join(dirpath, name)
      rel = os.path.relpath(full, root).replace(os.sep, "/")
      if rel == MANIFEST:
        continue
      out[rel] = {"sha256": hashing.sha256_file(full), "bytes": os.path.getsize(full)}
  return dict(sorted(out.items()))


def write_manifest(export_dir: str, manifest: dict) -> dict:
  """Adds format, format_version and the file table, writes manifest.json; returns it."""
  full = {"format": FORMAT, "format_version": FORMAT_VERSION}
  full.update(manifest)
  full["files"] = file_table(export_dir)
  atomic.write_text(os.path.join(export_dir, MANIFEST), json.dumps(full, indent=2))
  return full


def read_manifest(export_dir: str) -> dict:
  path = os.path.join(export_dir, MANIFEST)
  if not os.path.isfile(path):
    raise FormatError(f"{path}: missing (not an export directory, or an unfinished export)")
  manifest = atomic.read_json(path)
  if manifest.get("format") != FORMAT:
    raise FormatError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
  return check_version(manifest, path, "export", FORMAT_VERSION,
                       "Re-export with this version's python -m bioclip_lite_tf.export.")
