r"""Benchmark: teacher_cache stage throughput vs. the teacher's forward pass alone.

  .venv/bin/python bench/teacher_cache_bench.py [--num_photos=48] [--batch_size=16]
      [--teacher=ViT-B-16 --pretrained=none] [--torch_threads=0] [--out=bench/results/teacher_cache.json]

Both numbers use the same photos, batches, teacher and thread settings:
  stage         photos/s of run_shard's row loop: read tars, decode+squash in background
                threads, forward, streaming top-k, atomic part writes (label bank prebuilt).
  forward_only  photos/s of teacher.encode_pixels on the same uint8 batches, decoded beforehand.
The forward-only pass is timed before and after the stage and averaged, because the cores of
the machine may be shared with other jobs; load averages are recorded in the JSON.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_photos", 48, "Photos in the generated tar dataset.")
flags.DEFINE_integer("batch_size", 16, "Photos per forward pass (stage and forward-only).")
flags.DEFINE_string("teacher", "ViT-B-16", "Teacher id, as for python -m teacher_cache.")
flags.DEFINE_string("pretrained", "none", "Teacher weights, as for python -m teacher_cache.")
flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads (0 = torch default).")
flags.DEFINE_integer("decode_workers", 2, "Decode threads of the stage.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                        "teacher_cache.json"), "Where to write the JSON result.")


def main(argv):
    del argv
    import numpy as np
    import torch

    from teacher_cache import atomic, demo_data
    from teacher_cache.cache_writer import CacheConfig, prepare_cache, run_shard
    from teacher_cache.sources import open_source
    from teacher_cache.teachers import decode_and_resize, load_teacher

    if FLAGS.torch_threads > 0:
        torch.set_num_threads(FLAGS.torch_threads)
    work = tempfile.mkdtemp(prefix="tc_bench_")
    try:
        data = os.path.join(work, "data")
        demo_data.write_demo(data, "wds", num_photos=FLAGS.num_photos, num_shards=2, seed=0)
        teacher = load_teacher(FLAGS.teacher, FLAGS.pretrained)
        source = open_source(data)
        size = teacher.preprocessing.size
        photos = [s.image_bytes for s in source.iter_shard(0, 1)]
        pixels = [torch.from_numpy(np.stack([decode_and_resize(b, size) for b in photos[i:i + FLAGS.batch_size]]))
                  for i in range(0, len(photos), FLAGS.batch_size)]
        teacher.encode_pixels(pixels[0][:2])  # warm-up (allocator, kernels)

        def forward_only():
            t = time.perf_counter()
            for batch in pixels:
                teacher.encode_pixels(batch)
            return len(photos) / (time.perf_counter() - t)

        load_before = os.getloadavg()
        fwd_a = forward_only()
        cfg = CacheConfig(out_dir=os.path.join(work, "cache"), batch_size=FLAGS.batch_size,
                          rows_per_part=64, decode_workers=FLAGS.decode_workers,
                          log_every_seconds=1e9)
        prepare_cache(cfg, source, teacher)  # the label bank is a one-off, not per photo
        t = time.perf_counter()
        done = run_shard(cfg, source, teacher)
        stage_wall = len(photos) / (time.perf_counter() - t)
        fwd_b = forward_only()
        load_after = os.getloadavg()
        forward = (fwd_a + fwd_b) / 2
        stage = done["this_run"]["photos_per_second"]
        result = {
            "teacher": FLAGS.teacher, "pretrained": FLAGS.pretrained,
            "embed_dim": teacher.embed_dim, "input_size": size,
            "num_photos": len(photos), "batch_size": FLAGS.batch_size,
            "decode_workers": FLAGS.decode_workers, "torch_threads": torch.get_num_threads(),
            "photos_per_second": {
                "stage": round(stage, 4),
                "stage_including_setup": round(stage_wall, 4),
                "forward_only": round(forward, 4),
                "forward_only_runs": [round(fwd_a, 4), round(fwd_b, 4)],
            },
            "stage_over_forward": round(stage / forward, 4),
            "goal_stage_over_forward": 0.9,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "torch": torch.__version__, "loadavg_before": load_before,
                        "loadavg_after": load_after},
        }
        atomic.write_json(FLAGS.out, result)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    app.run(main)
