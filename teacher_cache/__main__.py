r"""Caches BioCLIP teacher targets for every photo of a source.

  python -m teacher_cache --source=PATH --out_dir=DIR [--teacher=hf-hub:imageomics/bioclip]
      [--pretrained=...] [--batch_size=32] [--shard_index=0 --num_shards=1] [--topk=32]
      [--views=2] [--device=auto] [--autocast=bf16] [--decode_processes=...]

--source: TreeOfLife-10M tar shards (a directory, a .tar, or a glob like
'/data/shard-{000000..000159}.tar'), an iNat21-style class-folder tree, or a CSV catalog.
Run the same command again after a crash or kill to resume. Exit code 2: bad usage or input
(wrong path, unknown teacher, unreachable hub, resume onto a different source or teacher).
See teacher_cache/README.md for the output format.
"""
from __future__ import annotations

import errno
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("source", None, "Photos to cache: a directory/glob of TreeOfLife-10M .tar "
                    "shards, an iNat21 class-folder tree, or a CSV catalog (path + kingdom..species).")
flags.DEFINE_enum("source_kind", "auto", ["auto", "wds", "inat", "csv"],
                  "Kind of --source; 'auto' detects it from the path.")
flags.DEFINE_string("out_dir", None, "Cache directory (created; an existing one is resumed).")
flags.DEFINE_string("teacher", "hf-hub:imageomics/bioclip",
                    "Teacher: hf-hub:ORG/NAME, local-dir:PATH, alias 'bioclip', or an open_clip "
                    "architecture such as ViT-B-16 together with --pretrained.")
flags.DEFINE_string("pretrained", "", "For an open_clip architecture: a local checkpoint file, an "
                    "open_clip tag, or 'none' for seeded random weights (tests/offline demo only).")
flags.DEFINE_integer("init_seed", 0, "torch seed for --pretrained=none, so all workers and "
                     "resumed runs build the same random teacher.")
flags.DEFINE_integer("batch_size", 32, "Photos per teacher forward pass.")
flags.DEFINE_integer("shard_index", 0, "This worker's shard, 0 <= shard_index < num_shards.")
flags.DEFINE_integer("num_shards", 1, "Number of independent workers splitting the source.")
flags.DEFINE_integer("topk", 32, "Species logits kept per photo and view (clipped to the number of "
                     "species). 32 x (int32 + float32) = 256 bytes a view, ~1-2% of a photo's "
                     "JPEG bytes; bench/teacher_cache_bench.py records the bytes per row.")
flags.DEFINE_integer("views", 2, "Teacher views per photo (V >= 1): view 0 is the whole photo, "
                     "views 1.. random-resized crops + flips seeded per key (docs/FORMATS.md).")
flags.DEFINE_integer("view_seed", 0, "Seed of the views (with the sample key).")
flags.DEFINE_list("view_scale", ["0.35", "1.0"], "min,max area fraction of a crop view.")
flags.DEFINE_list("view_ratio", ["0.75", "1.3333333333333333"], "min,max aspect ratio w/h of a crop view.")
flags.DEFINE_boolean("view_flip", True, "Mirror crop views left-right with probability 1/2.")
flags.DEFINE_string("device", "auto", "Teacher device: auto (cuda when available), cpu, cuda, cuda:N.")
flags.DEFINE_enum("autocast", "bf16", ["bf16", "fp16", "off"], "Forward-pass autocast dtype on "
                  "CUDA (ignored on CPU, which stays float32).")
flags.DEFINE_integer("decode_processes", -1, "Decode photos in this many DataLoader worker "
                     "processes (pinned memory); 0 = --decode_workers threads; -1 = auto: "
                     "threads on CPU, min(8, cores) processes on CUDA.")
flags.DEFINE_integer("rows_per_part", 1024, "Rows per committed part file (the resume granularity); "
                     "rounded up to whole batches.")
flags.DEFINE_integer("decode_workers", 2, "Background threads decoding and resizing photos.")
flags.DEFINE_integer("max_image_pixels", 89_478_485, "Photos with more pixels than this are "
                     "skipped before decoding (decompression-bomb guard; PIL's default limit).")
flags.DEFINE_integer("species_chunk", 65536, "Species per block when computing top-k logits.")
flags.DEFINE_integer("text_batch_size", 256, "Captions per forward pass when building the label bank.")
flags.DEFINE_integer("torch_threads", 0, "torch intra-op threads for the teacher; 0 keeps torch's "
                     "default (one per core). Use 1 when the cores are shared with other jobs: "
                     "oversubscribed OpenMP threads spin and slow the forward pass many times over.")
flags.DEFINE_float("log_every_seconds", 30.0, "Seconds between progress log lines.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Torch-free checks first, so a wrong path or a foreign cache fails in about a second.
    from teacher_cache.manifest import ResumeMismatch, check_source_early
    from teacher_cache.sources import SourceError, open_source
    from formats.taxonomy import TaxonomyError
    from formats.teacher_cache import views_config

    try:
        if not FLAGS.out_dir:
            raise SourceError("--out_dir is required")
        try:
            views = views_config(FLAGS.views, FLAGS.view_seed, FLAGS.view_scale, FLAGS.view_ratio,
                                 FLAGS.view_flip)
        except ValueError as e:
            raise SourceError(f"--views/--view_*: {e}") from None
        source = open_source(FLAGS.source, FLAGS.source_kind)
        check_source_early(FLAGS.out_dir, source.describe(), FLAGS.num_shards, FLAGS.topk, views)
    except (SourceError, ResumeMismatch, TaxonomyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from teacher_cache.cache_writer import BadConfig, CacheConfig, run_shard
    from formats.errors import FormatError
    from teacher_cache.teachers import TeacherError, load_teacher
    if FLAGS.torch_threads > 0:
        import torch
        torch.set_num_threads(FLAGS.torch_threads)
    try:
        import os
        import torch
        device = FLAGS.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BadConfig(f"--device={device}: CUDA is not available here")
        decode_processes = FLAGS.decode_processes
        if decode_processes < 0:
            decode_processes = min(8, os.cpu_count() or 1) if device.startswith("cuda") else 0
        teacher = load_teacher(FLAGS.teacher, FLAGS.pretrained, FLAGS.init_seed)
        teacher.set_device(device, FLAGS.autocast)
        cfg = CacheConfig(
            out_dir=FLAGS.out_dir, shard_index=FLAGS.shard_index, num_shards=FLAGS.num_shards,
            batch_size=FLAGS.batch_size, topk=FLAGS.topk, rows_per_part=FLAGS.rows_per_part,
            decode_workers=FLAGS.decode_workers, decode_processes=decode_processes,
            views=views, max_image_pixels=FLAGS.max_image_pixels,
            species_chunk=FLAGS.species_chunk, text_batch_size=FLAGS.text_batch_size,
            log_every_seconds=FLAGS.log_every_seconds)
        done = run_shard(cfg, source, teacher)
    except (SourceError, TeacherError, ResumeMismatch, TaxonomyError, FormatError, BadConfig) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        # Parts are committed by atomic rename, so what is on disk is whole; say how to go on.
        print(f"error: cannot write the cache in {FLAGS.out_dir}: {e.strerror} "
              f"({errno.errorcode.get(e.errno, e.errno)}). Committed parts are kept and no shard "
              f"is marked done; free space and run the same command again to resume.",
              file=sys.stderr)
        return 1
    logging.info("done: %s", done)
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
