r"""Throughput of tree_of_life_distill: the build, and reading for training, against a train step.

  .venv/bin/python bench/tfds_bench.py [--num_photos=2000] [--out=bench/results/tfds.json]

1. Writes a format-1 teacher cache of --num_photos 224x224 JPEGs (~15 KB each, like
   TreeOfLife-10M) with D=512, K=10, 1000 made-up species, using tfds_treeoflife.make_dummy_data (numpy + PIL).
2. Build: `tfds_treeoflife.build.build` in this process (TF import excluded), examples/s.
   With --beam, also the Beam DirectRunner path.
3. Read: builder.as_dataset -> decode JPEG -> squash-resize to 224 bicubic -> batch 32 ->
   prefetch, over --read_epochs epochs after one warm-up batch; photos/s.
4. Train step: the student stage's model (bioclip_lite_tf.model.build_student with the
   full-scale config, MobileNetV3 Large 224, and the `small` switch, Small 224) when importable,
   else tf_keras MobileNetV3Small(weights=None, alpha=1.0) as a stand-in; a cosine-embedding
   train step at batch 32, photos/s. `input_over_train_step` is read photos/s over the fastest
   timed model's photos/s (goal: >= 3, so input never bounds training).
Writes JSON to --out; numbers are this machine's (2 shared CPU cores, no GPU).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

from bench import results_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_photos", 2000, "Photos in the benchmark cache.")
flags.DEFINE_integer("embed_dim", 512, "Teacher embedding width D of the benchmark cache.")
flags.DEFINE_integer("num_species", 1000, "Species in the benchmark cache's label bank.")
flags.DEFINE_integer("topk", 10, "Top-k species logits per photo in the benchmark cache.")
flags.DEFINE_integer("batch_size", 32, "Batch size for reading and for the train step.")
flags.DEFINE_integer("resolution", 224, "Squash-resize target (BioCLIP: 224).")
flags.DEFINE_integer("read_epochs", 2, "Passes over the train split when timing reads.")
flags.DEFINE_integer("train_steps", 5, "Timed train steps per model (after 2 warm-up steps).")
flags.DEFINE_bool("beam", False, "Also time the Beam DirectRunner build.")
flags.DEFINE_string("work_dir", "", "Scratch directory (default: a temp dir, removed after).")
flags.DEFINE_string("out", "bench/results/tfds.json", "Where to write the JSON results.")


def _bench_build(work: str) -> dict:
  from tfds_treeoflife.build import build
  from tfds_treeoflife.make_dummy_data import synthetic_taxa, write_cache
  cache = os.path.join(work, "cache")
  t = time.perf_counter()
  write_cache(cache, num_photos=FLAGS.num_photos, num_shards=4, parts_per_shard=2,
              embed_dim=FLAGS.embed_dim, topk=FLAGS.topk, png_every=0, photo_size=224,
              taxa=synthetic_taxa(FLAGS.num_species))
  logging.info("cache of %d photos written in %.1f s", FLAGS.num_photos, time.perf_counter() - t)
  cache_bytes = sum(os.path.getsize(os.path.join(r, f))
                    for r, _, fs in os.walk(os.path.join(cache, "rows")) for f in fs)
  out = {"num_photos": FLAGS.num_photos, "cache_bytes": cache_bytes,
         "num_species": FLAGS.num_species,
         "embed_dim": FLAGS.embed_dim, "topk": FLAGS.topk}
  t = time.perf_counter()
  builder = build(cache, os.path.join(work, "tfds"))
  secs = time.perf_counter() - t
  out["local"] = {"seconds": round(secs, 3), "examples_per_s": round(FLAGS.num_photos / secs, 1)}
  if FLAGS.beam:
    t = time.perf_counter()
    build(cache, os.path.join(work, "tfds_beam"), beam_runner="DirectRunner")
    secs = time.perf_counter() - t
    out["beam_direct_runner"] = {"seconds": round(secs, 3),
                                 "examples_per_s": round(FLAGS.num_photos / secs, 1)}
  return out, builder


def _bench_read(builder) -> dict:
  import tensorflow as tf
  r = FLAGS.resolution

  def squash(ex):
    # BioCLIP geometry: the whole photo to R x R, bicubic, no crop.
    # view 0 of the [V, D] teacher feature is the whole photo's embedding.
    return tf.image.resize(ex["image"], (r, r), method="bicubic"), ex["teacher_embedding"][0]

  ds = (builder.as_dataset(split="train", shuffle_files=True)
        .map(squash, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(FLAGS.batch_size).prefetch(tf.data.AUTOTUNE))
  next(iter(ds))  # warm-up: graph tracing, file opening
  n = 0
  t = time.perf_counter()
  for _ in range(FLAGS.read_epochs):
    for images, _ in ds:
      n += int(images.shape[0])
  secs = time.perf_counter() - t
  return {"photos": n, "seconds": round(secs, 3), "photos_per_s": round(n / secs, 1),
          "pipeline": f"tfds decode jpeg -> resize {r}x{r} bicubic (squash) -> batch "
                      f"{FLAGS.batch_size} -> prefetch(AUTOTUNE)"}


def _time_train_step(model, name: str, stand_in: bool) -> dict:
  import numpy as np
  import tensorflow as tf
  import tf_keras as keras
  b, r = FLAGS.batch_size, FLAGS.resolution
  x = tf.constant(np.random.default_rng(0).uniform(0, 255, (b, r, r, 3)).astype(np.float32))
  y = tf.math.l2_normalize(tf.random.normal((b, model.output_shape[-1])), -1)
  opt = keras.optimizers.Adam(1e-4)

  @tf.function
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(1.0 - tf.reduce_sum(tf.math.l2_normalize(model(x, training=True), -1)
                                                * y, -1))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))
    return loss

  for _ in range(2):
    step(x, y).numpy()
  t = time.perf_counter()
  for _ in range(FLAGS.train_steps):
    step(x, y).numpy()
  secs = (time.perf_counter() - t) / FLAGS.train_steps
  return {"model": name, "stand_in": stand_in, "params": int(model.count_params()),
          "batch_size": b, "resolution": r, "seconds_per_step": round(secs, 4),
          "photos_per_s": round(b / secs, 1)}


def _bench_train_steps() -> list:
  import tf_keras as keras
  results = []
  try:
    from bioclip_lite_tf.configs import default as default_config
    from bioclip_lite_tf.model import build_student
    for switch, label in (("", "bioclip_lite_tf student, full-scale config"),
                          ("small", "bioclip_lite_tf student, small config")):
      cfg = default_config.get_config(switch)
      model_cfg = dict(cfg.model)
      model_cfg["resolution"] = FLAGS.resolution
      model = build_student(model_cfg, FLAGS.embed_dim)
      results.append(_time_train_step(
          model, f"{label}: {model_cfg['name']} alpha {model_cfg['alpha']}", stand_in=False))
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("bioclip_lite_tf student not usable here (%s: %s); timing the stand-in",
                    type(e).__name__, e)
  if not results:
    base = keras.applications.MobileNetV3Small(
        input_shape=(FLAGS.resolution, FLAGS.resolution, 3), alpha=1.0, include_top=False,
        weights=None, pooling="avg")
    model = keras.Sequential([base, keras.layers.Dense(FLAGS.embed_dim)])
    results.append(_time_train_step(
        model, "stand-in: tf_keras MobileNetV3Small(weights=None, alpha=1.0) + Dense(D)",
        stand_in=True))
  return results


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  work = FLAGS.work_dir or tempfile.mkdtemp(prefix="tfds_bench_")
  try:
    build_result, builder = _bench_build(work)
    read_result = _bench_read(builder)
    steps = _bench_train_steps()
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work, ignore_errors=True)
  fastest = max(steps, key=lambda s: s["photos_per_s"])
  result = {
      "build": build_result,
      "read": read_result,
      "train_step": steps,
      "input_over_train_step": round(read_result["photos_per_s"] / fastest["photos_per_s"], 2),
      "input_over_train_step_model": fastest["model"],
      "goal": "input_over_train_step >= 3 (input never bounds training)",
      "machine": results_io.machine(),
  }
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  results_io.write_result(FLAGS.out, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
