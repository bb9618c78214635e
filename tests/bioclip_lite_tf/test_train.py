"""The trainer end to end: the demo config through float -> prune -> QAT on a built dataset,
resume after a real SIGKILL, the mirrored strategy, and bad input refused with exit status 2."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import bioclip_lite_tf
from formats.ranks import RANKS
from bioclip_lite_tf import config as config_lib
from bioclip_lite_tf import data as data_lib
from bioclip_lite_tf import model as model_lib
from bioclip_lite_tf.optimize import quantization, tfjs_grid
from bioclip_lite_tf.testing import synthetic
from bioclip_lite_tf import train
from bioclip_lite_tf.keras import keras, tf

PACKAGE_DIR = os.path.dirname(bioclip_lite_tf.__file__)
REPO = os.path.dirname(PACKAGE_DIR)
DEMO_CONFIG = os.path.join(PACKAGE_DIR, "configs", "demo.py")
ENV = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


@pytest.fixture(scope="module")
def data_dir():
  # 12 species with visual structure; the stand-in teacher is a function of the photo.
  return synthetic.cached_dataset(num_photos=600, embed_dim=24, image_size=64)


def _cli(*args):
  return [sys.executable, "-m", "bioclip_lite_tf.train", *args]


def test_demo_config_all_phases_learns_to_agree_with_the_teacher(tmp_path, data_dir):
  config = config_lib.apply_overrides(config_lib.load_config(DEMO_CONFIG), [
      # The demo recipe at a test's size: lower resolution, fewer steps.
      "model.resolution=64", "phases.float.steps=240", "phases.prune.steps=80",
      "phases.qat.steps=40", "prune.frequency=5"])
  workdir = str(tmp_path / "work")
  summary = train.run(config, workdir, data_dir)

  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  assert summary["embed_dim"] == 24
  phases = summary["phases"]
  assert list(phases) == ["float", "prune", "qat"]
  for result in phases.values():
    v = result["validation"]
    assert v["n"] == summary["num_eval"] > 0
    assert set(v["top1_agreement"]) == set(RANKS)
  # 12 species, the teacher's most frequent answer covers 0.28 of validation photos. Measured
  # with this recipe: species agreement 0.86-0.89 after each phase. Bound with headroom:
  for phase, result in phases.items():
    agree = result["validation"]["top1_agreement"]
    assert agree["species"] >= 0.5, (phase, agree)
    assert agree["kingdom"] >= agree["species"] - 0.05

  # Pruning reached 50% in every pruned kernel, and QAT kept exactly those zeros.
  assert phases["prune"]["sparsity"]["min_layer_sparsity"] >= 0.499
  assert phases["qat"]["sparsity"]["min_layer_sparsity"] >= 0.499
  pruned = train.load_phase_model(workdir, "prune")
  qat = train.load_phase_model(workdir, "qat")
  qweights = quantization.quantized_weights(qat)
  for name in phases["prune"]["pruned_layers"]:
    zeros = pruned.get_layer(name).get_weights()[0] == 0
    assert np.all(qweights[name][zeros] == 0), name
  # Every QAT weight lies on the per-tensor uint8 grid TF.js will compute for it.
  for name, w in qweights.items():
    assert len(np.unique(w)) <= 256
    _, scale = tfjs_grid.per_tensor_grid(w)
    assert np.abs(tfjs_grid.tfjs_round_trip(w).astype(np.float64) - w).max() <= 1e-4 * scale

  # The QAT model is what load_phase_model returns: same outputs as in training's own eval path.
  x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  out = qat(x, training=False).numpy()
  assert out.shape == (2, 24)
  np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
  assert not any(isinstance(l, keras.layers.BatchNormalization) for l in qat.layers)
  for phase in train.PHASES:
    assert os.path.exists(os.path.join(workdir, phase, train.DONE_FILE))
  assert os.listdir(os.path.join(workdir, "tensorboard", "float"))

  # Running the same command again does nothing but report.
  again = train.run(config, workdir, data_dir)
  assert again["phases"] == summary["phases"]


def _wait_for_checkpoint(proc, ckpt_dir, min_step, timeout):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if proc.poll() is not None:
      return None
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest and int(latest.rsplit("-", 1)[1]) >= min_step:
      return int(latest.rsplit("-", 1)[1])
    time.sleep(0.2)
  return None


def test_sigkill_then_same_command_resumes_same_step_and_optimizer(tmp_path, data_dir):
  workdir = str(tmp_path / "work")
  args = _cli(f"--config={DEMO_CONFIG}:runlocal", f"--workdir={workdir}",
              f"--data_dir={data_dir}", "--phases=float", "--override=phases.float.steps=200",
              "--override=checkpoint_every=10", "--override=log_every=50")
  log1 = open(tmp_path / "run1.log", "w")
  proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=log1, stderr=subprocess.STDOUT)
  try:
    killed_after = _wait_for_checkpoint(proc, os.path.join(workdir, "float", "ckpt"), 10, 240)
    assert killed_after is not None, open(tmp_path / "run1.log").read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert not os.path.exists(os.path.join(workdir, "float", train.DONE_FILE))
  saved = tf.train.latest_checkpoint(os.path.join(workdir, "float", "ckpt"))
  saved_step = int(saved.rsplit("-", 1)[1])
  reader = tf.train.load_checkpoint(saved)
  saved_iterations = reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")

  result = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert (f"resuming from {saved} at step {saved_step}/200 (optimizer iterations "
          f"{saved_iterations})") in result.stdout
  assert saved_iterations == saved_step
  with open(os.path.join(workdir, "float", train.DONE_FILE)) as f:
    done = json.load(f)
  assert done["resumed_from_step"] == saved_step and done["steps"] == 200
  final = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(workdir, "float",
                                                                           "ckpt")))
  assert final.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 200
  assert final.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 200


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, data_dir):
  workdir = str(tmp_path / "work")
  result = subprocess.run(_cli(
      f"--config={DEMO_CONFIG}:runlocal", f"--workdir={workdir}", f"--data_dir={data_dir}",
      "--phases=float", "--strategy=mirrored", "--cpu_devices=2",
      "--override=phases.float.steps=3"), cwd=REPO, env=ENV, capture_output=True, text=True,
      timeout=400)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert "2 replica(s)" in result.stdout
  with open(os.path.join(workdir, "float", train.DONE_FILE)) as f:
    done = json.load(f)
  assert done["steps"] == 3 and np.isfinite(done["final_losses"]["total"])


def test_bad_usage_exits_2_before_training(tmp_path, data_dir):
  workdir = str(tmp_path / "work")
  result = subprocess.run(_cli(f"--config={DEMO_CONFIG}:runlocal", f"--workdir={workdir}",
                               f"--data_dir={data_dir}", "--override=model.name=resnet50"),
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2
  assert "unknown model.name 'resnet50'" in result.stderr
  assert not os.path.exists(workdir)
  helpfull = subprocess.run(_cli("--helpfull"), cwd=REPO, env=ENV, capture_output=True,
                            text=True, timeout=120)
  # absl prints the help and exits with status 1 after --helpfull.
  assert helpfull.returncode in (0, 1), helpfull.stderr[-2000:]
  for flag in ("config", "workdir", "data_dir", "phases", "strategy", "init", "imagenet_weights",
               "override", "cpu_devices"):
    assert f"--{flag}:" in helpfull.stdout or f"--[no]{flag}:" in helpfull.stdout, flag


def test_bad_config_and_data_are_refused_in_process(tmp_path, data_dir):
  config = config_lib.load_config(f"{DEMO_CONFIG}:runlocal")
  with pytest.raises(data_lib.DataError, match="does not exist"):
    train.run(config, str(tmp_path / "w1"), str(tmp_path / "missing"))
  # A workdir whose checkpoints have another embedding width than the dataset's teacher.
  workdir = tmp_path / "w2"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"embed_dim": 512, "config": {}}))
  with pytest.raises(train.UsageError, match="embedding width 512"):
    train.run(config, str(workdir), data_dir)
  with pytest.raises(train.UsageError, match="needs phase prune"):
    train.run(config, str(tmp_path / "w3"), data_dir, phases=["qat"])
  imagenet = config_lib.apply_overrides(config, ["model.init=imagenet"])
  with pytest.raises(model_lib.ModelConfigError, match="--init=none"):
    train.run(imagenet, str(tmp_path / "w4"), data_dir)
  with pytest.raises(config_lib.ConfigError, match="no field"):
    config_lib.apply_overrides(config, ["model.nope=1"])
  with pytest.raises(config_lib.ConfigError, match="is int"):
    config_lib.apply_overrides(config, ["batch_size='big'"])


def _seconds_to_first_batch(trainer, start_step):
  t0 = time.perf_counter()
  iterator = trainer._train_iterator(start_step)
  batch = next(iterator)
  seconds = time.perf_counter() - t0
  return seconds, batch


def test_resume_cost_does_not_grow_with_the_step(data_dir):
  # The trainer's own resumed input stream (what a restored checkpoint at `start_step` builds),
  # timed from construction to the first batch. 536 training records, batch 8: step 20k is
  # ~300 epochs in; re-reading the consumed records (the old resume) would take ~10x longer at
  # 10x the step. Bound: 3x (timing noise on a shared machine), with the early resume also
  # compared with a fresh start.
  config = config_lib.load_config(f"{DEMO_CONFIG}:runlocal")
  data = data_lib.open_dataset(data_dir, config.data)
  trainer = train.Trainer(config, "/nonexistent-workdir", data, tf.distribute.get_strategy())
  _seconds_to_first_batch(trainer, 0)   # warm-up: graph building, file cache
  fresh, _ = _seconds_to_first_batch(trainer, 0)
  early, _ = _seconds_to_first_batch(trainer, 2_000)
  late, _ = _seconds_to_first_batch(trainer, 20_000)
  assert late < 3.0 * max(early, fresh, 0.05), (fresh, early, late)


def test_resumed_trainer_stream_equals_the_uninterrupted_one(data_dir):
  # Seek, not replay: the batch at step s of a fresh stream is the first batch of a stream
  # resumed at s, across epoch boundaries (536 records, batch 8: step 70 is in epoch 2).
  config = config_lib.load_config(f"{DEMO_CONFIG}:runlocal")
  data = data_lib.open_dataset(data_dir, config.data)
  trainer = train.Trainer(config, "/nonexistent-workdir", data, tf.distribute.get_strategy())
  fresh = trainer._train_iterator(0)
  batches = [next(fresh)["teacher_embedding"].numpy() for _ in range(150)]
  for s in (1, 66, 67, 70, 133, 149):
    _, resumed = _seconds_to_first_batch(trainer, s)
    np.testing.assert_array_equal(resumed["teacher_embedding"].numpy(), batches[s], err_msg=s)


def test_mixed_bfloat16_float_and_qat_steps_on_cpu_save_float32_models(tmp_path, data_dir):
  # TF's CPU kernels run bfloat16 convolutions, so mixed precision is checked here: float and
  # QAT phases train under mixed_bfloat16 (prune runs float32: tfmot's pruning wrapper fails
  # under it), the losses stay finite, and every saved model computes in float32.
  config = config_lib.apply_overrides(config_lib.load_config(f"{DEMO_CONFIG}:runlocal"), [
      "model.mixed_precision='mixed_bfloat16'", "phases.float.steps=2", "phases.prune.steps=1",
      "phases.qat.steps=2"])
  workdir = str(tmp_path / "work")
  summary = train.run(config, workdir, data_dir)
  phases = summary["phases"]
  assert [phases[p]["precision"] for p in train.PHASES] == ["mixed_bfloat16", "float32",
                                                             "mixed_bfloat16"]
  for result in phases.values():
    assert all(np.isfinite(v) for v in result["final_losses"].values()), result
  x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
  for phase in train.PHASES:
    model = train.load_phase_model(workdir, phase)
    policies = {l.dtype_policy.name for l in model.layers if hasattr(l, "dtype_policy")}
    assert policies == {"float32"}, (phase, policies)
    out = model(x, training=False)
    assert out.dtype == tf.float32
  # QAT's fake-quantized weights are still on TF.js's uint8 grid (quantized from the float32
  # master weights, not from their bfloat16 reads).
  for name, w in quantization.quantized_weights(train.load_phase_model(workdir, "qat")).items():
    _, scale = tfjs_grid.per_tensor_grid(w)
    assert np.abs(tfjs_grid.tfjs_round_trip(w).astype(np.float64) - w).max() <= 1e-4 * scale
