"""The full-scale recipe: MobileNetV3 Large on TreeOfLife-10M, teacher BioCLIP.

  python -m bioclip_lite_tf.train --config=bioclip_lite_tf/configs/default.py \
      --workdir=WORKDIR --data_dir=TFDS_DATA_DIR --strategy=mirrored

`arg` is a comma list of switches: `small` (MobileNetV3 Small), `runlocal` (a few steps on a few
examples, for tests and smoke runs). Every field is documented where it is set.
"""
from bioclip_lite_tf.config import ConfigDict


def get_config(arg: str = "") -> ConfigDict:
  switches = {s for s in (arg or "").split(",") if s}
  c = ConfigDict()
  c.model = dict(
      name="mobilenet_v3_small" if "small" in switches else "mobilenet_v3_large",
      alpha=1.0,             # width multiplier; ImageNet weights exist for 0.75 and 1.0
      resolution=224,        # the teacher's geometry: squash to R x R
      dropout=0.1,           # before the projection head
      bn_momentum=0.99,      # BatchNorm moving-average momentum
      init="imagenet",       # 'imagenet' (tf_keras.applications weights, local file) | 'none'
      imagenet_weights="",   # explicit .h5 path; empty: look in the Keras cache
      # 'auto': mixed_bfloat16 on GPU, float32 on CPU | 'mixed_bfloat16' | 'float32'
      # (train/precision.py; the embedding and the losses stay float32, saved models float32)
      mixed_precision="auto",
  )
  c.data = dict(
      name="tree_of_life_distill",
      builder_config="",     # empty: the only / first built config under data_dir
      train_split="train",
      eval_split="validation",
      shuffle_buffer=20_000,  # encoded records, shuffled before decoding
      seed=0,
      max_eval_examples=50_000,  # 0: the whole eval split
  )
  c.batch_size = 1024          # global, across replicas
  # The species head (logit_scale * embedding @ text.T over the label bank) is computed by the
  # losses in chunks of this many species, forward and backward, all ranks in one pass: memory
  # O(B x chunk + B x taxa above species), never [B x S] (losses/common.py). 65536: as fast as
  # the dense head at 454k species, B 8 and 64 (bench/results/head.json; 8192 is ~20% slower
  # at B 64); <= 0 or >= S: one chunk, the [B, S] logits kept for the backward.
  c.head = dict(chunk_size=65536)
  # Losses by name (bioclip_lite_tf.losses.LOSSES); weight 0 disables one.
  c.losses = dict(
      embedding=dict(weight=1.0),
      # normalizer 'full': the teacher's exact probabilities from the cached logsumexp and a
      # K+1-th "other" bin (losses/soft_label.py); exact at temperature 1 only, which it needs.
      # 'topk' (renormalized top-k) allows another temperature.
      soft_label=dict(weight=1.0, temperature=1.0, normalizer="full"),
      hierarchical=dict(weight=0.5, teacher_weight=1.0, label_weight=1.0, normalizer="full"),
      contrastive=dict(weight=0.1),
  )
  # One entry per phase: steps, peak learning rate (cosine decay after linear warmup), AdamW
  # weight decay.
  c.phases = dict(
      float=dict(steps=100_000, learning_rate=2e-3, warmup_steps=2_000, weight_decay=1e-5),
      prune=dict(steps=30_000, learning_rate=5e-4, warmup_steps=500, weight_decay=0.0),
      qat=dict(steps=10_000, learning_rate=1e-4, warmup_steps=200, weight_decay=0.0),
  )
  c.prune = dict(
      target_sparsity=0.5,   # fraction of zeros in every pruned kernel (Conv2D and Dense)
      end_fraction=0.7,      # polynomial decay reaches the target at this fraction of the phase
      frequency=100,         # steps between mask updates
      min_params=1024,       # kernels smaller than this stay dense
  )
  c.qat = dict(scheme="tfjs_per_tensor")  # or 'tflite_per_channel' (bioclip_lite_tf.optimize.quantization)
  c.checkpoint_every = 1_000
  c.log_every = 100
  # Steps per tf.function call: the host reads nothing back between them (no per-step sync);
  # logging and checkpoints happen at call boundaries (a call also ends at every log_every /
  # checkpoint_every multiple).
  c.steps_per_call = 100
  c.keep_checkpoints = 3

  if "runlocal" in switches:
    runlocal(c)
    c.model.init = "none"
    c.model.bn_momentum = 0.9
    c.data.shuffle_buffer = 64
    c.data.max_eval_examples = 64
  return c


def runlocal(c: ConfigDict) -> ConfigDict:
  """Shrinks a config in place to a few steps on tiny images, so any recipe runs in a test."""
  c.model.alpha = 0.35
  c.model.resolution = 64
  c.batch_size = 8
  for phase in c.phases.values():
    phase.steps = 6
    phase.warmup_steps = 1
  c.prune.frequency = 1
  c.prune.min_params = 0
  c.checkpoint_every = 3
  c.log_every = 1
  c.head.chunk_size = 5  # several chunks even on a test's small bank
  c.steps_per_call = 4   # > 1 so tests run the multi-step call (boundaries cut it to 1 here)
  return c
