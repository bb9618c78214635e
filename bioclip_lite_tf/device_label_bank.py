r"""Build a device label bank (the whole bank, or a regional / clade pack) from a label bank.

  python -m bioclip_lite_tf.device_label_bank --label_bank=DIR --out=OUT \
      [--checklist=CSV | --clade=NAME[,NAME...]] \
      [--bank_dtype=int8|int4|float16] [--bank_dims=0|D] [--bank_compact=default|OPTION] \
      [--logit_scale=100]

--label_bank: a label_bank/ directory (<rank>.tsv + <rank>.npy, docs/FORMATS.md sections 1-2)
of a TFDS dataset (teacher in ../teacher.json), of a teacher cache (../manifest.json) or of a
`python -m teacher_cache.label_bank` output; or the TFDS dataset / teacher cache directory that
holds it. (--label_bank_dir and --out_dir are the older names.)
--checklist: a CSV with a `species` column (full lineage names or "Genus epithet") or the
columns kingdom..species; --clade: taxon names at any rank ("Aves", "Insecta", or full lineage
names). Either makes a pack: only those species, with their rows from the label bank, no
teacher (bioclip_lite_tf.export.packs).
Writes OUT/label_bank.json + OUT/label_bank.bin (formats.device_label_bank, docs/FORMATS.md
section 4) and prints the species count and bytes. Exit status 2 for a malformed or missing
label bank or checklist, unknown names (listed, with close matches), ambiguous names (listed
with their candidates) and bad --bank_* values; nothing is written then.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from formats import device_label_bank as device_format
from formats.errors import FormatError
from bioclip_lite_tf.export import compact_bank, packs
from bioclip_lite_tf.export.device_bank import (SourceLabelBank, read_source_label_bank,
                                                resolve_bank_option, write_device_label_bank)

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("label_bank_dir", None, "A label_bank/ directory: <rank>.tsv and "
                      "<rank>.npy for the 7 ranks (inside a TFDS dataset dir, a teacher_cache "
                      "dir, or written by `python -m teacher_cache.label_bank`), or the "
                      "directory holding it.")
  flags.DEFINE_alias("label_bank", "label_bank_dir")
  flags.DEFINE_string("out_dir", None, "Where to write label_bank.json and label_bank.bin.")
  flags.DEFINE_alias("out", "out_dir")
  flags.DEFINE_string("checklist", None, "Pack: a CSV of species (a `species` column of full "
                      "lineage names or 'Genus epithet', or columns kingdom..species).")
  flags.DEFINE_list("clade", None, "Pack: taxon names at any rank, comma-separated (e.g. "
                    "Aves,Insecta; full lineage names also accepted).")
  flags.DEFINE_string("bank_dtype", None, "Storage of the species rows: int8 (default) or int4 "
                      "with a float32 scale per row, or float16.")
  flags.DEFINE_alias("dtype", "bank_dtype")
  flags.DEFINE_string("bank_dims", None, "0 (default): full width; D > 0: rows projected to D "
                      "dims by a PCA fitted on the bank (or pack) being written.")
  flags.DEFINE_string("bank_compact", None, "A compact option instead of --bank_dtype/"
                      f"--bank_dims: 'default' ({compact_bank.DEFAULT_COMPACT}) or e.g. int4, "
                      "pca128_int8, pca256_int4.")
  flags.DEFINE_float("logit_scale", None, "The logit multiplier (exp applied, ~100 for "
                     "BioCLIP); only needed when no teacher description sits beside the bank.")


def _label_bank_dir(path: str) -> str:
  """A label_bank/ dir as given, or the label_bank/ inside a dataset / cache directory."""
  inner = os.path.join(path, "label_bank")
  if not os.path.isfile(os.path.join(path, "species.tsv")) and os.path.isdir(inner):
    return inner
  return path


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if not FLAGS.label_bank_dir or not FLAGS.out_dir:
    print("error: --label_bank (or --label_bank_dir) and --out (or --out_dir) are required",
          file=sys.stderr)
    return 2
  if FLAGS.checklist and FLAGS.clade:
    print("error: give --checklist or --clade, not both", file=sys.stderr)
    return 2
  try:
    dtype, dims = resolve_bank_option(FLAGS.bank_dtype, FLAGS.bank_dims, FLAGS.bank_compact)
    source = read_source_label_bank(_label_bank_dir(FLAGS.label_bank_dir), FLAGS.logit_scale)
    total = len(source.tables[-1])
    if FLAGS.checklist or FLAGS.clade:
      if FLAGS.checklist:
        pack = packs.make_pack(source.tables, packs.read_checklist(FLAGS.checklist), True)
      else:
        pack = packs.make_pack(source.tables, FLAGS.clade, False)
      source = SourceLabelBank(source.directory, pack.tables,
                               source.species_embeddings[pack.species], source.teacher,
                               source.logit_scale)
      selection = ({"checklist": os.path.abspath(FLAGS.checklist)} if FLAGS.checklist
                   else {"clade": list(FLAGS.clade)})
      meta = write_device_label_bank(source, FLAGS.out_dir, dtype, dims,
                                     pack=dict(selection, source_species=total))
    else:
      meta = write_device_label_bank(source, FLAGS.out_dir, dtype, dims)
  except (FormatError, packs.PackSelectionError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  files = meta["files"]
  json_bytes = os.path.getsize(os.path.join(FLAGS.out_dir, device_format.JSON_NAME))
  sizes = ", ".join(f"{name} {f['bytes']} bytes" for name, f in files.items())
  print(f"wrote {FLAGS.out_dir}: {meta['num_species']} species (of {total} in the label bank), "
        f"D={meta['embed_dim']}, {meta['dtype']} x {meta['rows']['stored_dim']}"
        f"{' projected' if meta.get('projection') else ''}; {device_format.JSON_NAME} "
        f"{json_bytes} bytes, {sizes}; total {json_bytes + sum(f['bytes'] for f in files.values())}"
        " bytes")
  return 0


if __name__ == "__main__":
  define_flags()
  app.run(main)
