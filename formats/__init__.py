"""BioCLIP Lite's file formats: one reader and one writer each, numpy only (no TF, no torch).

  formats.ranks              the 7 ranks
  formats.taxonomy           lineages, taxon names, captions, RankTable, Taxonomy, ancestors
  formats.label_bank         label_bank/ (<rank>.tsv + <rank>.npy + label_bank.json)
  formats.teacher_cache      a teacher cache: manifest, part-*.npz rows, shard markers
  formats.device_label_bank  labels/label_bank.json + label_bank.bin + names.bin (+ common_names.bin), what a phone loads
  formats.export_manifest    an export directory's manifest.json
  formats.atomic, hashing    atomic writes with unique temp names; sha256 of files
  formats.fs                 the local disk, or tf.io.gfile handed in by a TF stage
  formats.errors             FormatError (a file breaks its format), FormatVersionError

docs/FORMATS.md describes every format.
"""
from formats.errors import FormatError, FormatVersionError  # noqa: F401
from formats.ranks import NUM_RANKS, RANKS  # noqa: F401
