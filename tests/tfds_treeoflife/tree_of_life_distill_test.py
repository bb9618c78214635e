"""The standard TFDS builder test on tfds_treeoflife/dummy_data (made by make_dummy_data.py)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow_datasets as tfds  # noqa: E402

from tfds_treeoflife import TreeOfLifeDistill  # noqa: E402


class _Base(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = TreeOfLifeDistill
  SKIP_CHECKSUMS = True  # manual data: nothing is downloaded

  def _make_builder(self, config=None):
    # Shapes and class names come from the cache, so it is given at construction.
    return self.dataset_class(data_dir=self.tmp_dir, config=config, version=self.VERSION,
                              cache_dir=os.fspath(self.dummy_data))


class TreeOfLifeDistillDefaultTest(_Base):
  BUILDER_CONFIG_NAMES_TO_TEST = ["default"]
  SPLITS = {"train": 36, "validation": 4}


class TreeOfLifeDistillHoldoutTest(_Base):
  BUILDER_CONFIG_NAMES_TO_TEST = ["species_holdout"]
  SPLITS = {"train": 31, "validation": 4, "holdout": 5}


del _Base  # only the concrete cases are collected

if __name__ == "__main__":
  tfds.testing.test_main()
