r"""The label bank: every taxon at every rank with its parent and teacher text embedding.

As a library: `build_label_bank(out_dir, taxonomy, teacher)` and `load_label_bank(dir)`.
As a tool, for a custom species list (e.g. a regional checklist for an app):

  python -m teacher_cache.label_bank --species_file=my_list.csv --out_dir=DIR \
      [--teacher=hf-hub:imageomics/bioclip] [--pretrained=...]

my_list.csv has kingdom..species columns (species = epithet or binomial) and an optional
common_name column. DIR/label_bank/ is written in the same format as inside a cache:

  label_bank/<rank>.tsv          index, name, parent_index, common_name (header row first)
  label_bank/<rank>.npy          float32 [N_rank, D], L2-normalized text embeddings
  label_bank/label_bank.json     format_version, teacher{...}, text templates, ranks{rank: N},
                                 taxonomy_sha256
"""
from __future__ import annotations

import csv
import os
import sys
from typing import Dict

from absl import app, flags, logging

from formats import label_bank as label_bank_format
from formats.errors import FormatError
from formats.label_bank import LABEL_BANK_DIR, LabelBank
from formats.ranks import RANKS
from formats.taxonomy import (TEXT_TEMPLATE, TEXT_TEMPLATE_NO_COMMON, Taxonomy, TaxonomyError,
                              normalize_lineage)


def label_bank_meta(taxonomy: Taxonomy, teacher_desc: Dict[str, object]) -> Dict[str, object]:
    """label_bank.json's content (formats.label_bank adds format_version)."""
    return {
        "teacher": teacher_desc,
        "text_template": TEXT_TEMPLATE,
        "text_template_no_common": TEXT_TEMPLATE_NO_COMMON,
        "ranks": {t.rank: len(t) for t in taxonomy.tables},
        "taxonomy_sha256": taxonomy.fingerprint(),
    }


def build_label_bank(parent_dir: str, taxonomy: Taxonomy, teacher, batch_size: int = 256) -> str:
    """Encodes every taxon's caption and writes parent_dir/label_bank/ atomically.

    Embeddings stream into memory-mapped .npy files, so 454k species x D never sit in RAM.
    Returns the label_bank directory. An existing label_bank/ is a FileExistsError (callers
    verify and reuse it).
    """
    final = os.path.join(parent_dir, LABEL_BANK_DIR)
    total = sum(len(t) for t in taxonomy.tables)
    done = 0

    def encoded(table):
        nonlocal done
        texts = taxonomy.texts(RANKS.index(table.rank))
        for start in range(0, len(texts), batch_size):
            yield teacher.encode_texts(texts[start:start + batch_size]).numpy()
            done += min(batch_size, len(texts) - start)
            if (start // batch_size) % 50 == 0:
                logging.info("label bank: %s %d/%d taxa (%d/%d over all ranks)", table.rank,
                             min(start + batch_size, len(texts)), len(texts), done, total)

    label_bank_format.write_label_bank(final, taxonomy.tables, teacher.embed_dim, encoded,
                                       label_bank_meta(taxonomy, teacher.describe()))
    logging.info("label bank written: %s (%s)", final, {t.rank: len(t) for t in taxonomy.tables})
    return final


def load_label_bank(directory: str) -> LabelBank:
    """Reads DIR (a label_bank/ folder with its label_bank.json). Raises FormatError."""
    return label_bank_format.read_label_bank(directory, require_meta=True)


def read_species_file(path: str) -> Taxonomy:
    """A CSV with kingdom..species (+ optional common_name) columns -> Taxonomy.

    Raises TaxonomyError naming the file and row of the first malformed line.
    """
    if not os.path.isfile(path):
        raise TaxonomyError(f"--species_file {path!r}: file not found")
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [r for r in RANKS if r not in (reader.fieldnames or [])]
        if missing:
            raise TaxonomyError(f"--species_file {path!r}: missing column(s) {missing}; "
                                f"need {','.join(RANKS)} and optionally common_name")
        for n, row in enumerate(reader):
            lineage = normalize_lineage([row.get(r) for r in RANKS], f"{path} row {n + 2}")
            rows.append((lineage, (row.get("common_name") or row.get("common") or "").strip()))
    return Taxonomy.from_rows(rows)


FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_string("species_file", None, "CSV with kingdom..species columns (+ optional "
                        "common_name): the species the label bank should cover.")
    flags.DEFINE_string("out_dir", None, "Directory to write label_bank/ into (created if missing).")
    flags.DEFINE_string("teacher", "hf-hub:imageomics/bioclip", "Teacher model: hf-hub:ORG/NAME, "
                        "local-dir:PATH, an alias (bioclip) or an open_clip architecture name.")
    flags.DEFINE_string("pretrained", "", "For an open_clip architecture: checkpoint file, open_clip "
                        "tag, or 'none' for random weights. Ignored for hf-hub:/local-dir:.")
    flags.DEFINE_integer("init_seed", 0, "torch seed for --pretrained=none (random weights).")
    flags.DEFINE_integer("text_batch_size", 256, "Captions encoded per forward pass.")
    flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads; 0 keeps torch's default.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:  # input checks first: a bad species file fails before torch loads
        if not FLAGS.species_file or not FLAGS.out_dir:
            raise TaxonomyError("--species_file and --out_dir are required")
        taxonomy = read_species_file(FLAGS.species_file)
        if os.path.exists(os.path.join(FLAGS.out_dir, LABEL_BANK_DIR)):
            raise FileExistsError(f"{FLAGS.out_dir}/{LABEL_BANK_DIR} already exists; choose a new --out_dir")
    except (TaxonomyError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from teacher_cache.teachers import TeacherError, load_teacher  # torch only when needed
    if FLAGS.torch_threads > 0:
        import torch
        torch.set_num_threads(FLAGS.torch_threads)
    try:
        teacher = load_teacher(FLAGS.teacher, FLAGS.pretrained, FLAGS.init_seed)
        build_label_bank(FLAGS.out_dir, taxonomy, teacher, FLAGS.text_batch_size)
    except (TaxonomyError, FormatError, FileExistsError, TeacherError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    _define_flags()
    app.run(main)
