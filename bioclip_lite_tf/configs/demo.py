"""The `make demo` recipe: MobileNetV3 Small at 0.5 width on the demo dataset, a few minutes on
2 CPU cores. Trained from scratch (`init='none'`): ImageNet weights cannot be downloaded here,
and none exist for width 0.5.

  python -m bioclip_lite_tf.train --config=bioclip_lite_tf/configs/demo.py \
      --workdir=runs/demo/train --data_dir=runs/demo/tfds

`arg`: `runlocal` shrinks it further for tests.
"""
from bioclip_lite_tf.config import ConfigDict
from bioclip_lite_tf.configs import default


def get_config(arg: str = "") -> ConfigDict:
  c = default.get_config("small")
  c.model.alpha = 0.5
  c.model.resolution = 96
  c.model.init = "none"
  c.model.dropout = 0.0
  # From scratch and short: BN statistics must catch up within tens of steps (see model.py).
  c.model.bn_momentum = 0.9
  c.data.shuffle_buffer = 1024
  c.data.max_eval_examples = 0
  c.batch_size = 32
  # The demo teacher is BioCLIP's architecture with RANDOM weights: its answers are a fixed
  # function of the photo but unrelated to the true taxa (2.5% species accuracy on the demo
  # data). Losses that pull towards the true labels (contrastive, hierarchical label term) then
  # fight the teacher, so the demo distils only: measured on the demo data, validation species
  # agreement 0.31 with all four losses vs 0.71 with these (float phase). With real BioCLIP
  # weights keep default.py's mix.
  c.losses.contrastive.weight = 0.0
  c.losses.hierarchical.update(weight=1.0, label_weight=0.0)
  c.losses.soft_label.temperature = 1.0
  c.phases.float.update(steps=600, learning_rate=3e-3, warmup_steps=30, weight_decay=1e-5)
  c.phases.prune.update(steps=200, learning_rate=1e-3, warmup_steps=10)
  c.phases.qat.update(steps=100, learning_rate=3e-4, warmup_steps=5)
  c.prune.frequency = 10
  c.prune.min_params = 1024
  c.checkpoint_every = 100
  c.log_every = 25
  c.steps_per_call = 25
  if "runlocal" in (arg or "").split(","):
    default.runlocal(c)
  return c
