"""Runs one worker shard of the teacher cache: decode, encode, top-k, commit parts, resume.

Resume contract. A worker's samples form a fixed sequence (ordinals 0, 1, ...). Rows are
committed in parts; each part covers a contiguous ordinal span, holds the rows *and* the skip
records of that span, and becomes visible only by an atomic rename. A restarted worker reads
the committed spans, continues at the first uncommitted ordinal and rebuilds the same batches
(batches restart at part boundaries), so the final rows equal an uninterrupted run's: none
missing, none twice. The shard's done file is written last.

Views (format 2): each photo is decoded once and its V views (formats.teacher_cache
.sample_views, seeded by key) are cropped, flipped and resized from the decoded pixels; the
teacher embeds all B x V of a batch in one forward pass.

Decoding runs in a thread pool (the CPU default, as before) or, with decode_processes > 0 (the
CUDA default), in torch DataLoader worker processes with pinned memory, so the GPU never waits
on JPEG decoding. Both give the same rows in the same order (tested).
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import glob
import os
import time
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from absl import logging

from formats import atomic
from formats import teacher_cache as cache_format
from formats.ranks import NUM_RANKS
from formats.taxonomy import TEXT_TEMPLATE, TEXT_TEMPLATE_NO_COMMON, Taxonomy
from formats.teacher_cache import FORMAT_VERSION, PART_RE, shard_name
from teacher_cache.label_bank import LABEL_BANK_DIR, build_label_bank, load_label_bank
from teacher_cache.manifest import ResumeMismatch, check_format, check_same
from teacher_cache.sources import RawSample, Source, printable
from teacher_cache.teachers import DEFAULT_MAX_IMAGE_PIXELS, SkipSample, Teacher, decode_views
from teacher_cache.topk import streaming_topk_logsumexp

# Keep the species matrix in RAM up to this size; beyond it, stream it from the memmap.
_SPECIES_IN_RAM_BYTES = 2 << 30


class BadConfig(ValueError):
    """A flag value is out of range. Exit code 2."""


@dataclasses.dataclass
class CacheConfig:
    out_dir: str
    shard_index: int = 0
    num_shards: int = 1
    batch_size: int = 32
    topk: int = 32
    rows_per_part: int = 1024
    decode_workers: int = 2
    # 0: decode in decode_workers threads; N > 0: in N DataLoader worker processes.
    decode_processes: int = 0
    # The manifest's views object (formats.teacher_cache.views_config); None: V=1.
    views: Optional[Dict] = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    species_chunk: int = 65536
    text_batch_size: int = 256
    log_every_seconds: float = 30.0


@contextlib.contextmanager
def _locked(out_dir: str):
    """Exclusive lock among the workers writing into one cache directory (same host/NFS)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest(cfg: CacheConfig, source_desc: Dict, teacher: Teacher, taxonomy: Taxonomy,
              taxonomy_sha: Optional[str]) -> Dict:
    """The manifest a cache of this source, teacher and taxonomy starts with."""
    return {
        "format_version": FORMAT_VERSION,
        "teacher": teacher.describe(),
        "preprocessing": teacher.preprocessing.to_json(),
        "text_template": TEXT_TEMPLATE,
        "text_template_no_common": TEXT_TEMPLATE_NO_COMMON,
        # topk is the width of the stored top-k arrays; fewer species than asked clip it.
        "topk": min(cfg.topk, taxonomy.num_species),
        "topk_requested": cfg.topk,
        "views": cfg.views or cache_format.views_config(1),
        "source": source_desc,
        "label_bank": {"dir": LABEL_BANK_DIR, "ranks": {t.rank: len(t) for t in taxonomy.tables},
                       "taxonomy_sha256": taxonomy_sha},
        "counts": {"written": 0, "skipped": 0},
        "shards": {"num_shards": cfg.num_shards, "complete": []},
    }


def _check_bank_teacher(bank, taxonomy_sha: Optional[str], teacher: Teacher, bank_dir: str) -> None:
    if (bank.meta.get("taxonomy_sha256") != taxonomy_sha
            or bank.meta["teacher"].get("checkpoint_sha256") != teacher.checkpoint_sha256):
        raise ResumeMismatch(f"{bank_dir} was built from another taxonomy or teacher; "
                             "use a new --out_dir")


def prepare_cache(cfg: CacheConfig, source: Source, teacher: Teacher) -> Tuple[Dict, Taxonomy]:
    """Validates or creates manifest.json and label_bank/ (once, under the directory lock).

    The first worker builds the taxonomy from the catalog and the label bank under the lock.
    A later worker holds the lock only to read manifest.json: label_bank/ is written atomically
    before the manifest and never changes after, so the bank (930 MB of embeddings at 454k x 512)
    is read outside the lock and later workers do not queue behind each other's reads.
    Returns (manifest, taxonomy). Raises ResumeMismatch for a foreign cache.
    """
    source_desc = source.describe()
    manifest_path = os.path.join(cfg.out_dir, "manifest.json")
    bank_dir = os.path.join(cfg.out_dir, LABEL_BANK_DIR)
    t_start = time.monotonic()
    with _locked(cfg.out_dir):
        t_locked = time.monotonic()
        old = atomic.read_json(manifest_path) if os.path.isfile(manifest_path) else None
        if old is not None:
            check_format(old, cfg.out_dir)
        later = old is not None and os.path.isdir(bank_dir)
        if not later:
            taxonomy = source.taxonomy()
            taxonomy_sha = taxonomy.fingerprint()
            manifest = _manifest(cfg, source_desc, teacher, taxonomy, taxonomy_sha)
            if old is not None:
                check_same(old, manifest, cfg.out_dir)
                manifest = old
            if os.path.isdir(bank_dir):
                _check_bank_teacher(load_label_bank(bank_dir), taxonomy_sha, teacher, bank_dir)
            else:
                logging.info("building the label bank: %s taxa",
                             {t.rank: len(t) for t in taxonomy.tables})
                build_label_bank(cfg.out_dir, taxonomy, teacher, cfg.text_batch_size)
            if not os.path.isfile(manifest_path):
                cache_format.write_manifest(cfg.out_dir, manifest)
    if later:
        # The first worker built the taxonomy from the whole catalog and persisted it as the
        # label bank's tables; the manifest check below proves the source is the same (its
        # fingerprint), so the catalog is never parsed again.
        bank = load_label_bank(bank_dir)
        taxonomy = Taxonomy.from_tables(bank.tables)
        taxonomy_sha = bank.meta.get("taxonomy_sha256")
        check_same(old, _manifest(cfg, source_desc, teacher, taxonomy, taxonomy_sha), cfg.out_dir)
        _check_bank_teacher(bank, taxonomy_sha, teacher, bank_dir)
        manifest = old
    # bench/scale_sim.py reads this line (worker_prepare_seconds).
    logging.info("cache prepared in %.2f s (%.2f s waiting for the lock; %s worker)",
                 time.monotonic() - t_start, t_locked - t_start, "a later" if later else "the first")
    return manifest, taxonomy


def _committed_parts(shard_dir: str) -> Tuple[int, int]:
    """(next part number, first uncommitted ordinal) from the parts on disk."""
    parts = sorted(n for n in os.listdir(shard_dir) if PART_RE.match(n))
    end = 0
    for expect, name in enumerate(parts):
        if int(PART_RE.match(name).group(1)) != expect:
            raise ResumeMismatch(f"{shard_dir}: parts are not numbered 0..{len(parts) - 1} ({name})")
        start, stop = cache_format.read_part_span(os.path.join(shard_dir, name))
        if start != end:
            raise ResumeMismatch(f"{shard_dir}/{name}: span starts at {start}, expected {end}")
        end = stop
    return len(parts), end


Decoded = Tuple[np.ndarray, np.ndarray, np.ndarray]  # decode_views: pixels [V,S,S,3], boxes, flips


def _decode_one(raw: RawSample, size: int, max_pixels: int, views: Dict
                ) -> Tuple[Optional[Decoded], Optional[str]]:
    if raw.error:
        return None, raw.error
    try:
        return decode_views(raw.image_bytes, size, raw.key, views, max_pixels), None
    except SkipSample as e:
        return None, str(e)


def _decoded(samples: Iterator[Tuple[int, RawSample]], pool, size: int, max_pixels: int,
             window: int, views: Dict
             ) -> Iterator[Tuple[int, RawSample, Optional[Decoded], Optional[str]]]:
    """Yields (ordinal, sample, decode_views(...) or None, skip reason or None) in input order,
    keeping up to `window` photos decoding in the thread pool ahead of the consumer."""
    pending = collections.deque()

    def resolve(item):
        ordinal, raw, fut = item
        if fut is None:
            return ordinal, raw, None, raw.error
        return (ordinal, raw) + fut.result()

    for ordinal, raw in samples:
        fut = None if raw.error else pool.submit(_decode_one, raw, size, max_pixels, views)
        pending.append((ordinal, raw, fut))
        if len(pending) >= window:
            yield resolve(pending.popleft())
    while pending:
        yield resolve(pending.popleft())


class _Part:
    """Rows and skip records of one ordinal span, until committed."""

    def __init__(self, start: int):
        self.start = start
        self.end = start
        self.keys: List[str] = []
        self.images: List[bytes] = []
        self.taxon_index: List[Tuple[int, ...]] = []
        self.common: List[str] = []
        self.embedding: List[np.ndarray] = []
        self.topk_i: List[np.ndarray] = []
        self.topk_v: List[np.ndarray] = []
        self.lse: List[np.ndarray] = []
        self.boxes: List[np.ndarray] = []
        self.flips: List[np.ndarray] = []
        self.skips: List[Tuple[str, str, str]] = []

    def __len__(self):
        return len(self.keys)

    def save(self, path: str, embed_dim: int, k: int, v: int) -> None:
        def cat(parts, shape, dtype):
            return (np.concatenate(parts) if parts else np.zeros((0,) + shape, dtype)).astype(dtype)

        lens = np.array([len(b) for b in self.images], dtype=np.int64)
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        arrays = {
            "key": np.array(self.keys, dtype=np.str_),
            "image_bytes": np.frombuffer(b"".join(self.images), dtype=np.uint8),
            "image_offsets": offsets,
            "taxon_index": np.array(self.taxon_index, dtype=np.int32).reshape(-1, NUM_RANKS),
            "common_name": np.array(self.common, dtype=np.str_),
            "teacher_embedding": cat(self.embedding, (v, embed_dim), np.float32),
            "topk_species_indices": cat(self.topk_i, (v, k), np.int32),
            "topk_species_logits": cat(self.topk_v, (v, k), np.float32),
            "teacher_logsumexp": cat(self.lse, (v,), np.float32),
            "view_boxes": cat(self.boxes, (v, 4), np.int32),
            "view_flips": cat(self.flips, (v,), np.uint8),
            "span": np.array([self.start, self.end], dtype=np.int64),
            "skipped_key": np.array([s[0] for s in self.skips], dtype=np.str_),
            "skipped_reason": np.array([s[1] for s in self.skips], dtype=np.str_),
            "skipped_where": np.array([s[2] for s in self.skips], dtype=np.str_),
        }
        cache_format.write_part(path, arrays)


def _finalize_manifest(out_dir: str) -> Dict:
    """Sums the done files into manifest.json (under the lock, so workers don't race)."""
    with _locked(out_dir):
        manifest = atomic.read_json(os.path.join(out_dir, cache_format.MANIFEST))
        written = skipped = 0
        complete = []
        for p in sorted(glob.glob(os.path.join(out_dir, cache_format.ROWS_DIR, "shard-*.done.json"))):
            d = atomic.read_json(p)
            written += d["written"]
            skipped += d["skipped"]
            complete.append(d["shard_index"])
        manifest["counts"] = {"written": written, "skipped": skipped}
        manifest["shards"]["complete"] = complete
        cache_format.write_manifest(out_dir, manifest)
    return manifest


def _check_config(cfg: CacheConfig) -> None:
    if not 0 <= cfg.shard_index < cfg.num_shards:
        raise BadConfig(f"--shard_index={cfg.shard_index} must be in [0, --num_shards={cfg.num_shards})")
    if cfg.batch_size < 1 or cfg.topk < 1 or cfg.rows_per_part < 1:
        raise BadConfig("--batch_size, --topk and --rows_per_part must be >= 1")


def _species_matrix(cfg: CacheConfig, device: str = "cpu"):
    """The species text embeddings: a torch tensor in RAM (on the teacher's device), or the
    memmap when it is huge (streamed to the device chunk by chunk)."""
    species = load_label_bank(os.path.join(cfg.out_dir, LABEL_BANK_DIR)).species_embeddings
    if species.nbytes <= _SPECIES_IN_RAM_BYTES:
        species = torch.from_numpy(np.array(species, dtype=np.float32)).to(device)
    return species


@dataclasses.dataclass
class _RunCounts:
    """What this run (not the whole shard) did, for the log and the done file."""
    seen: int = 0
    written: int = 0
    skipped: int = 0
    forward_s: float = 0.0


class _ShardRun:
    """Batches the decoded photos of one shard through the teacher and commits parts."""

    def __init__(self, cfg: CacheConfig, name: str, shard_dir: str, next_part: int, start: int,
                 teacher: Teacher, species, k: int):
        self.cfg, self.name, self.shard_dir = cfg, name, shard_dir
        self.next_part = next_part
        self.teacher, self.species, self.k = teacher, species, k
        self.part = _Part(start)
        self.batch: List[Tuple[int, RawSample, Decoded, Tuple[int, ...]]] = []
        self.counts = _RunCounts()
        self.num_views = int((cfg.views or {"count": 1})["count"])

    def flush_batch(self) -> None:
        if not self.batch:
            return
        b, v = len(self.batch), self.num_views
        pixels = torch.from_numpy(np.stack([x[2][0] for x in self.batch]))    # [B, V, S, S, 3]
        pixels = pixels.reshape((b * v,) + tuple(pixels.shape[2:]))
        if self.teacher.device.startswith("cuda"):
            pixels = pixels.pin_memory()
        t = time.monotonic()
        emb = self.teacher.encode_pixels(pixels)
        values, indices, lse = streaming_topk_logsumexp(emb, self.species, self.teacher.logit_scale,
                                                        self.k, self.cfg.species_chunk)
        emb = emb.cpu()
        self.counts.forward_s += time.monotonic() - t
        part = self.part
        for ordinal, raw, _, tax in self.batch:
            part.keys.append(raw.key)
            part.images.append(raw.image_bytes)
            part.taxon_index.append(tax)
            part.common.append(raw.common_name)
        part.embedding.append(emb.numpy().reshape(b, v, -1))
        part.topk_i.append(indices.numpy().reshape(b, v, -1))
        part.topk_v.append(values.numpy().reshape(b, v, -1))
        part.lse.append(lse.numpy().reshape(b, v))
        part.boxes.append(np.stack([x[2][1] for x in self.batch]))
        part.flips.append(np.stack([x[2][2] for x in self.batch]))
        part.end = self.batch[-1][0] + 1
        self.counts.written += len(self.batch)
        self.batch.clear()

    def commit(self) -> None:
        path = os.path.join(self.shard_dir, cache_format.part_name(self.next_part))
        self.part.save(path, self.teacher.embed_dim, self.k, self.num_views)
        self.next_part += 1
        self.part = _Part(self.part.end)

    def add(self, ordinal: int, raw: RawSample, decoded: Optional[Decoded], reason: Optional[str],
            taxonomy) -> None:
        self.counts.seen += 1
        if reason is None and not taxonomy.contains(raw.lineage):
            reason = "taxon not in the label bank"
        if reason is not None:
            self.counts.skipped += 1
            self.part.skips.append((printable(raw.key), reason, raw.where))
            logging.warning("%s: skipped sample %s (%s): %s", self.name, printable(raw.key),
                            raw.where, reason)
            return
        self.batch.append((ordinal, raw, decoded, taxonomy.index_of(raw.lineage)))
        if len(self.batch) == self.cfg.batch_size:
            self.flush_batch()
            if len(self.part) >= self.cfg.rows_per_part:
                self.commit()

    def finish(self, last_ordinal: Optional[int]) -> None:
        self.flush_batch()
        if last_ordinal is not None:
            self.part.end = max(self.part.end, last_ordinal + 1)
        if len(self.part) or self.part.skips:
            self.commit()

    def log_progress(self, elapsed: float) -> None:
        c = self.counts
        logging.info("%s: %d samples this run, %d written, %d skipped, %.2f photos/s "
                     "(teacher forward alone %.2f photos/s)", self.name, c.seen, c.written,
                     c.skipped, c.written / elapsed, c.written / max(c.forward_s, 1e-9))


def _shard_totals(shard_dir: str) -> Tuple[int, List[Dict[str, str]]]:
    """(rows written, skip records) over the whole shard (all runs), from the committed parts."""
    total_written = 0
    skip_records = []
    for p in sorted(n for n in os.listdir(shard_dir) if PART_RE.match(n)):
        z = cache_format.read_part(os.path.join(shard_dir, p))
        total_written += len(z["key"])
        skip_records.extend({"key": a, "reason": b, "where": c} for a, b, c in
                            zip(z["skipped_key"].tolist(), z["skipped_reason"].tolist(),
                                z["skipped_where"].tolist()))
    return total_written, skip_records


class _DecodeStream(torch.utils.data.IterableDataset):
    """The shard's samples from `start` on, decoded in DataLoader worker processes.

    Worker w of W takes the samples whose (ordinal - start) % W == w and yields one item per
    sample (skips included); the DataLoader takes items from its workers round-robin, so the
    merged stream is in ordinal order, exactly the thread pool's order. Each worker reads the
    raw stream itself and decodes only its own samples (reading bytes is cheap next to
    decoding; the OS page cache serves the other workers' reads of the same file).
    """

    def __init__(self, source: Source, cfg: CacheConfig, start: int, size: int):
        super().__init__()
        self.source, self.cfg, self.start, self.size = source, cfg, start, size

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        w, num = (info.id, info.num_workers) if info else (0, 1)
        cfg = self.cfg
        views = cfg.views or cache_format.views_config(1)
        for ordinal, raw in enumerate(self.source.iter_shard(cfg.shard_index, cfg.num_shards)):
            if ordinal < self.start or (ordinal - self.start) % num != w:
                continue
            decoded, reason = _decode_one(raw, self.size, cfg.max_image_pixels, views)
            if decoded is not None:  # tensors, so the loader's pin_memory pins them
                decoded = tuple(torch.from_numpy(a) for a in decoded)
            yield ordinal, raw, decoded, reason


def _decoded_in_processes(source: Source, cfg: CacheConfig, start: int, size: int, pin: bool
                          ) -> Iterator[Tuple[int, RawSample, Optional[Decoded], Optional[str]]]:
    loader = torch.utils.data.DataLoader(
        _DecodeStream(source, cfg, start, size), batch_size=None,
        num_workers=cfg.decode_processes, pin_memory=pin,
        prefetch_factor=max(2, 2 * cfg.batch_size // cfg.decode_processes),
        collate_fn=lambda item: item)
    for ordinal, raw, decoded, reason in loader:
        if decoded is not None:
            decoded = (decoded[0].numpy(), decoded[1].numpy(), decoded[2].numpy())
        yield int(ordinal), raw, decoded, reason


def run_shard(cfg: CacheConfig, source: Source, teacher: Teacher) -> Dict[str, object]:
    """Caches one worker shard (resuming if parts exist). Returns its done-file dict.

    done["this_run"]["startup_seconds"]: from this call to the first sample reaching the
    teacher's batcher (manifest, taxonomy, label bank, species matrix, first decode).
    """
    t_start = time.monotonic()
    _check_config(cfg)
    manifest, taxonomy = prepare_cache(cfg, source, teacher)
    name = shard_name(cfg.shard_index, cfg.num_shards)
    shard_dir = os.path.join(cfg.out_dir, cache_format.ROWS_DIR, name)
    done_path = cache_format.done_path(cfg.out_dir, name)
    if os.path.isfile(done_path):
        logging.info("%s is already complete (%s); nothing to do", name, done_path)
        _finalize_manifest(cfg.out_dir)
        return atomic.read_json(done_path)
    os.makedirs(shard_dir, exist_ok=True)
    litter = atomic.remove_tmp_litter(shard_dir)
    next_part, start = _committed_parts(shard_dir)
    if next_part:
        logging.info("%s: resuming after %d committed parts at sample %d (%d temp files removed)",
                     name, next_part, start, litter)
    run = _ShardRun(cfg, name, shard_dir, next_part, start, teacher,
                    _species_matrix(cfg, teacher.device), min(cfg.topk, taxonomy.num_species))
    samples = ((o, s) for o, s in enumerate(source.iter_shard(cfg.shard_index, cfg.num_shards))
               if o >= start)
    t0 = last_log = time.monotonic()
    startup = None
    last_ordinal = None
    window = 2 * cfg.batch_size + cfg.decode_workers
    views = cfg.views or cache_format.views_config(1)
    with contextlib.ExitStack() as stack:
        if cfg.decode_processes > 0:
            stream = _decoded_in_processes(source, cfg, start, teacher.preprocessing.size,
                                           pin=teacher.device.startswith("cuda"))
        else:
            pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(
                cfg.decode_workers, thread_name_prefix="decode"))
            stream = _decoded(samples, pool, teacher.preprocessing.size, cfg.max_image_pixels,
                              window, views)
        for ordinal, raw, decoded, reason in stream:
            if startup is None:
                startup = time.monotonic() - t_start
            run.add(ordinal, raw, decoded, reason, taxonomy)
            now = time.monotonic()
            if now - last_log >= cfg.log_every_seconds:
                last_log = now
                run.log_progress(now - t0)
            last_ordinal = ordinal
        run.finish(last_ordinal)

    elapsed = time.monotonic() - t0
    total_written, skip_records = _shard_totals(shard_dir)
    cache_format.write_skipped(cfg.out_dir, name, skip_records)
    c = run.counts
    done = {"shard_index": cfg.shard_index, "num_shards": cfg.num_shards, "parts": run.next_part,
            "written": total_written, "skipped": len(skip_records),
            "this_run": {"samples": c.seen, "written": c.written, "skipped": c.skipped,
                         "seconds": round(elapsed, 3),
                         "startup_seconds": (round(startup, 4) if startup is not None
                                             else None),
                         "photos_per_second": round(c.written / elapsed, 3) if elapsed else None,
                         "forward_photos_per_second": (round(c.written / c.forward_s, 3)
                                                       if c.forward_s else None)}}
    cache_format.write_shard_done(cfg.out_dir, name, done)
    manifest = _finalize_manifest(cfg.out_dir)
    logging.info("%s complete: %d written, %d skipped (cache total: %s) in %.1fs, %.2f photos/s",
                 name, total_written, len(skip_records), manifest["counts"], elapsed,
                 c.written / elapsed if elapsed else 0.0)
    return done
