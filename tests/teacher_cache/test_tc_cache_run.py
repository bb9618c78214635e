"""End-to-end runs of `python -m teacher_cache`: output format, kill/resume, sharding, refusals."""
import csv
import glob
import json
import os
import signal
import time

import numpy as np
import pytest
import torch

from teacher_cache import label_bank, sources
from formats.ranks import RANKS
from formats.taxonomy import taxon_name

import tc_helpers
from tc_helpers import TINY, VIT, cli, manifest, popen, read_rows

pytestmark = pytest.mark.slow  # every test here runs the CLI

VIT_ARGS = ["--batch_size=4", "--rows_per_part=4", "--topk=5", "--log_every_seconds=1"]


@pytest.fixture(scope="module")
def vit_full(wds_small, tmp_path_factory):
    """An uninterrupted ViT-B-16 (random weights) run over the 12-photo tar demo."""
    out = str(tmp_path_factory.mktemp("vit") / "cache")
    r = cli("teacher_cache", f"--source={wds_small}", f"--out_dir={out}", *VIT, *VIT_ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stderr


def test_vit_b16_end_to_end_format(vit_full, wds_small, vit_teacher):
    wds_demo = wds_small
    out, log = vit_full
    m = manifest(out)
    assert m["format_version"] == 2
    assert m["views"]["count"] == 2 and m["views"]["flip"] is True  # the CLI default
    assert m["teacher"]["id"] == "ViT-B-16" and m["teacher"]["embed_dim"] == 512
    assert m["teacher"]["real_weights"] is False
    assert m["teacher"]["logit_scale"] == pytest.approx(vit_teacher.logit_scale)
    assert m["preprocessing"] == {"size": 224, "resize": "squash", "interpolation": "bicubic",
                                  "mean": [0.48145466, 0.4578275, 0.40821073],
                                  "std": [0.26862954, 0.26130258, 0.27577711]}
    assert m["counts"] == {"written": 12, "skipped": 0}
    assert m["source"]["kind"] == "wds"
    assert m["source"]["fingerprint"] == sources.open_source(wds_demo).fingerprint()
    assert m["topk"] == 5 and m["shards"] == {"num_shards": 1, "complete": [0]}
    assert "photos/s" in log and "teacher forward alone" in log  # counted progress lines

    rows = read_rows(out)
    bank = label_bank.load_label_bank(os.path.join(out, "label_bank"))
    with open(os.path.join(wds_demo, "catalog.csv"), newline="") as f:
        catalog = {r["key"]: r for r in csv.DictReader(f)}
    assert sorted(rows["key"].tolist()) == sorted(catalog) and len(set(rows["key"])) == 12
    originals = {s.key: s.image_bytes for s in sources.open_source(wds_demo).iter_shard(0, 1)}
    for i, key in enumerate(rows["key"]):
        assert rows["image"][i] == originals[key]  # the original JPEG bytes
        lineage = [catalog[key][r] for r in RANKS]
        for r in range(7):  # true taxon indices point at the right label-bank rows
            assert bank.tables[r].names[rows["taxon_index"][i, r]] == taxon_name(lineage, r)
        assert rows["common_name"][i] == catalog[key]["common_name"]
    emb = rows["teacher_embedding"]
    assert emb.shape == (12, 2, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=2), 1.0, rtol=1e-5)
    # top-k and the logsumexp over ALL species equal a dense float64 computation against the
    # stored species text embeddings, for every view
    dense = m["teacher"]["logit_scale"] * np.einsum(
        "nvd,sd->nvs", emb.astype(np.float64), np.asarray(bank.species_embeddings, np.float64))
    ref = np.argsort(-dense, axis=2, kind="stable")[:, :, :5]
    np.testing.assert_array_equal(rows["topk_species_indices"], ref)
    np.testing.assert_allclose(rows["topk_species_logits"], np.take_along_axis(dense, ref, 2), atol=1e-4)
    top = dense.max(axis=2, keepdims=True)
    brute_lse = (top + np.log(np.exp(dense - top).sum(axis=2, keepdims=True)))[..., 0]
    assert rows["teacher_logsumexp"].dtype == np.float32
    np.testing.assert_allclose(rows["teacher_logsumexp"], brute_lse, rtol=1e-5, atol=1e-4)
    # view 0 is the whole photo, unflipped; view 1 a crop inside the photo, stored with its flip
    from PIL import Image
    import io
    sizes = [Image.open(io.BytesIO(b)).size for b in rows["image"]]
    np.testing.assert_array_equal(rows["view_boxes"][:, 0], [[0, 0, h, w] for w, h in sizes])
    assert not rows["view_flips"][:, 0].any() and rows["view_flips"].dtype == np.uint8
    b1 = rows["view_boxes"][:, 1]
    assert np.all((b1[:, 0] >= 0) & (b1[:, 0] < b1[:, 2]) & (b1[:, 1] >= 0) & (b1[:, 1] < b1[:, 3]))
    assert not np.array_equal(b1, rows["view_boxes"][:, 0])
    # and each stored embedding is the teacher's embedding of exactly that view's pixels: the
    # decoded photo, cropped, mirrored, squashed to 224 bicubic (done here with PIL directly)
    views = []
    for i in range(3):
        photo = Image.open(io.BytesIO(rows["image"][i])).convert("RGB")
        for v in range(2):
            y0, x0, y1, x1 = rows["view_boxes"][i, v].tolist()
            img = photo.crop((x0, y0, x1, y1))
            if rows["view_flips"][i, v]:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            views.append(np.asarray(img.resize((224, 224), Image.BICUBIC)))
    got = vit_teacher.encode_pixels(torch.from_numpy(np.stack(views))).numpy().reshape(3, 2, 512)
    np.testing.assert_allclose(got, emb[:3], atol=1e-5)
    assert open(glob.glob(os.path.join(out, "skipped", "*.jsonl"))[0]).read() == ""


def _assert_same_rows(a_dir, b_dir, exact=True):
    a, b = read_rows(a_dir), read_rows(b_dir)
    assert a["key"].tolist() == b["key"].tolist(), "row order/keys differ"
    assert len(set(a["key"].tolist())) == len(a["key"]), "a row was written twice"
    assert a["image"] == b["image"]
    for name in ("taxon_index", "common_name", "topk_species_indices", "view_boxes", "view_flips"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    for name in ("teacher_embedding", "topk_species_logits", "teacher_logsumexp"):
        if exact:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        else:
            np.testing.assert_allclose(a[name], b[name], atol=1e-5, err_msg=name)
    assert a["skipped_key"] == b["skipped_key"]


def _wait_for(pattern, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if glob.glob(pattern):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def test_vit_b16_sigkill_and_resume_matches_uninterrupted(vit_full, wds_small, tmp_path):
    out = str(tmp_path / "cache")
    args = [f"--source={wds_small}", f"--out_dir={out}", *VIT, *VIT_ARGS]
    proc = popen("teacher_cache", *args)
    reached = _wait_for(os.path.join(out, "rows", "shard-*", "part-000001.npz"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, "the run ended before it could be killed mid-way"
    assert not glob.glob(os.path.join(out, "rows", "*.done.json"))
    n_parts = len(glob.glob(os.path.join(out, "rows", "shard-*", "part-*.npz")))
    assert 2 <= n_parts < 3  # 12 photos in parts of 4: killed with the last part missing
    r = cli("teacher_cache", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming after" in r.stderr
    _assert_same_rows(vit_full[0], out)
    assert manifest(out)["counts"] == {"written": 12, "skipped": 0}


TINY_ARGS = ["--batch_size=2", "--rows_per_part=2"]


@pytest.fixture(scope="module")
def tiny_ref(csv_demo, tmp_path_factory):
    """An uninterrupted single-worker run of the tiny teacher over the 24-photo CSV demo."""
    out = str(tmp_path_factory.mktemp("tiny") / "ref")
    r = cli("teacher_cache", f"--source={csv_demo}", f"--out_dir={out}", *TINY, *TINY_ARGS)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_kills_at_many_moments_then_resume(tiny_ref, csv_demo, tmp_path):
    """SIGKILL while the label bank is being written, then at several points among the row
    parts; one final run must end with exactly the uninterrupted rows."""
    out = str(tmp_path / "killed")
    args = [f"--source={csv_demo}", f"--out_dir={out}", *TINY, *TINY_ARGS]
    part = lambda n: os.path.join(out, "rows", "shard-*", f"part-{n:06d}.npz")
    moments = [os.path.join(out, "label_bank.tmp-*", "*.tsv"), part(1), part(2), part(7)]
    kills = 0
    for pattern in moments:
        proc = popen("teacher_cache", *args)
        if _wait_for(pattern, proc):
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the runs finished before they could be killed"
    r = cli("teacher_cache", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not glob.glob(os.path.join(out, "**", "*.tmp-*"), recursive=True)
    _assert_same_rows(tiny_ref, out)
    assert manifest(out)["counts"] == manifest(tiny_ref)["counts"] == {"written": 24, "skipped": 0}


def test_two_concurrent_workers_share_one_label_bank(tiny_ref, csv_demo, tmp_path):
    two = str(tmp_path / "two")
    procs = [popen("teacher_cache", f"--source={csv_demo}", f"--out_dir={two}", *TINY, *TINY_ARGS,
                   "--num_shards=2", f"--shard_index={i}") for i in (0, 1)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()[-3000:]
    m = manifest(two)
    assert m["counts"] == {"written": 24, "skipped": 0}
    assert m["shards"] == {"num_shards": 2, "complete": [0, 1]}
    for name in os.listdir(os.path.join(tiny_ref, "label_bank")):
        assert open(os.path.join(tiny_ref, "label_bank", name), "rb").read() == \
            open(os.path.join(two, "label_bank", name), "rb").read(), name
    a, b = read_rows(tiny_ref), read_rows(two)
    order = {k: i for i, k in enumerate(b["key"].tolist())}
    assert sorted(order) == sorted(a["key"].tolist()) and len(order) == 24
    perm = [order[k] for k in a["key"].tolist()]
    np.testing.assert_allclose(a["teacher_embedding"], b["teacher_embedding"][perm], atol=1e-5)
    np.testing.assert_array_equal(a["taxon_index"], b["taxon_index"][perm])
    np.testing.assert_array_equal(a["topk_species_indices"], b["topk_species_indices"][perm])


def _snapshot(d):
    return {p: open(p, "rb").read() for p in glob.glob(os.path.join(d, "**", "*"), recursive=True)
            if os.path.isfile(p)}


def test_refuses_resume_onto_other_source_or_teacher(tiny_ref, csv_demo, wds_demo):
    before = _snapshot(tiny_ref)
    t0 = time.time()
    r = cli("teacher_cache", f"--source={wds_demo}", f"--out_dir={tiny_ref}", *TINY, *TINY_ARGS)
    assert r.returncode == 2 and "cannot be resumed" in r.stderr and "source.fingerprint" in r.stderr
    assert "Traceback" not in r.stderr and "teacher" not in r.stderr.split("Differences")[1]
    r = cli("teacher_cache", f"--source={csv_demo}", f"--out_dir={tiny_ref}", *TINY, *TINY_ARGS, "--init_seed=7")
    assert r.returncode == 2 and "teacher.checkpoint_sha256" in r.stderr
    assert _snapshot(tiny_ref) == before
    # the original command again is a no-op success
    r = cli("teacher_cache", f"--source={csv_demo}", f"--out_dir={tiny_ref}", *TINY, *TINY_ARGS)
    assert r.returncode == 0 and "already complete" in r.stderr


def test_wrong_path_or_unknown_teacher_exit_2(tmp_path, csv_demo):
    r = cli("teacher_cache", f"--source={tmp_path / 'missing'}", f"--out_dir={tmp_path / 'c'}", *TINY)
    assert r.returncode == 2 and "no such file or directory" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("teacher_cache", f"--source={csv_demo}", f"--out_dir={tmp_path / 'c'}", "--teacher=NoSuchNet")
    assert r.returncode == 2 and "unknown teacher 'NoSuchNet'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "c" / "manifest.json")
