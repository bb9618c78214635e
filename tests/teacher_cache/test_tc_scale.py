"""teacher_cache at scale, in process: later workers start fast (persisted taxonomy, one
fingerprint), the catalog is streamed, decoding in worker processes gives the same rows as the
thread pool, and format 1 caches are refused with what to do."""
import csv
import glob
import io
import itertools
import os
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from formats import teacher_cache as cache_format
from formats.ranks import RANKS
from teacher_cache import cache_writer, sources
from teacher_cache.manifest import ResumeMismatch

from tc_helpers import TINY, cli, read_rows


def _catalog(folder, num_rows, num_species=40):
    """A CSV catalog of num_rows rows over num_species made-up species, all pointing at four
    small JPEGs (the rows, not the photos, are what later workers must not re-read)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for j in range(4):
        Image.fromarray(rng.integers(0, 256, (48 + 8 * j, 40, 3), dtype=np.uint8)).save(
            os.path.join(folder, f"p{j}.jpg"), quality=90)
    path = os.path.join(folder, "catalog.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "path"] + list(RANKS) + ["common_name"])
        for i in range(num_rows):
            s = i % num_species
            w.writerow([f"row{i:07d}", f"p{i % 4}.jpg", f"Kingdom{s % 2}", f"Phylum{s % 3}",
                        f"Class{s % 5}", f"Order{s % 7}", f"Family{s % 11}", f"Genus{s}",
                        f"epithet{s}", f"common {s}" if s % 3 else ""])
    return path


def _first_samples(source, n):
    """Limits the source to its first n samples per shard (only startup is measured here)."""
    full = source.iter_shard
    source.iter_shard = lambda i, k: itertools.islice(full(i, k), n)
    return source


def test_later_workers_start_much_faster_than_the_first(tmp_path, tiny_teacher):
    catalog = _catalog(str(tmp_path / "src"), 200_000)
    out = str(tmp_path / "cache")
    cfg = lambda i: cache_writer.CacheConfig(out_dir=out, shard_index=i, num_shards=4,
                                             batch_size=2, topk=5, rows_per_part=4,
                                             views=cache_format.views_config(2))
    calls = []
    first = _first_samples(sources.open_source(catalog), 4)
    real_fp = first.fingerprint
    first.fingerprint = lambda: calls.append(1) or real_fp()
    done0 = cache_writer.run_shard(cfg(0), first, tiny_teacher)
    assert len(calls) == 1, "the source fingerprint was computed more than once"
    later = [cache_writer.run_shard(cfg(i), _first_samples(sources.open_source(catalog), 4),
                                    tiny_teacher) for i in (1, 2, 3)]
    t_first = done0["this_run"]["startup_seconds"]
    t_later = max(d["this_run"]["startup_seconds"] for d in later)
    # The first worker parses the 200k-row catalog and builds the label bank; the others only
    # hash the catalog file and read the persisted taxonomy (the label bank's TSVs). Timings are
    # noisy on shared cores, so the bound is a ratio measured in this run.
    print("startup seconds: first", t_first, "later max", t_later)
    assert t_later < 0.25 * t_first, (t_first, t_later)
    rows = read_rows(out)
    assert len(rows["key"]) == 16 and rows["teacher_embedding"].shape[1:] == (2, tiny_teacher.embed_dim)
    # The later workers' taxonomy is the first one's: true labels point at the same names.
    m = cache_format.read_manifest(out)
    assert m["label_bank"]["ranks"]["species"] == 40


def test_the_catalog_is_streamed_not_held(tmp_path):
    catalog = _catalog(str(tmp_path / "src"), 100_000)
    src = sources.open_source(catalog)
    tracemalloc.start()
    taxonomy = src.taxonomy()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert taxonomy.num_species == 40
    # 100k parsed rows held in a list cost well over 50 MB of Python objects; streaming keeps
    # only the distinct species (and one csv row at a time).
    assert peak < 8 << 20, peak


def test_inat_fingerprint_lists_names_without_stat(tmp_path, monkeypatch):
    root = tmp_path / "inat"
    d = root / "00000_Animalia_Chordata_Aves_Passeriformes_Turdidae_Turdus_merula"
    d.mkdir(parents=True)
    for i in range(3):
        (d / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    src = sources.open_source(str(root))
    calls = []
    real = os.stat
    monkeypatch.setattr(os.path, "getsize", lambda p: calls.append(p) or real(p).st_size)
    fp = src.fingerprint()
    assert not calls
    (d / "3.jpg").write_bytes(b"y")
    assert sources.open_source(str(root)).fingerprint() != fp   # a new photo changes it


def test_decoding_in_worker_processes_gives_the_same_rows(tmp_path, tiny_teacher, csv_demo):
    outs = {}
    for processes in (0, 2):
        out = str(tmp_path / f"p{processes}")
        cache_writer.run_shard(cache_writer.CacheConfig(
            out_dir=out, batch_size=3, topk=4, rows_per_part=5, decode_processes=processes,
            views=cache_format.views_config(3, seed=5)), sources.open_source(csv_demo),
            tiny_teacher)
        outs[processes] = out
    a, b = read_rows(outs[0]), read_rows(outs[2])
    assert len(a["key"]) == 24 and a["key"].tolist() == b["key"].tolist()
    assert a["image"] == b["image"]
    for name in ("taxon_index", "teacher_embedding", "topk_species_indices",
                 "topk_species_logits", "teacher_logsumexp", "view_boxes", "view_flips"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    parts = lambda d: [os.path.basename(p) for p in sorted(glob.glob(f"{d}/rows/*/part-*.npz"))]
    assert parts(outs[0]) == parts(outs[2])


def test_a_format_1_cache_is_refused_with_what_to_do(tmp_path, csv_demo, tiny_teacher):
    out = str(tmp_path / "old")
    os.makedirs(out)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        f.write('{"format_version": 1, "topk": 5}')
    r = cli("teacher_cache", f"--source={csv_demo}", f"--out_dir={out}", *TINY)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "format_version is 1" in r.stderr and "Rebuild the cache" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(ResumeMismatch, match="format_version is 1.*--out_dir=NEW_DIR"):
        cache_writer.run_shard(cache_writer.CacheConfig(out_dir=out), sources.open_source(csv_demo),
                               tiny_teacher)


def test_resume_with_other_views_is_refused(tmp_path, csv_demo, tiny_teacher):
    out = str(tmp_path / "c")
    args = [f"--source={csv_demo}", f"--out_dir={out}", *TINY, "--batch_size=4"]
    assert cli("teacher_cache", *args, "--views=2").returncode == 0
    r = cli("teacher_cache", *args, "--views=3")
    assert r.returncode == 2 and "views" in r.stderr and "cannot be resumed" in r.stderr
    r = cli("teacher_cache", *args, "--views=0")
    assert r.returncode == 2 and "views count must be >= 1" in r.stderr
