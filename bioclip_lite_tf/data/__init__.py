"""Data: dataset discovery, the label bank as arrays, the training tf.data pipeline, and
photos + labels of a split for export and evaluation."""
from bioclip_lite_tf.data.discovery import (DATASET_NAME, DataError,  # noqa: F401
                                            DatasetNotFoundError, eval_split, find_dataset_dir,
                                            read_teacher, split_sizes)
from bioclip_lite_tf.data.examples import iter_examples, load_split, squash  # noqa: F401
from bioclip_lite_tf.data.label_bank import LabelBankArrays, load_label_bank  # noqa: F401
from bioclip_lite_tf.data.decode import decode_photo  # noqa: F401
from bioclip_lite_tf.data.pipeline import (DistillData, apply_view, choose_view,  # noqa: F401
                                           make_dataset, open_dataset)
