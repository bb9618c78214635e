"""The trainer: float, then pruning, then quantization-aware training, each resumable.

Phases (each starts from the previous phase's saved model):
  float  distillation of the MobileNetV3 student from the teacher targets in the dataset.
  prune  tfmot low-magnitude pruning, polynomial decay to config.prune.target_sparsity.
  qat    strip_pruning -> fold BatchNorm -> quantize_annotate -> quantize_apply with the
         sparsity-preserving per-tensor scheme (bioclip_lite_tf.optimize.quantization).

A killed run resumes when the same command is run again: finished phases are skipped, the
unfinished one restores its last checkpoint (same step, same optimizer state) and the input
stream skips the records already consumed. The workdir layout is in train/workdir.py.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, List, Optional

from absl import logging

from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf import losses as losses_lib
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf.optimize import pruning, quantization
from bioclip_lite_tf.train import precision, validation
from bioclip_lite_tf.train import workdir as workdir_lib
from bioclip_lite_tf.train.checks import UsageError, check_config, check_workdir
from bioclip_lite_tf.train.distribute import barrier, is_chief, make_strategy
from bioclip_lite_tf.train.schedules import WarmupCosine
from bioclip_lite_tf.train.workdir import MODEL_FILE, PHASES, phase_dir, phase_done


@dataclasses.dataclass
class _PhaseState:
  """What one phase trains: model, optimizer, step counter and their checkpoint."""
  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  schedule: WarmupCosine
  step: tf.Variable
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  start_step: int


@dataclasses.dataclass
class _LoopResult:
  last_losses: Dict[str, float]
  seconds: float
  steady_photos_per_second: Optional[float]


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
    self.policy = precision.resolve(str(config.model.get("mixed_precision", "float32")))
    bank = data.bank
    with strategy.scope():
      # Frozen zero-shot head: variables (not graph constants) so 454k x D stays out of graphs.
      self.bank = losses_lib.LabelBankTensors(
          species_text_embeddings=tf.Variable(bank.species_text_embeddings, trainable=False,
                                              name="species_text_embeddings"),
          ancestors=tf.constant(bank.ancestors),
          rank_sizes=tuple(int(n) for n in bank.rank_sizes),
          logit_scale=float(bank.logit_scale),
          chunk_size=int(config.get("head", {}).get("chunk_size", 65536)))

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
    base = workdir_lib.load_phase_model(self.workdir, previous)
    if phase == "prune":
      return pruning.make_prunable(base, cfg, int(cfg.phases.prune.steps))
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
    tf.io.gfile.makedirs(phase_dir(self.workdir, phase))
    state = self._restore_phase(phase)
    prune_wrappers = pruning.prune_wrappers(state.model)
    train_step = self._make_train_step(state, prune_wrappers)
    writer = self._summary_writer(phase)
    loop = self._train_loop(phase, state, train_step, writer)
    return self._finish_phase(phase, state, prune_wrappers, loop, writer)

  def _restore_phase(self, phase: str) -> _PhaseState:
    """Builds the phase's model and optimizer, restoring the last checkpoint if there is one."""
    pcfg = self.config.phases[phase]
    steps = int(pcfg.steps)
    with self.strategy.scope():
      # tfmot's pruning wrapper fails under mixed_bfloat16 (its mask op multiplies a float32
      # kernel by a bfloat16 mask: TypeError), so the prune phase always runs in float32.
      with precision.policy_scope(self.policy if phase != "prune" else "float32"):
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
                                         max_to_keep=int(self.config.keep_checkpoints))
    if manager.latest_checkpoint:
      checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
      if int(phase_id.numpy()) != PHASES.index(phase):
        raise UsageError(f"{manager.latest_checkpoint} belongs to phase "
                         f"{PHASES[int(phase_id.numpy())]}, not {phase}")
      print(f"[train] {phase}: resuming from {manager.latest_checkpoint} at step "
            f"{int(step.numpy())}/{steps} (optimizer iterations "
            f"{int(optimizer.iterations.numpy())})", flush=True)
    return _PhaseState(model, optimizer, schedule, step, checkpoint, manager, int(step.numpy()))

  def _make_train_step(self, state: _PhaseState, prune_wrappers):
    model, optimizer, step = state.model, state.optimizer, state.step
    loss_config, bank, global_batch = self.config.losses, self.bank, self.global_batch
    strategy = self.strategy

    def step_fn(batch):
      with tf.GradientTape() as tape:
        embedding = model(batch["image"], training=True)
        # No [B, S] logits: the losses compute the species head in chunks (losses/common.py).
        outputs = losses_lib.StudentOutputs(tf.cast(embedding, tf.float32))
        values = losses_lib.total_loss(outputs, batch, bank, loss_config, global_batch)
      variables = model.trainable_variables
      grads = tape.gradient(values["total"], variables)
      optimizer.apply_gradients(zip(grads, variables))
      return values

    def one_step(iterator):
      for wrapper in prune_wrappers:
        # tfmot's UpdatePruningStep callback does this between batches; a custom loop must.
        wrapper.pruning_step.assign(step)
      values = strategy.run(step_fn, args=(next(iterator),))
      step.assign_add(1)
      return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for k, v in values.items()}

    @tf.function
    def train_step(iterator, num_steps):
      """Runs num_steps (int32 scalar tensor, >= 1) steps in one call; returns the last
      step's losses. No value leaves the device between the steps of one call."""
      values = one_step(iterator)
      for _ in tf.range(num_steps - 1):
        values = one_step(iterator)
      return values

    return train_step

  def _summary_writer(self, phase: str):
    if self.chief:
      return tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard", phase))
    return tf.summary.create_noop_writer()

  def _train_loop(self, phase: str, state: _PhaseState, train_step, writer) -> _LoopResult:
    """Steps until the phase's step count, logging every log_every and checkpointing."""
    cfg = self.config
    steps = int(cfg.phases[phase].steps)
    step, manager, schedule = state.step, state.manager, state.schedule
    iterator = self._train_iterator(state.start_step)
    log_every = max(1, int(cfg.log_every))
    every = max(1, int(cfg.checkpoint_every))
    t_start = time.time()
    t_window, n_window = time.time(), 0
    t_steady, steady_steps = None, 0
    last = {}
    print(f"[train] {phase}: steps {state.start_step}..{steps}, global batch {self.global_batch}, "
          f"{self.strategy.num_replicas_in_sync} replica(s), "
          f"{'mixed_bfloat16' if precision.is_mixed(state.model) else 'float32'}", flush=True)
    per_call = max(1, int(cfg.get("steps_per_call", 1)))
    current = state.start_step   # host-side copy of `step`: read back only at call boundaries
    while current < steps:
      # A call ends at the next log / checkpoint boundary, so those happen between calls.
      n = min(per_call, steps - current, log_every - current % log_every,
              every - current % every)
      values = train_step(iterator, tf.constant(n, tf.int32))
      current += n
      n_window += n
      if t_steady is None:
        t_steady = time.time()   # after the first (tracing) call
      else:
        steady_steps += n
      if current % log_every == 0 or current == steps:
        last = {k: float(v.numpy()) for k, v in values.items()}   # the one host sync per log
        rate = n_window * self.global_batch / max(time.time() - t_window, 1e-9)
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
    if int(step.numpy()) != current:
      raise RuntimeError(f"{phase}: step counter {int(step.numpy())} != {current} after the loop")
    manager.save(checkpoint_number=int(step.numpy()))
    steady = (steady_steps * self.global_batch / (time.time() - t_steady)
              if t_steady and steady_steps else None)
    return _LoopResult(last, time.time() - t_start, steady)

  def _finish_phase(self, phase: str, state: _PhaseState, prune_wrappers,
                    loop: _LoopResult, writer) -> Dict:
    """Strips/measures the trained model, saves it, validates it and marks the phase done."""
    cfg = self.config
    steps = int(cfg.phases[phase].steps)
    model = state.model
    result = {"phase": phase, "steps": steps, "resumed_from_step": state.start_step,
              "seconds_this_run": round(loop.seconds, 2),
              "photos_per_second": (round(loop.steady_photos_per_second, 2)
                                    if loop.steady_photos_per_second else None),
              "final_losses": loop.last_losses,
              "precision": "mixed_bfloat16" if precision.is_mixed(model) else "float32"}
    if phase == "prune":
      model = pruning.strip_and_apply_masks(model)
      result["pruned_layers"] = [l.layer.name for l in prune_wrappers]
      result["sparsity"] = pruning.sparsity_of({n: model.get_layer(n).kernel.numpy()
                                                for n in result["pruned_layers"]})
    if phase == "qat":
      result["scheme"] = cfg.qat.scheme
      pruned = self._pruned_layers()
      qweights = quantization.quantized_weights(model)
      result["sparsity"] = pruning.sparsity_of({n: qweights[n] for n in pruned if n in qweights})
    if "sparsity" in result:
      print(f"[train] {phase}: sparsity {result['sparsity']['sparsity']:.4f} over "
            f"{result['sparsity']['layers']} pruned kernels", flush=True)
    # Every worker saves: reading multi-worker variables runs collectives that all must join.
    # Non-chief workers write a private copy.
    own_dir = phase_dir(self.workdir, phase) if self.chief else os.path.join(self.private_root,
                                                                            phase)
    tf.io.gfile.makedirs(own_dir)
    if result["precision"] != "float32":
      with quantization.quantize_scope():
        model = precision.float32_copy(model)   # saved, validated and exported in float32
    workdir_lib.save_model(model, os.path.join(own_dir, MODEL_FILE))
    result["validation"] = validation.evaluate(model, self._eval_dataset(), self.bank,
                                               self.data.bank.ancestors)
    self._log_validation(phase, steps, result["validation"], writer)
    if self.chief:
      workdir_lib.write_json(workdir_lib.done_path(self.workdir, phase), result)
    barrier(self.strategy)  # the next phase, on every worker, reads this phase's model.h5
    return result

  @staticmethod
  def _log_validation(phase: str, steps: int, v: Dict, writer) -> None:
    if v.get("n"):
      print(f"[train] {phase}: validation n={v['n']} student-vs-teacher top-1 " +
            " ".join(f"{r} {a:.3f}" for r, a in v["top1_agreement"].items()), flush=True)
    with writer.as_default(step=steps):
      for r, a in v.get("top1_agreement", {}).items():
        tf.summary.scalar(f"validation/top1_agreement/{r}", a)
    writer.flush()

  def _pruned_layers(self) -> List[str]:
    path = workdir_lib.done_path(self.workdir, "prune")
    if not tf.io.gfile.exists(path):
      return []
    return workdir_lib.read_json(path).get("pruned_layers", [])


def write_summary(workdir: str, config, data: data_lib.DistillData) -> Dict:
  phases = {}
  for phase in PHASES:
    if phase_done(workdir, phase):
      phases[phase] = workdir_lib.read_json(workdir_lib.done_path(workdir, phase))
  summary = {"format_version": 1, "embed_dim": data.embed_dim, "dataset_dir": data.dataset_dir,
             "num_train": data.num_examples(config.data.train_split),
             "num_eval": data.num_examples(config.data.eval_split),
             "num_species": data.bank.num_species,
             "teacher": data.bank.teacher, "phases": phases}
  workdir_lib.write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def _check_phases(phases, workdir: str) -> List[str]:
  phases = list(phases)
  unknown = [p for p in phases if p not in PHASES]
  if unknown or not phases:
    raise UsageError(f"--phases {phases}: each must be one of {PHASES}")
  phases = [p for p in PHASES if p in phases]  # always in pipeline order
  for phase in phases:
    previous = PHASES[PHASES.index(phase) - 1] if phase != "float" else None
    if previous and previous not in phases and not phase_done(workdir, previous):
      raise UsageError(f"--phases includes {phase}, which needs phase {previous} finished in "
                       f"{workdir} ({workdir_lib.done_path(workdir, previous)} "
                       "missing); run it first or add it to --phases")
  return phases


def run(config, workdir: str, data_dir: str, phases=PHASES, strategy_name: str = "default",
        cpu_devices: int = 0) -> Dict:
  """The whole command as a function (tests call it). Raises UsageError / DataError /
  ModelConfigError / ConfigError for bad input, before any training."""
  if not workdir:
    raise UsageError("--workdir is required")
  phases = _check_phases(phases, workdir)
  check_config(config)
  data = data_lib.open_dataset(data_dir, config.data)
  check_workdir(workdir, config, data.embed_dim, data.dataset_dir)
  strategy = make_strategy(strategy_name, cpu_devices)
  chief = is_chief(strategy)
  tf.io.gfile.makedirs(workdir)
  if chief:
    workdir_lib.write_json(os.path.join(workdir, "config.json"), {
        "config": config.to_dict(), "embed_dim": data.embed_dim,
        "dataset_dir": data.dataset_dir, "strategy": strategy_name})
  trainer = Trainer(config, workdir, data, strategy)
  for phase in phases:
    if phase_done(workdir, phase):
      print(f"[train] {phase}: already done ({workdir_lib.done_path(workdir, phase)})",
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
