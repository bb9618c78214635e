"""The three source readers on generated data, sharding, detection and fingerprints."""
import csv
import os
import shutil

import pytest

from teacher_cache import sources
from formats.ranks import RANKS


def _catalog(path):
    with open(path, newline="") as f:
        return {r["key"]: (tuple(r[k] for k in RANKS), r["common_name"]) for r in csv.DictReader(f)}


def _all(src, num_shards=1):
    out = {}
    for i in range(num_shards):
        for s in src.iter_shard(i, num_shards):
            assert s.error is None, (s.key, s.error)
            assert s.key not in out, f"{s.key} in two shards"
            out[s.key] = s
    return out


def test_wds_reader_matches_catalog(wds_demo):
    src = sources.open_source(wds_demo)
    assert src.kind == "wds" and src.catalog
    truth = _catalog(os.path.join(wds_demo, "catalog.csv"))
    got = _all(src)
    assert set(got) == set(truth)
    for k, s in got.items():
        assert (s.lineage, s.common_name) == truth[k]
        assert s.image_bytes[:2] == b"\xff\xd8"  # the original JPEG bytes, untouched
    # Sharding by tar: 3 tars over 2 workers, disjoint and complete.
    assert set(_all(src, 2)) == set(truth)
    assert len(list(src.iter_shard(1, 2))) == 8


def test_wds_globs_and_taxonomy_scan(wds_demo, tmp_path):
    a = sources.open_source(os.path.join(wds_demo, "shard-{000000..000002}.tar"))
    b = sources.open_source(os.path.join(wds_demo, "shard-*.tar"))
    assert a.tars == b.tars and len(a.tars) == 3
    assert sources.open_source(os.path.join(wds_demo, "shard-{000000,000002}.tar")).tars == [a.tars[0], a.tars[2]]
    # Without catalog.csv the taxonomy comes from a scan of the tars and must be the same.
    bare = tmp_path / "bare"
    bare.mkdir()
    for t in a.tars:
        shutil.copy(t, bare)
    scanned = sources.open_source(str(bare))
    assert scanned.catalog is None
    assert scanned.taxonomy().fingerprint() == a.taxonomy().fingerprint()
    assert scanned.fingerprint() != a.fingerprint()  # the catalog is part of the fingerprint


def test_inat_reader(inat_demo, wds_demo):
    src = sources.open_source(inat_demo)
    assert src.kind == "inat"
    got = _all(src)
    truth = _catalog(os.path.join(wds_demo, "catalog.csv"))  # same seed -> same keys and taxa
    assert {k.rsplit("/", 1)[1]: s.lineage for k, s in got.items()} == {k: v[0] for k, v in truth.items()}
    assert all(s.common_name == "" for s in got.values())  # folder names carry no common names
    # Photo-level sharding: 3 workers partition the photos.
    parts = [set(s.key for s in src.iter_shard(i, 3)) for i in range(3)]
    assert sum(map(len, parts)) == 24 and set().union(*parts) == set(got)
    assert [len(t) for t in src.taxonomy().tables][-1] == 8


def test_inat_tree_one_level_down(inat_demo, tmp_path):
    root = tmp_path / "inat21"
    shutil.copytree(inat_demo, root / "train")
    src = sources.open_source(str(root), "inat")
    assert len(_all(src)) == 24
    assert all(k.startswith("train/") for k in _all(src))


def test_csv_reader(csv_demo, wds_demo):
    src = sources.open_source(csv_demo)
    assert src.kind == "csv"
    got = _all(src)
    truth = _catalog(os.path.join(wds_demo, "catalog.csv"))
    assert {k: (s.lineage, s.common_name) for k, s in got.items()} == truth
    assert src.taxonomy().fingerprint() == sources.open_source(wds_demo).taxonomy().fingerprint()


def test_csv_missing_columns_and_binomial_species(tmp_path, csv_demo):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,kingdom\nx.jpg,Animalia\n")
    with pytest.raises(sources.SourceError, match="lacks column"):
        sources.open_source(str(bad))
    # species given as a binomial is reduced to the epithet
    rows = list(csv.DictReader(open(csv_demo, newline="")))
    rows[0]["species"] = f"{rows[0]['genus']} {rows[0]['species']}"
    rows[0]["path"] = os.path.join(os.path.dirname(csv_demo), rows[0]["path"])
    out = tmp_path / "binomial.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(rows[0])
    s = next(sources.open_source(str(out)).iter_shard(0, 1))
    assert s.error is None and " " not in s.lineage[6]


def test_wrong_paths_raise_source_error(tmp_path):
    for spec in [str(tmp_path / "nope"), str(tmp_path / "nope-{000..001}.tar")]:
        with pytest.raises(sources.SourceError):
            sources.open_source(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.SourceError, match="class folders"):
        sources.open_source(str(tmp_path / "empty"))


def test_fingerprint_changes_with_content(csv_demo, tmp_path):
    copy = tmp_path / "c.csv"
    shutil.copy(csv_demo, copy)
    fp = sources.open_source(str(copy)).fingerprint()
    assert fp == sources.open_source(csv_demo).fingerprint()
    with open(copy, "a") as f:
        f.write("images/x.jpg,x,demo,Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,merula,\n")
    assert sources.open_source(str(copy)).fingerprint() != fp


def test_csv_row_with_bad_bytes_is_one_skip(csv_demo, tmp_path):
    lines = open(csv_demo, "rb").read().splitlines(keepends=True)
    bad = lines[1].replace(b"synthetic-demo", b"synth\xff\xfe")
    out = tmp_path / "c.csv"
    base = os.path.dirname(csv_demo).encode()
    fix = lambda l: base + b"/" + l  # absolute image paths, since the CSV moved
    out.write_bytes(lines[0] + fix(bad) + b"".join(fix(l) for l in lines[2:]))
    src = sources.open_source(str(out))
    samples = list(src.iter_shard(0, 1))
    assert len(samples) == 24
    assert "not valid UTF-8" in samples[0].error
    assert all(s.error is None for s in samples[1:])
    assert src.taxonomy().num_species == 8
