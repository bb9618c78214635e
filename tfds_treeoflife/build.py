r"""Builds `tree_of_life_distill` from a teacher_cache output directory.

  python -m tfds_treeoflife.build --cache_dir=CACHE --data_dir=DATA_DIR [--config=default]
      [--beam_runner=DirectRunner --beam_options=--direct_num_workers=2]

Writes DATA_DIR/tree_of_life_distill/<config>/1.0.0/. TFDS writes into an `incomplete.*` sibling
directory and renames it when everything is written, so a killed build never looks complete; a
re-run removes the killed build's leftovers and builds again. A finished dataset is reused unless
--overwrite. Exit status: 0 built (or already built), 2 bad usage or a malformed cache, 1 other
failures.
"""
from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags, logging  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from formats.errors import FormatError  # noqa: E402
from tfds_treeoflife.cache_reader import read_cache_spec  # noqa: E402
from tfds_treeoflife.tree_of_life_distill import NoCacheGiven  # noqa: E402
from tfds_treeoflife.tree_of_life_distill import TreeOfLifeDistill  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the CLI flags. Only when run as a program, so importing `build()` from another
  absl program (a trainer, a test) cannot collide with its own --data_dir or --config."""
  flags.DEFINE_string("cache_dir", None, "teacher_cache output directory to build from "
                      "(manifest.json, label_bank/, rows/). Any path tf.io.gfile reads.")
  flags.DEFINE_string("data_dir", None, "TFDS data_dir to write into; the dataset lands in "
                      "DATA_DIR/tree_of_life_distill/<config>/<version>/.")
  flags.DEFINE_enum("config", "default", [c.name for c in TreeOfLifeDistill.BUILDER_CONFIGS],
                    "Builder config: 'default' (train/validation) or 'species_holdout' (adds a "
                    "holdout split of whole species).")
  flags.DEFINE_string("beam_runner", "", "Build through Apache Beam with this runner, e.g. "
                      "DirectRunner, DataflowRunner, FlinkRunner, SparkRunner. Empty: build in "
                      "this process without Beam.")
  flags.DEFINE_list("beam_options", [], "Beam pipeline options, comma-separated, e.g. "
                    "'--direct_num_workers=2,--direct_running_mode=multi_processing' or "
                    "'--project=P,--region=R,--temp_location=gs://B/tmp'.")
  flags.DEFINE_bool("overwrite", False, "Delete an existing built copy of this config/version "
                    "and build again.")
  flags.DEFINE_bool("allow_incomplete_cache", False, "Build from the finished parts of a cache "
                    "whose shards are not all done (the dataset will then not be reproducible).")
  flags.DEFINE_bool("clean_incomplete", True, "Remove `incomplete.*` directories that a killed "
                    "build of this config left behind. Turn off if another build of the same "
                    "config writes to this data_dir at the same time.")


def _fail(msg: str, code: int) -> int:
  print(f"tfds_treeoflife.build: error: {msg}", file=sys.stderr, flush=True)
  return code


def remove_stale_incomplete(builder: tfds.core.DatasetBuilder) -> int:
  """Deletes leftovers of killed builds of this config (TFDS names them incomplete.XXXXXX_<v>)."""
  parent = os.path.dirname(os.fspath(builder.data_path).rstrip("/"))
  version = os.path.basename(os.fspath(builder.data_path).rstrip("/"))
  if not tf.io.gfile.isdir(parent):
    return 0
  removed = 0
  for name in tf.io.gfile.listdir(parent):
    name = name.rstrip("/")
    if name.startswith("incomplete.") and name.endswith("_" + version):
      logging.warning("removing %s, left by a build that did not finish",
                      os.path.join(parent, name))
      tf.io.gfile.rmtree(os.path.join(parent, name))
      removed += 1
  return removed


def _chain(e: BaseException):
  """e and the exceptions it was raised from or while handling."""
  while e is not None:
    yield e
    e = e.__cause__ or e.__context__


def _is_duplicate_keys(e: BaseException) -> bool:
  # TFDS's writer raises a bare AssertionError while handling its shuffler's
  # DuplicatedKeysError, so the type survives as the context.
  return any(isinstance(x, tfds.core.shuffle.DuplicatedKeysError) for x in _chain(e))


def _is_cache_error(e: BaseException) -> bool:
  return any(isinstance(x, (FormatError, NoCacheGiven)) for x in _chain(e))


class BuildConflictError(ValueError):
  """data_dir already holds this config/version built from a different cache."""


def _dataset_dir(data_dir: str, config: str) -> str:
  return os.path.join(data_dir, TreeOfLifeDistill.name, config, str(TreeOfLifeDistill.VERSION))


def _check_existing_build(cache_dir: str, data_dir: str, config: str) -> None:
  """A finished build is reused only when it came from this cache (same source and counts).

  Without this check a re-run pointed at a new cache would silently keep the old dataset.
  """
  dataset_dir = _dataset_dir(data_dir, config)
  meta_path = os.path.join(dataset_dir, "metadata.json")
  if not tf.io.gfile.exists(meta_path):
    return
  with tf.io.gfile.GFile(meta_path, "r") as f:
    built = json.load(f)
  with tf.io.gfile.GFile(os.path.join(cache_dir, "manifest.json"), "r") as f:
    manifest = json.load(f)
  theirs = (built.get("source"), built.get("cache_counts"), built.get("teacher_id"))
  ours = (manifest.get("source"), manifest.get("counts"), manifest.get("teacher", {}).get("id"))
  if theirs != ours:
    raise BuildConflictError(
        f"{dataset_dir} was built from another cache (source/counts/teacher {theirs}, "
        f"--cache_dir has {ours}). Pass --overwrite to rebuild it from {cache_dir}, or use "
        "another --data_dir.")


def build(cache_dir: str, data_dir: str, config: str = "default", beam_runner: str = "",
          beam_options=(), overwrite: bool = False, allow_incomplete_cache: bool = False,
          clean_incomplete: bool = True) -> tfds.core.DatasetBuilder:
  """Builds the dataset and returns the builder.

  Raises FormatError for a bad cache, BuildConflictError when data_dir already holds a
  build of this config from another cache (and not overwrite).
  """
  if overwrite:
    # Check the cache before deleting anything, so a bad cache never costs the old dataset.
    read_cache_spec(cache_dir, not allow_incomplete_cache)
    old = _dataset_dir(data_dir, config)
    if tf.io.gfile.exists(old):
      logging.info("--overwrite: removing %s", old)
      tf.io.gfile.rmtree(old)
  else:
    _check_existing_build(cache_dir, data_dir, config)
  builder = TreeOfLifeDistill(cache_dir=cache_dir, data_dir=data_dir, config=config,
                              require_complete_cache=not allow_incomplete_cache)
  if clean_incomplete:
    remove_stale_incomplete(builder)
  runner = None
  options = None
  if beam_runner:
    beam = tfds.core.lazy_imports.apache_beam
    options = beam.options.pipeline_options.PipelineOptions(list(beam_options))
    runner = beam_runner
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=cache_dir,
        download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
        # Statistics would be a second full pass over 10M photos; counts are recorded anyway.
        compute_stats=tfds.download.ComputeStatsMode.SKIP,
        beam_runner=runner, beam_options=options))
  except AssertionError as e:
    if _is_duplicate_keys(e):
      raise FormatError(f"{cache_dir}: two rows share the same sample key (keys must be "
                             "unique in the cache; the duplicates are logged above)") from e
    raise
  return builder


def main(argv):
  if len(argv) > 1:
    return _fail(f"unexpected arguments {argv[1:]}", 2)
  if not FLAGS.cache_dir or not FLAGS.data_dir:
    return _fail("--cache_dir and --data_dir are required", 2)
  if not tf.io.gfile.isdir(FLAGS.cache_dir):
    return _fail(f"--cache_dir={FLAGS.cache_dir}: not a directory", 2)
  logging.set_verbosity(logging.INFO)
  start = time.time()
  try:
    builder = build(FLAGS.cache_dir, FLAGS.data_dir, FLAGS.config, FLAGS.beam_runner,
                    FLAGS.beam_options, FLAGS.overwrite, FLAGS.allow_incomplete_cache,
                    FLAGS.clean_incomplete)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, BuildConflictError):
      return _fail(str(e), 2)
    if _is_cache_error(e) or _is_duplicate_keys(e):
      return _fail(f"bad teacher cache {FLAGS.cache_dir}: {e}", 2)
    raise
  splits = {name: s.num_examples for name, s in builder.info.splits.items()}
  print(f"tree_of_life_distill/{FLAGS.config} {builder.info.version} in {builder.data_dir}: "
        f"{splits} ({time.time() - start:.1f} s)", flush=True)
  return 0


def _parse_flags(argv):
  # absl exits 1 on a bad flag; bad usage is exit 2 throughout this project.
  try:
    return FLAGS(argv)
  except flags.Error as e:
    sys.exit(_fail(f"{e}\nRun with --help for the flags.", 2))


if __name__ == "__main__":
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=_parse_flags)
