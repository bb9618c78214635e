"""TFDS builder `tree_of_life_distill`: photos, taxonomy and BioCLIP teacher targets.

Reads a teacher_cache output directory (format 2) and writes a standard TFDS dataset whose
feature dict is a public contract (README.md in this folder). The feature shapes (views V,
embedding width D, top-k K) and the ClassLabel names come from the cache, so the cache must be known when
the builder is created: `TreeOfLifeDistill(cache_dir=...)`, `tfds.builder(name, cache_dir=...)`
or `python -m tfds_treeoflife.build --cache_dir=...`. A built dataset opens without the cache.
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import Any, Dict, Iterator, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from formats.errors import FormatError
from formats.ranks import RANKS
from formats.teacher_cache import RowChecker
from tfds_treeoflife import cache_reader
from tfds_treeoflife.cache_reader import CacheSpec
from tfds_treeoflife.label_bank import LABEL_BANK_FORMAT_VERSION, TreeOfLifeMetadata
from tfds_treeoflife.splits import SplitPlan, holdout_species

_DESCRIPTION = """
Photos from the tree of life with their 7-rank taxonomy and the BioCLIP teacher's outputs, for
distilling BioCLIP into a small student: the teacher's L2-normalized image embedding and its
top-k species logits over the label bank. The label bank (taxon names, parent links and the
teacher's text embedding of every taxon at every rank) and the teacher's identity and logit scale
are saved beside the dataset (see `tfds_treeoflife.load_label_bank(info.data_dir)`), so the
dataset alone is enough to train a student and evaluate it zero-shot.
"""

_CITATION = """
@inproceedings{stevens2024bioclip,
  title = {{BioCLIP}: A Vision Foundation Model for the Tree of Life},
  author = {Samuel Stevens and Jiaman Wu and Matthew J Thompson and Elizabeth G Campolongo and
            Chan Hee Song and David Edward Carlyn and Li Dong and Wasila M Dahdul and
            Charles Stewart and Tanya Berger-Wolf and Wei-Lun Chao and Yu Su},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition},
  year = {2024},
  eprint = {2311.18803},
  archivePrefix = {arXiv}
}
"""

_MANUAL_DOWNLOAD_INSTRUCTIONS = """
This dataset is built from a teacher_cache output directory (manifest.json, label_bank/, rows/),
written by `python -m teacher_cache` from TreeOfLife-10M (huggingface.co/datasets/imageomics/
TreeOfLife-10M) or another photo source. Build it with
  python -m tfds_treeoflife.build --cache_dir=CACHE --data_dir=DATA_DIR
or `tfds.builder('tree_of_life_distill', cache_dir=CACHE, data_dir=...).download_and_prepare()`.
"""

_JPEG_MAGIC = b"\xff\xd8\xff"


class NoCacheGiven(ValueError):
  """The builder was asked to generate examples without a teacher cache (a usage error)."""


@dataclasses.dataclass
class TreeOfLifeDistillConfig(tfds.core.BuilderConfig):
  """Split settings. validation_fraction: share of photos (by key hash) in `validation`.

  holdout_species_fraction: share of species (by name hash, at least one) whose photos all go to
  a `holdout` split, for measuring generalisation to taxa the student never trained on.
  """
  validation_fraction: float = 0.1
  holdout_species_fraction: float = 0.0


def _jpeg_bytes(data: bytes, where: str) -> bytes:
  """The photo's original bytes when they are JPEG; other formats are transcoded once to JPEG.

  Passing JPEG bytes through keeps the teacher's and the student's pixels identical (no second
  lossy encode). The feature contract is JPEG, so PNG/WebP sources are re-encoded at quality 95.
  """
  if data[:3] == _JPEG_MAGIC:
    return data
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as im:
      out = io.BytesIO()
      # 4:4:4 chroma: a one-time transcode should not also halve colour resolution.
      im.convert("RGB").save(out, format="JPEG", quality=95, subsampling=0)
      return out.getvalue()
  except Exception as e:  # PIL raises many types for corrupt data
    raise FormatError(f"{where}: image bytes are not a readable image ({e})") from e


def examples_in_part(path: str, checker: RowChecker, plan: SplitPlan,
                     split: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
  """Yields (key, example) for the rows of one part file that belong to `split`.

  A module-level function (not a method) so Beam pickles only these small arguments.
  """
  part = cache_reader.load_part(path)
  checker.check(part, path)
  taxa = part["taxon_index"]
  for row, key in cache_reader.iter_rows(part):
    if plan.split_of(key, int(taxa[row, -1])) != split:
      continue
    example = {
        "image": _jpeg_bytes(cache_reader.image_bytes_of(part, row), f"{path} key {key!r}"),
        "key": key,
        "common_name": str(part["common_name"][row]),
        "teacher_embedding": part["teacher_embedding"][row],
        "topk_species_indices": part["topk_species_indices"][row].astype(np.int32),
        "topk_species_logits": part["topk_species_logits"][row].astype(np.float32),
        "teacher_logsumexp": part["teacher_logsumexp"][row].astype(np.float32),
        "view_boxes": part["view_boxes"][row].astype(np.int32),
        "view_flips": part["view_flips"][row].astype(np.uint8),
    }
    for r, rank in enumerate(RANKS):
      example[rank] = int(taxa[row, r])
    yield key, example


class TreeOfLifeDistill(tfds.core.GeneratorBasedBuilder):
  """tree_of_life_distill: TreeOfLife photos + taxonomy + BioCLIP teacher targets."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "First release; reads teacher_cache format 1.",
                   "2.0.0": "teacher_cache format 2: a view axis V on the teacher features; "
                            "teacher_logsumexp, view_boxes, view_flips."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = [
      TreeOfLifeDistillConfig(
          name="default",
          description="train / validation (10% of photos by key hash).",
          validation_fraction=0.1),
      TreeOfLifeDistillConfig(
          name="species_holdout",
          description="train / validation / holdout: 5% of species (by name hash, at least "
                      "one) held out whole, like BioCLIP's Rare Species evaluation.",
          validation_fraction=0.1, holdout_species_fraction=0.05),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"

  def __init__(self, *, cache_dir: Optional[str] = None, require_complete_cache: bool = True,
               **kwargs):
    """cache_dir: a teacher_cache output directory; needed to build, not to read a built copy.

    Raises FormatError when the cache's manifest or label bank is malformed.
    """
    self._cache_dir = os.fspath(cache_dir) if cache_dir else None
    self._spec: Optional[CacheSpec] = (
        cache_reader.read_cache_spec(self._cache_dir, require_complete_cache)
        if self._cache_dir else None)
    self._use_beam = False
    super().__init__(**kwargs)
    # Beam pickles builders by re-running __init__ with _original_state.
    self._original_state.update(cache_dir=self._cache_dir,
                                require_complete_cache=require_complete_cache)

  # ---- info -------------------------------------------------------------------------------

  def _info(self) -> tfds.core.DatasetInfo:
    if self._spec is not None:
      features = self._features_from_cache(self._spec)
      metadata = self._metadata_from_cache(self._spec)
    elif (self.data_path / "features.json").exists():
      # A built copy: shapes and ClassLabel sizes are exactly what was written.
      features = tfds.features.FeaturesDict.from_config(os.fspath(self.data_path))
      metadata = TreeOfLifeMetadata()
    else:
      # Neither a cache nor a built copy: the shapes are unknown. Building from here fails in
      # _split_generators with instructions; describing the dataset still works.
      features = self._features(num_views=None, embed_dim=None, topk=None, names=None)
      metadata = TreeOfLifeMetadata()
    return self.dataset_info_from_configs(
        features=features,
        supervised_keys=("image", "species"),
        homepage="https://huggingface.co/datasets/imageomics/TreeOfLife-10M",
        citation=_CITATION,
        metadata=metadata,
    )

  @staticmethod
  def _features(num_views: Optional[int], embed_dim: Optional[int], topk: Optional[int],
                names: Optional[Dict[str, Any]]) -> tfds.features.FeaturesDict:
    v = num_views
    feats: Dict[str, Any] = {
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg",
                                     doc="The photo, RGB uint8; original JPEG bytes."),
        "key": tfds.features.Text(doc="Sample key, unique in the dataset."),
        "common_name": tfds.features.Text(doc="Common name; may be empty."),
        "teacher_embedding": tfds.features.Tensor(
            shape=(v, embed_dim), dtype=np.float32,
            doc="L2-normalized BioCLIP image embedding of each view, float32 [V, D]; view 0 is "
                "the whole photo."),
        "topk_species_indices": tfds.features.Tensor(
            shape=(v, topk), dtype=np.int32,
            doc="Teacher's top-k species rows of the label bank per view, highest logit first."),
        "topk_species_logits": tfds.features.Tensor(
            shape=(v, topk), dtype=np.float32,
            doc="logit_scale * cos(image, species text), matching topk_species_indices."),
        "teacher_logsumexp": tfds.features.Tensor(
            shape=(v,), dtype=np.float32,
            doc="logsumexp over ALL species of the scaled logits, per view (the softmax "
                "normalizer at temperature 1)."),
        "view_boxes": tfds.features.Tensor(
            shape=(v, 4), dtype=np.int32,
            doc="(y0, x0, y1, x1) of each view in pixels of the decoded photo, end-exclusive; "
                "view 0 = (0, 0, H, W)."),
        "view_flips": tfds.features.Tensor(
            shape=(v,), dtype=np.uint8,
            doc="1 = the view is mirrored left-right after cropping."),
    }
    for rank in RANKS:
      label = (tfds.features.ClassLabel(names=list(names[rank])) if names
               else tfds.features.ClassLabel())
      feats[rank] = label
    return tfds.features.FeaturesDict(feats)

  def _features_from_cache(self, spec: CacheSpec) -> tfds.features.FeaturesDict:
    return self._features(spec.num_views, spec.embed_dim, spec.topk,
                          {r: spec.tables[r].names for r in RANKS})

  def _split_plan(self) -> SplitPlan:
    cfg: TreeOfLifeDistillConfig = self.builder_config
    held = holdout_species(self._spec.tables["species"].names, cfg.holdout_species_fraction)
    return SplitPlan(validation_fraction=cfg.validation_fraction, holdout_species=frozenset(held))

  def _metadata_from_cache(self, spec: CacheSpec) -> TreeOfLifeMetadata:
    m = spec.manifest
    teacher = dict(m["teacher"])
    pretrained = teacher.get("pretrained")
    teacher.setdefault("real_weights",
                       pretrained not in (None, "", "none") and not teacher.get("random_init"))
    teacher.update(format_version=LABEL_BANK_FORMAT_VERSION, embed_dim=spec.embed_dim,
                   logit_scale=spec.logit_scale, preprocessing=m.get("preprocessing"),
                   text_template=m.get("text_template"), topk=spec.topk,
                   views=m.get("views"))
    cfg: TreeOfLifeDistillConfig = self.builder_config
    plan = self._split_plan()
    summary = {
        "format_version": LABEL_BANK_FORMAT_VERSION,
        "ranks": list(RANKS),
        "num_taxa": spec.rank_sizes,
        "embed_dim": spec.embed_dim,
        "topk": spec.topk,
        "views": m.get("views"),
        "logit_scale": spec.logit_scale,
        "teacher_id": teacher.get("id"),
        "real_weights": bool(teacher["real_weights"]),
        "validation_fraction": cfg.validation_fraction,
        "holdout_species_fraction": cfg.holdout_species_fraction,
        "holdout_species": sorted(plan.holdout_species),
        "source": m.get("source"),
        "cache_counts": m.get("counts"),
    }
    return TreeOfLifeMetadata(summary, teacher=teacher, source_cache_dir=spec.cache_dir)

  # ---- generation -------------------------------------------------------------------------

  def _download_and_prepare(self, dl_manager, download_config):
    # The split generators need to know whether TFDS will run them on Beam.
    self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
    return super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager):
    if self._spec is None:
      raise NoCacheGiven(
          "tree_of_life_distill: no teacher cache given. Its feature shapes and class names "
          "come from the cache, so pass it when the builder is created: "
          "python -m tfds_treeoflife.build --cache_dir=CACHE --data_dir=DIR, or "
          "tfds.builder('tree_of_life_distill', cache_dir=CACHE).")
    plan = self._split_plan()
    logging.info("tree_of_life_distill/%s: %d part files from %s; splits %s; %d held-out "
                 "species", self.builder_config.name, len(self._spec.part_paths),
                 self._spec.cache_dir, plan.split_names, len(plan.holdout_species))
    return {split: self._generate_examples(split=split, plan=plan)
            for split in plan.split_names}

  def _generate_examples(self, split: str, plan: SplitPlan):
    """Examples of one split: a generator, or a Beam PTransform when a Beam runner is set.

    Both read the parts one at a time; each split reads every part and keeps its own rows (the
    split is a function of the key, so no cross-split state is needed on any worker).
    """
    checker = self._spec.row_checker()
    parts = list(self._spec.part_paths)
    if self._use_beam:
      beam = tfds.core.lazy_imports.apache_beam
      return (beam.Create(parts)
              # Spread parts over workers instead of fusing them onto the Create's worker.
              | beam.Reshuffle()
              | beam.FlatMap(examples_in_part, checker=checker, plan=plan, split=split))
    return self._iterate_parts(parts, checker, plan, split)

  @staticmethod
  def _iterate_parts(parts, checker, plan, split):
    for i, path in enumerate(parts):
      logging.info("[%s] part %d/%d %s", split, i + 1, len(parts), path)
      yield from examples_in_part(path, checker, plan, split)
