"""Training: the trainer (trainer), its workdir (workdir), pre-flight checks (checks),
strategies (distribute), schedules and validation metrics. `python -m bioclip_lite_tf.train`
is the CLI (__main__); these modules define no flags."""
from bioclip_lite_tf.train.checks import UsageError, check_config, check_workdir  # noqa: F401
from bioclip_lite_tf.train.distribute import STRATEGIES, barrier, is_chief, make_strategy  # noqa: F401
from bioclip_lite_tf.train.schedules import WarmupCosine  # noqa: F401
from bioclip_lite_tf.train.trainer import Trainer, run, write_summary  # noqa: F401
from bioclip_lite_tf.train.workdir import (DONE_FILE, MODEL_FILE, PHASES,  # noqa: F401
                                           load_phase_model, phase_dir, phase_done)
