r"""Train the BioCLIP Lite student: float, then pruning, then quantization-aware training.

  python -m bioclip_lite_tf.train --config=bioclip_lite_tf/configs/demo.py \
      --workdir=WORKDIR --data_dir=TFDS_DATA_DIR [--phases=float,prune,qat] \
      [--strategy=default|mirrored|multi_worker] [--init=imagenet|none] [--override=k=v ...]

Phases (each starts from the previous phase's saved model):
  float  distillation of the MobileNetV3 student from the teacher targets in the dataset.
  prune  tfmot low-magnitude pruning, polynomial decay to config.prune.target_sparsity.
  qat    strip_pruning -> fold BatchNorm -> quantize_annotate -> quantize_apply with the
         sparsity-preserving per-tensor scheme (bioclip_lite_tf.quantization).

WORKDIR (docs/FORMATS.md section 3):
  config.json                 the resolved config, embed_dim, dataset dir
  <phase>/ckpt/               tf.train checkpoints (model, optimizer, step, phase) every N steps
  <phase>/model.h5            the phase's final model (float/prune: plain core, qat: QAT model)
  <phase>/phase.done.json     written last: the phase is complete (metrics, timing)
  tensorboard/<phase>/        scalars
  summary.json                metrics per phase

A killed run resumes when the same command is run again: finished phases are skipped, the
unfinished one restores its last checkpoint (same step, same optimizer state) and the input
stream skips the records already consumed. Exit status: 0 done, 2 bad usage / config / data
(reported before training starts), 1 anything else.

Load a phase's model with `load_phase_model(workdir, phase)`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Dict, List

from absl import app, flags, logging

from bioclip_lite_tf.keras import keras, tf  # sets TF_USE_LEGACY_KERAS before TF loads
from bioclip_lite_tf import config as config_lib
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf import losses as losses_lib
from bioclip_lite_tf import metrics as metrics_lib
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf import quantization

import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

PHASES = ("float", "prune", "qat")
STRATEGIES = ("default", "mirrored", "multi_worker")
MODEL_FILE = "model.h5"
DONE_FILE = "phase.done.json"

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


class UsageError(ValueError):
  """Bad flags, config or workdir: reported before training, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Public loader for the export stage.

def phase_dir(workdir: str, phase: str) -> str:
  return os.path.join(workdir, phase)


def load_phase_model(workdir: str, phase: str) -> keras.Model:
  """Loads WORKDIR/<phase>/model.h5 (phase in float, prune, qat), ready for inference.

  float, prune: the plain core student (BatchNorm layers; prune's kernels are sparse).
  qat: the BN-folded student whose Conv2D/DepthwiseConv2D/Dense layers are QuantizeWrapperV2
  with per-tensor fake-quantized weights (`quantization.quantized_weights(model)` gives them).
  All: input float32 [N, R, R, 3] RGB 0..255, output float32 [N, D] L2-normalized.
  """
  if phase not in PHASES:
    raise ValueError(f"unknown phase {phase!r}; phases: {PHASES}")
  path = os.path.join(phase_dir(workdir, phase), MODEL_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} does not exist: phase {phase!r} has not finished in "
                            f"{workdir} (run python -m bioclip_lite_tf.train --phases={phase})")
  with quantization.quantize_scope():
    return keras.models.load_model(path, compile=False)


def _save_model_atomic(model: keras.Model, path: str) -> None:
  tmp = path + ".tmp.h5"
  model.save(tmp, include_optimizer=False, save_format="h5")
  tf.io.gfile.rename(tmp, path, overwrite=True)


# ---------------------------------------------------------------------------------------------
# Learning rate.

@keras.utils.register_keras_serializable(package="bioclip_lite")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warmup to `peak` over warmup_steps, then cosine decay to 0 at total_steps."""

  def __init__(self, peak: float, warmup_steps: int, total_steps: int):
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.total_steps = int(total_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
    progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
    cosine = 0.5 * self.peak * (1.0 + tf.cos(math.pi * tf.clip_by_value(progress, 0.0, 1.0)))
    return tf.where(step < self.warmup_steps, warm, cosine)

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps}


# ---------------------------------------------------------------------------------------------
# Strategy, config checks.

def make_strategy(name: str, cpu_devices: int = 0) -> tf.distribute.Strategy:
  """default | mirrored | multi_worker. cpu_devices > 1 first splits the CPU into logical ones."""
  if cpu_devices and cpu_devices > 1:
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_physical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    # NCCL is GPU only; on CPUs reduce through one device.
    return tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise UsageError(f"unknown --strategy {name!r}; one of {STRATEGIES}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True unless this process is a non-chief worker of a multi-worker cluster (TF_CONFIG)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
  if not spec:
    return True
  if resolver.task_type in (None, "chief"):
    return True
  return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in spec


def barrier(strategy: tf.distribute.Strategy) -> None:
  """Every worker waits here (an all-reduce), e.g. until the chief has written a model file."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def check_config(config) -> None:
  """Everything that can be checked without data: raises UsageError / ModelConfigError."""
  if config.model.name not in model_lib.STUDENTS:
    raise UsageError(f"unknown model.name {config.model.name!r}; known: "
                     f"{sorted(model_lib.STUDENTS)}")
  for name in config.losses:
    if name not in losses_lib.LOSSES:
      raise UsageError(f"unknown loss {name!r} in config.losses; known: "
                       f"{sorted(losses_lib.LOSSES)}")
  if config.qat.scheme not in quantization.SCHEMES:
    raise UsageError(f"unknown qat.scheme {config.qat.scheme!r}; known: "
                     f"{sorted(quantization.SCHEMES)}")
  if not 0.0 <= float(config.prune.target_sparsity) < 1.0:
    raise UsageError(f"prune.target_sparsity must be in [0, 1), got {config.prune.target_sparsity}")
  for phase in PHASES:
    if int(config.phases[phase].steps) <= 0:
      raise UsageError(f"phases.{phase}.steps must be positive")
  if int(config.batch_size) <= 0:
    raise UsageError("batch_size must be positive")
  if config.model.init == "imagenet":
    model_lib.find_imagenet_weights(config.model, config.model.imagenet_weights)
  elif config.model.init != "none":
    raise UsageError(f"unknown model.init {config.model.init!r}; use imagenet or none")


_ARCH_KEYS = ("name", "alpha", "resolution")


def check_workdir(workdir: str, config, embed_dim: int, dataset_dir: str) -> None:
  """A workdir made for another architecture or embedding width cannot be resumed."""
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    previous = json.load(f)
  if int(previous.get("embed_dim", embed_dim)) != embed_dim:
    raise UsageError(
        f"{workdir} holds checkpoints of a student with embedding width "
        f"{previous['embed_dim']}, but the dataset at {dataset_dir} has teacher embeddings of "
        f"width {embed_dim}; use a new --workdir for this dataset")
  old_model = previous.get("config", {}).get("model", {})
  for key in _ARCH_KEYS:
    if key in old_model and old_model[key] != config.model[key]:
      raise UsageError(f"{workdir} was trained with model.{key}={old_model[key]!r}, the config "
                       f"now says {config.model[key]!r}; use a new --workdir")


# ---------------------------------------------------------------------------------------------
# Phase models.

def pruning_schedule(config, steps: int):
  """PolynomialDecay 0 -> target over end_fraction of the phase.

  tfmot updates masks only at multiples of `frequency`, so end_step is rounded down to one:
  otherwise the last update falls short of end_step and the target is never reached.
  """
  frequency = max(1, int(config.prune.frequency))
  end = max(1, int(steps * float(config.prune.end_fraction)))
  frequency = min(frequency, end)
  end = end // frequency * frequency
  return tfmot.sparsity.keras.PolynomialDecay(
      initial_sparsity=0.0, final_sparsity=float(config.prune.target_sparsity),
      begin_step=0, end_step=end, frequency=frequency)


def pruned_layer_names(model: keras.Model, min_params: int) -> List[str]:
  """Conv2D / Dense layers whose kernel has at least min_params weights."""
  names = []
  for name in model_lib.prunable_layer_names(model):
    kernel = model.get_layer(name).kernel
    if int(np.prod(kernel.shape)) >= min_params:
      names.append(name)
  return names


def make_prunable(model: keras.Model, config, steps: int) -> keras.Model:
  """Wraps the chosen layers in tfmot PruneLowMagnitude (clone_model: tfmot refuses some layers
  when asked to prune a whole model)."""
  chosen = set(pruned_layer_names(model, int(config.prune.min_params)))
  schedule = pruning_schedule(config, steps)

  def wrap(layer):
    if layer.name in chosen:
      return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
    return layer.__class__.from_config(layer.get_config())

  with quantization.quantize_scope():
    clone = keras.models.clone_model(model, clone_function=wrap)
  # Wrapped layers own the same variables as the inner layers: copy weights by layer name.
  for layer in clone.layers:
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    src = model.get_layer(inner.name)
    if src.weights:
      inner.set_weights(src.get_weights())
  return clone


def strip_and_apply_masks(model: keras.Model) -> keras.Model:
  """Multiplies each pruned kernel by its final mask, then strip_pruning -> plain core."""
  for layer in model.layers:
    if isinstance(layer, PruneLowMagnitude):
      for weight, mask, _ in layer.pruning_vars:
        weight.assign(weight * tf.cast(mask, weight.dtype))
  return tfmot.sparsity.keras.strip_pruning(model)


def sparsity_of(kernels: Dict[str, np.ndarray]) -> Dict:
  zeros = sum(int(np.sum(k == 0)) for k in kernels.values())
  total = sum(int(k.size) for k in kernels.values())
  per_layer = [float(np.mean(k == 0)) for k in kernels.values()]
  return {"zeros": zeros, "params": total, "sparsity": zeros / max(total, 1),
          "min_layer_sparsity": min(per_layer) if per_layer else 0.0, "layers": len(kernels)}


# ---------------------------------------------------------------------------------------------
# The trainer.

class Trainer:
  """Runs the phases of one config in one workdir under one strategy."""

  def __init__(self, config, workdir: str, data: data_lib.DistillData,
               strategy: tf.distribute.Strategy):
    self.config = config
    self.workdir = workdir
    self.data = data
    self.strategy = strategy
    self.embed_dim = data.embed_dim
    self.global_batch = int(config.batch_size)
    # Multi-worker: every worker trains and checkpoints (checkpointing is collective), but only
    # the chief writes the workdir's files; the others keep their checkpoints apart.
    self.chief = is_chief(strategy)
    resolver = getattr(strategy, "cluster_resolver", None)
    self.private_root = workdir if self.chief else os.path.join(
        workdir, "workers", f"{resolver.task_type}_{resolver.task_id}")
    if self.global_batch % strategy.num_replicas_in_sync:
      raise UsageError(f"batch_size {self.global_batch} is not divisible by the "
                       f"{strategy.num_replicas_in_sync} replicas of --strategy")
    bank = data.bank
    with strategy.scope():
      # Frozen zero-shot head: variables (not graph constants) so 454k x D stays out of graphs.
      self.bank = losses_lib.LabelBankTensors(
          species_text_embeddings=tf.Variable(bank.species_text_embeddings, trainable=False,
                                              name="species_text_embeddings"),
          ancestors=tf.constant(bank.ancestors),
          rank_sizes=tuple(int(n) for n in bank.rank_sizes),
          logit_scale=float(bank.logit_scale))

  # -- models ---------------------------------------------------------------------------------
  def _build_phase_model(self, phase: str) -> keras.Model:
    cfg = self.config
    if phase == "float":
      model = model_lib.build_student(cfg.model, self.embed_dim)
      described = model_lib.initialize(model, cfg.model)
      logging.info("float: student %s, init %s", cfg.model.name, described)
      print(f"[train] float: init {described}", flush=True)
      return model
    previous = {"prune": "float", "qat": "prune"}[phase]
    base = load_phase_model(self.workdir, previous)
    if phase == "prune":
      return make_prunable(base, cfg, int(cfg.phases.prune.steps))
    folded = model_lib.fold_batch_norms(base, cfg.model, self.embed_dim)
    return quantization.quantize(folded, cfg.qat.scheme, preserve_sparsity=True)

  # -- data -----------------------------------------------------------------------------------
  def _train_iterator(self, start_step: int):
    cfg = self.config

    def dataset_fn(ctx: tf.distribute.InputContext):
      per_replica = ctx.get_per_replica_batch_size(self.global_batch)
      pipelines = ctx.num_input_pipelines
      # Each pipeline feeds num_replicas / pipelines replicas one batch per step.
      per_pipeline_step = per_replica * (ctx.num_replicas_in_sync // pipelines)
      return data_lib.make_dataset(
          self.data, cfg.data.train_split, int(cfg.model.resolution), per_replica,
          training=True, seed=int(cfg.data.seed), shuffle_buffer=int(cfg.data.shuffle_buffer),
          skip_records=start_step * per_pipeline_step,
          input_context=ctx if pipelines > 1 else None)

    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def _eval_dataset(self):
    cfg = self.config
    return data_lib.make_dataset(self.data, cfg.data.eval_split, int(cfg.model.resolution),
                                 min(self.global_batch, 64), training=False,
                                 max_examples=int(cfg.data.max_eval_examples))

  # -- one phase ------------------------------------------------------------------------------
  def run_phase(self, phase: str) -> Dict:
    cfg = self.config
    pcfg = cfg.phases[phase]
    steps = int(pcfg.steps)
    pdir = phase_dir(self.workdir, phase)
    tf.io.gfile.makedirs(pdir)
    strategy = self.strategy
    with strategy.scope():
      model = self._build_phase_model(phase)
      schedule = WarmupCosine(float(pcfg.learning_rate), int(pcfg.warmup_steps), steps)
      optimizer = keras.optimizers.AdamW(learning_rate=schedule,
                                         weight_decay=float(pcfg.weight_decay))
      optimizer.build(model.trainable_variables)
      step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      phase_id = tf.Variable(PHASES.index(phase), dtype=tf.int64, trainable=False, name="phase")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, phase=phase_id)
    manager = tf.train.CheckpointManager(checkpoint,
                                         os.path.join(self.private_root, phase, "ckpt"),
                                         max_to_keep=int(cfg.keep_checkpoints))
    if manager.latest_checkpoint:
      checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
      if int(phase_id.numpy()) != PHASES.index(phase):
        raise UsageError(f"{manager.latest_checkpoint} belongs to phase "
                         f"{PHASES[int(phase_id.numpy())]}, not {phase}")
      print(f"[train] {phase}: resuming from {manager.latest_checkpoint} at step "
            f"{int(step.numpy())}/{steps} (optimizer iterations "
            f"{int(optimizer.iterations.numpy())})", flush=True)
    start_step = int(step.numpy())

    prune_wrappers = [l for l in model.layers
                      if isinstance(l, PruneLowMagnitude)]
    loss_config = cfg.losses
    bank = self.bank
    global_batch = self.global_batch

    def step_fn(batch):
      with tf.GradientTape() as tape:
        embedding = model(batch["image"], training=True)
        outputs = losses_lib.StudentOutputs(embedding, losses_lib.species_logits(embedding, bank))
        values = losses_lib.total_loss(outputs, batch, bank, loss_config, global_batch)
      variables = model.trainable_variables
      grads = tape.gradient(values["total"], variables)
      optimizer.apply_gradients(zip(grads, variables))
      return values

    @tf.function
    def train_step(iterator):
      for wrapper in prune_wrappers:
        # tfmot's UpdatePruningStep callback does this between batches; a custom loop must.
        wrapper.pruning_step.assign(step)
      values = strategy.run(step_fn, args=(next(iterator),))
      step.assign_add(1)
      return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in values.items()}

    writer = (tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard", phase))
              if self.chief else tf.summary.create_noop_writer())
    iterator = self._train_iterator(start_step)
    log_every = max(1, int(cfg.log_every))
    every = max(1, int(cfg.checkpoint_every))
    t_start = time.time()
    t_window, n_window = time.time(), 0
    t_steady, steady_steps = None, 0
    last = {}
    print(f"[train] {phase}: steps {start_step}..{steps}, global batch {global_batch}, "
          f"{strategy.num_replicas_in_sync} replica(s)", flush=True)
    while int(step.numpy()) < steps:
      values = train_step(iterator)
      current = int(step.numpy())
      n_window += 1
      if t_steady is None:
        t_steady = time.time()   # after the first (tracing) step
      else:
        steady_steps += 1
      if current % log_every == 0 or current == steps:
        last = {k: float(v.numpy()) for k, v in values.items()}
        rate = n_window * global_batch / max(time.time() - t_window, 1e-9)
        t_window, n_window = time.time(), 0
        parts = " ".join(f"{k} {v:.4f}" for k, v in last.items() if k != "total")
        print(f"[train] {phase} step {current}/{steps} ({100.0 * current / steps:.0f}%) "
              f"loss {last['total']:.4f} ({parts}) {rate:.1f} photos/s", flush=True)
        with writer.as_default(step=current):
          for k, v in last.items():
            tf.summary.scalar(f"loss/{k}", v)
          tf.summary.scalar("learning_rate", float(schedule(current - 1)))
          tf.summary.scalar("photos_per_second", rate)
      if current % every == 0 and current < steps:
        manager.save(checkpoint_number=current)
    manager.save(checkpoint_number=int(step.numpy()))
    seconds = time.time() - t_start
    steady = (steady_steps * global_batch / (time.time() - t_steady)
              if t_steady and steady_steps else None)

    result = {"phase": phase, "steps": steps, "resumed_from_step": start_step,
              "seconds_this_run": round(seconds, 2),
              "photos_per_second": round(steady, 2) if steady else None,
              "final_losses": last}
    if phase == "prune":
      model = strip_and_apply_masks(model)
      result["pruned_layers"] = [l.layer.name for l in prune_wrappers]
      result["sparsity"] = sparsity_of({n: model.get_layer(n).kernel.numpy()
                                        for n in result["pruned_layers"]})
    if phase == "qat":
      result["scheme"] = cfg.qat.scheme
      pruned = self._pruned_layers()
      qweights = quantization.quantized_weights(model)
      result["sparsity"] = sparsity_of({n: qweights[n] for n in pruned if n in qweights})
    if "sparsity" in result:
      print(f"[train] {phase}: sparsity {result['sparsity']['sparsity']:.4f} over "
            f"{result['sparsity']['layers']} pruned kernels", flush=True)
    # Every worker saves: reading multi-worker variables runs collectives that all must join.
    # Non-chief workers write a private copy.
    own_dir = pdir if self.chief else os.path.join(self.private_root, phase)
    tf.io.gfile.makedirs(own_dir)
    _save_model_atomic(model, os.path.join(own_dir, MODEL_FILE))
    result["validation"] = metrics_lib.evaluate(model, self._eval_dataset(), self.bank,
                                                self.data.bank.ancestors)
    v = result["validation"]
    if v.get("n"):
      print(f"[train] {phase}: validation n={v['n']} student-vs-teacher top-1 " +
            " ".join(f"{r} {a:.3f}" for r, a in v["top1_agreement"].items()), flush=True)
    with writer.as_default(step=steps):
      for r, a in v.get("top1_agreement", {}).items():
        tf.summary.scalar(f"validation/top1_agreement/{r}", a)
    writer.flush()
    if self.chief:
      data_lib.write_json_atomic(os.path.join(pdir, DONE_FILE), result)
    barrier(strategy)  # the next phase, on every worker, reads this phase's model.h5
    return result

  def _pruned_layers(self) -> List[str]:
    path = os.path.join(phase_dir(self.workdir, "prune"), DONE_FILE)
    if not tf.io.gfile.exists(path):
      return []
    with tf.io.gfile.GFile(path) as f:
      return json.load(f).get("pruned_layers", [])


def phase_done(workdir: str, phase: str) -> bool:
  return tf.io.gfile.exists(os.path.join(phase_dir(workdir, phase), DONE_FILE))


def write_summary(workdir: str, config, data: data_lib.DistillData) -> Dict:
  phases = {}
  for phase in PHASES:
    path = os.path.join(phase_dir(workdir, phase), DONE_FILE)
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        phases[phase] = json.load(f)
  summary = {"format_version": 1, "embed_dim": data.embed_dim, "dataset_dir": data.dataset_dir,
             "num_train": data.num_examples(config.data.train_split),
             "num_eval": data.num_examples(config.data.eval_split),
             "num_species": data.bank.num_species,
             "teacher": data.bank.teacher, "phases": phases}
  data_lib.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  return summary


def run(config, workdir: str, data_dir: str, phases=PHASES, strategy_name: str = "default",
        cpu_devices: int = 0) -> Dict:
  """The whole command as a function (tests call it). Raises UsageError / DataError /
  ModelConfigError / ConfigError for bad input, before any training."""
  phases = list(phases)
  unknown = [p for p in phases if p not in PHASES]
  if unknown or not phases:
    raise UsageError(f"--phases {phases}: each must be one of {PHASES}")
  phases = [p for p in PHASES if p in phases]  # always in pipeline order
  if not workdir:
    raise UsageError("--workdir is required")
  check_config(config)
  data = data_lib.open_dataset(data_dir, config.data)
  check_workdir(workdir, config, data.embed_dim, data.dataset_dir)
  for phase in phases:
    previous = PHASES[PHASES.index(phase) - 1] if phase != "float" else None
    if previous and previous not in phases and not phase_done(workdir, previous):
      raise UsageError(f"--phases includes {phase}, which needs phase {previous} finished in "
                       f"{workdir} ({os.path.join(phase_dir(workdir, previous), DONE_FILE)} "
                       "missing); run it first or add it to --phases")
  strategy = make_strategy(strategy_name, cpu_devices)
  chief = is_chief(strategy)
  tf.io.gfile.makedirs(workdir)
  if chief:
    data_lib.write_json_atomic(os.path.join(workdir, "config.json"), {
        "config": config.to_dict(), "embed_dim": data.embed_dim,
        "dataset_dir": data.dataset_dir, "strategy": strategy_name})
  trainer = Trainer(config, workdir, data, strategy)
  for phase in phases:
    if phase_done(workdir, phase):
      print(f"[train] {phase}: already done ({os.path.join(phase_dir(workdir, phase), DONE_FILE)})",
            flush=True)
      continue
    trainer.run_phase(phase)
    if chief:
      write_summary(workdir, config, data)
  if not chief:
    return {}
  summary = write_summary(workdir, config, data)
  _print_final(summary)
  return summary


def _print_final(summary: Dict) -> None:
  print("[train] summary (validation, student vs teacher top-1 agreement):", flush=True)
  for phase, result in summary["phases"].items():
    v = result.get("validation", {})
    agree = v.get("top1_agreement", {})
    sp = result.get("sparsity", {}).get("sparsity")
    print(f"  {phase:6s} species {agree.get('species', float('nan')):.3f} genus "
          f"{agree.get('genus', float('nan')):.3f} family {agree.get('family', float('nan')):.3f}"
          f" | {result.get('photos_per_second')} photos/s"
          + (f" | sparsity {sp:.3f}" if sp is not None else ""), flush=True)


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
