r"""Train the BioCLIP Lite student: float, then pruning, then quantization-aware training.

  python -m bioclip_lite_tf.train --config=bioclip_lite_tf/configs/demo.py \
      --workdir=WORKDIR --data_dir=TFDS_DATA_DIR [--phases=float,prune,qat] \
      [--strategy=default|mirrored|multi_worker] [--init=imagenet|none] [--override=k=v ...]

The phases and the resume contract are in bioclip_lite_tf/train/trainer.py, the workdir layout
in bioclip_lite_tf/train/workdir.py. Re-running the same command resumes a killed run.
Exit status: 0 done, 2 bad usage / config / data (reported before training starts), 1 anything
else.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging

from bioclip_lite_tf import config as config_lib
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.keras import tf
from bioclip_lite_tf.train.checks import UsageError
from bioclip_lite_tf.train.distribute import STRATEGIES
from bioclip_lite_tf.train.trainer import run
from bioclip_lite_tf.train.workdir import PHASES

FLAGS = flags.FLAGS
flags.DEFINE_string("config", None, "Config file: a Python module with get_config(arg), e.g. "
                    "bioclip_lite_tf/configs/demo.py; append ':arg' to pass arg (e.g. "
                    "bioclip_lite_tf/configs/default.py:small,runlocal).")
flags.DEFINE_string("workdir", None, "Output directory: checkpoints, models per phase, "
                    "TensorBoard logs, summary.json. Re-running with the same workdir resumes.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir holding a built tree_of_life_distill "
                    "(or that dataset's version directory).")
flags.DEFINE_list("phases", list(PHASES), "Phases to run, in order, from float,prune,qat; a "
                  "phase needs the previous phase's model in workdir.")
flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy: default (one "
                  "device), mirrored (all local GPUs, or all logical CPUs), multi_worker "
                  "(MultiWorkerMirroredStrategy, cluster from TF_CONFIG).")
flags.DEFINE_enum("init", None, ["imagenet", "none"], "Student initialisation; overrides "
                  "config model.init. imagenet needs the tf_keras.applications MobileNetV3 .h5 "
                  "locally (Keras cache or --imagenet_weights).")
flags.DEFINE_string("imagenet_weights", None, "Path of a tf_keras.applications MobileNetV3 "
                    ".h5 weight file (overrides config model.imagenet_weights).")
flags.DEFINE_multi_string("override", [], "Config override 'dotted.key=value' (a Python "
                          "literal), repeatable, e.g. --override=batch_size=64.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (so "
                     "--strategy=mirrored can be exercised without GPUs). 0: leave as is.")


def main(argv):
  if len(argv) > 1:
    print(f"bioclip_lite_tf.train: unexpected arguments {argv[1:]}", file=sys.stderr)
    sys.exit(2)
  if not FLAGS["verbosity"].present:
    # Progress goes to stdout as counted lines; TF/TFDS INFO chatter (one line per mirrored
    # variable, per dataset read) would drown it. -v 0 brings it back.
    logging.set_verbosity(logging.WARNING)
    tf.get_logger().setLevel("WARNING")
  try:
    if not FLAGS.config:
      raise UsageError("--config is required, e.g. --config=bioclip_lite_tf/configs/demo.py")
    config = config_lib.load_config(FLAGS.config)
    config = config_lib.apply_overrides(config, FLAGS.override)
    if FLAGS.init:
      config.model.init = FLAGS.init
    if FLAGS.imagenet_weights is not None:
      config.model.imagenet_weights = FLAGS.imagenet_weights
    run(config, FLAGS.workdir, FLAGS.data_dir, FLAGS.phases, FLAGS.strategy, FLAGS.cpu_devices)
  except (UsageError, config_lib.ConfigError, data_lib.DataError,
          model_lib.ModelConfigError) as e:
    print(f"bioclip_lite_tf.train: error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
