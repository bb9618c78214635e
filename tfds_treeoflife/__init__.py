"""tfds_treeoflife: the TFDS dataset `tree_of_life_distill` (photos + taxonomy + BioCLIP targets).

`import tfds_treeoflife` registers the builder, so `tfds.load('tree_of_life_distill', ...)` works.
Public API: TreeOfLifeDistill, load_label_bank, LabelBank. Malformed caches raise
formats.FormatError; the ranks are formats.RANKS.
"""
import os as _os

# tfmot is Keras 2 only; every TF process in this project uses tf_keras.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfds_treeoflife.label_bank import LabelBank, load_label_bank  # noqa: E402
from tfds_treeoflife.tree_of_life_distill import TreeOfLifeDistill  # noqa: E402

__all__ = ["TreeOfLifeDistill", "load_label_bank", "LabelBank"]
