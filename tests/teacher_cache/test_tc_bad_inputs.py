"""Corrupt inputs are skipped, counted and logged with their key; the run goes on."""
import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from teacher_cache import demo_data, webdataset

import tc_helpers
from tc_helpers import TINY, cli, manifest, read_rows

pytestmark = pytest.mark.slow  # every test here runs the CLI

NON_UTF8_KEY = b"bad\xff\xfename".decode("utf-8", "surrogateescape")


def _huge_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (10000, 10000), 128).save(buf, "JPEG", quality=50)
    return buf.getvalue()


@pytest.fixture(scope="module")
def bad_wds(tmp_path_factory):
    """Two tars: the first mixes good samples with every kind of bad one, the second is cut
    in the middle of a member. No catalog.csv, so the taxonomy comes from a scan."""
    root = tmp_path_factory.mktemp("bad")
    good = [(l, c) for l, c in demo_data.DEMO_SPECIES[:4]]
    rng = np.random.default_rng(0)

    def members(lineage, common, jpg):
        m = {"jpg": jpg}
        m.update(demo_data.caption_members(lineage, common))
        return m

    def good_jpg(lineage):
        return demo_data.encode_jpeg(demo_data.render_photo(lineage, rng, 224))

    expected_bad = {}
    with tarfile.open(root / "shard-000000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (l, c) in enumerate(good):
            webdataset.add_sample(tar, f"good{i}", members(l, c, good_jpg(l)))
        l, c = good[0]
        webdataset.add_sample(tar, "corrupt", members(l, c, b"\xff\xd8\xff\xe0" + b"garbage" * 50))
        expected_bad["corrupt"] = "corrupt"
        webdataset.add_sample(tar, "empty", members(l, c, b""))
        expected_bad["empty"] = "0 bytes"
        jpg = good_jpg(l)
        webdataset.add_sample(tar, "truncjpg", members(l, c, jpg[: len(jpg) // 3]))
        expected_bad["truncjpg"] = "corrupt"
        m = members(l, c, good_jpg(l))
        del m["taxonomic_name.txt"]
        webdataset.add_sample(tar, "notaxon", m)
        expected_bad["notaxon"] = "missing KEY.taxonomic_name.txt"
        m = members(l, c, good_jpg(l))
        m["taxonomic_name.txt"] = b"Animalia Chordata Aves"
        webdataset.add_sample(tar, "shorttaxon", m)
        expected_bad["shorttaxon"] = "incomplete taxonomy"
        webdataset.add_sample(tar, NON_UTF8_KEY, members(l, c, good_jpg(l)))
        expected_bad["bad\\xff\\xfename"] = "not valid UTF-8"
        webdataset.add_sample(tar, "huge", members(l, c, _huge_jpeg()))
        expected_bad["huge"] = "too large"
        webdataset.add_sample(tar, "good_last", members(l, c, good_jpg(l)))
    # second tar: two good samples, then the file ends inside the third sample's JPEG
    path = root / "shard-000001.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for i, (l, c) in enumerate(good[:2]):
            webdataset.add_sample(tar, f"t2good{i}", members(l, c, good_jpg(l)))
        webdataset.add_sample(tar, "t2cut", members(l, c, good_jpg(l)))
    data = open(path, "rb").read()
    cut = data.index(b"t2cut.jpg") + 512 + 1000  # header block, then 1000 bytes of the JPEG
    open(path, "wb").write(data[:cut])
    expected_bad["t2cut"] = "truncated or corrupt tar"
    return str(root), expected_bad


def test_bad_samples_are_skipped_counted_and_logged(bad_wds, tmp_path):
    src, expected_bad = bad_wds
    out = str(tmp_path / "cache")
    r = cli("teacher_cache", f"--source={src}", f"--out_dir={out}", *TINY, "--batch_size=3")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_rows(out)
    assert sorted(rows["key"].tolist()) == sorted(
        ["good0", "good1", "good2", "good3", "good_last", "t2good0", "t2good1"])
    m = manifest(out)
    assert m["counts"] == {"written": 7, "skipped": len(expected_bad)}
    with open(os.path.join(out, "skipped", "shard-00000-of-00001.jsonl"), encoding="utf-8") as f:
        skipped = {d["key"]: d for d in map(json.loads, f)}
    assert set(skipped) == set(expected_bad)
    for key, reason in expected_bad.items():
        assert reason in skipped[key]["reason"], (key, skipped[key])
        assert skipped[key]["where"].endswith(".tar")
        assert key in r.stderr  # logged with its key as it happens
    # the taxonomy scan also survived the damaged samples: only the 4 good species
    assert m["label_bank"]["ranks"]["species"] == 4


def test_bad_files_in_class_folders(inat_demo, tmp_path):
    root = tmp_path / "inat"
    shutil.copytree(inat_demo, root)
    folder = sorted(p for p in os.listdir(root) if p[:5].isdigit())[0]
    (root / folder / "zero.jpg").write_bytes(b"")
    os.close(os.open(os.path.join(os.fsencode(root / folder), b"\xff\xfe.jpg"), os.O_CREAT | os.O_WRONLY))
    (root / folder / "text.jpg").write_text("not an image")
    out = str(tmp_path / "cache")
    r = cli("teacher_cache", f"--source={root}", f"--out_dir={out}", *TINY, "--batch_size=8")
    assert r.returncode == 0, r.stderr[-3000:]
    assert manifest(out)["counts"] == {"written": 24, "skipped": 3}
    with open(os.path.join(out, "skipped", "shard-00000-of-00001.jsonl"), encoding="utf-8") as f:
        reasons = {d["key"].rsplit("/", 1)[1]: d["reason"] for d in map(json.loads, f)}
    assert "0 bytes" in reasons["zero"] and "corrupt" in reasons["text"]
    assert "UTF-8" in reasons["\\xff\\xfe"]
