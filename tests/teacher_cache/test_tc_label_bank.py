"""The label bank (names, parents, exact-template text embeddings) and streaming top-k."""
import csv
import os

import numpy as np
import open_clip
import pytest
import torch

from teacher_cache import demo_data, label_bank
from formats.ranks import RANKS
from formats.taxonomy import Taxonomy
from teacher_cache.topk import streaming_topk

import tc_helpers


@pytest.fixture(scope="module")
def bank(tmp_path_factory, tiny_teacher):
    tax = Taxonomy.from_rows(demo_data.DEMO_SPECIES)
    out = str(tmp_path_factory.mktemp("bank"))
    label_bank.build_label_bank(out, tax, tiny_teacher, batch_size=7)  # odd batch: chunking works
    return label_bank.load_label_bank(os.path.join(out, "label_bank"))


def test_names_and_parents_consistent(bank):
    truth = {l: c for l, c in demo_data.DEMO_SPECIES}
    tables = {t.rank: t for t in bank.tables}
    for r, rank in enumerate(RANKS):
        t = tables[rank]
        assert list(t.names) == sorted(set(t.names))  # unique, deterministic order
        for name, parent in zip(t.names, t.parents.tolist()):
            if r == 0:
                assert parent == -1 and " " not in name
            else:
                # the parent row's name is this name minus its last word
                assert tables[RANKS[r - 1]].names[parent] == name.rsplit(" ", 1)[0]
    species = tables["species"]
    assert {tuple(n.split()): c for n, c in zip(species.names, species.common_names)} == truth
    assert all(c == "" for t in bank.tables[:-1] for c in t.common_names)


def test_embeddings_are_normalized_open_clip_text_of_exact_template(bank, tiny_teacher):
    tables = {t.rank: t for t in bank.tables}
    model, tok = tiny_teacher.model, open_clip.get_tokenizer("bioclip-lite-test-tiny")
    for rank in ("genus", "species"):
        t, emb = tables[rank], np.asarray(bank.embeddings(rank))
        assert emb.dtype == np.float32 and emb.shape == (len(t.names), tiny_teacher.embed_dim)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
        if rank == "species":
            texts = [f"a photo of {n} with common name {c}." for n, c in zip(t.names, t.common_names)]
            assert texts[0].startswith("a photo of Animalia Arthropoda Insecta ")
        else:
            texts = [f"a photo of {n}." for n in t.names]
        with torch.no_grad():
            ref = model.encode_text(tok(texts))
            ref = (ref / ref.norm(dim=-1, keepdim=True)).numpy()
        np.testing.assert_allclose(emb, ref, atol=1e-5)
    assert bank.meta["teacher"]["embed_dim"] == tiny_teacher.embed_dim
    assert bank.meta["ranks"]["species"] == len(demo_data.DEMO_SPECIES)


def test_same_taxonomy_any_order_same_bank(tiny_teacher, tmp_path):
    rows = list(demo_data.DEMO_SPECIES)
    a = Taxonomy.from_rows(rows)
    b = Taxonomy.from_rows(reversed(rows + rows[:5]))  # other order, duplicates
    assert a.fingerprint() == b.fingerprint()
    label_bank.build_label_bank(str(tmp_path / "a"), a, tiny_teacher)
    label_bank.build_label_bank(str(tmp_path / "b"), b, tiny_teacher)
    for name in os.listdir(tmp_path / "a" / "label_bank"):
        assert open(tmp_path / "a" / "label_bank" / name, "rb").read() == \
            open(tmp_path / "b" / "label_bank" / name, "rb").read(), name


def test_label_bank_cli_for_custom_species_list(tmp_path):
    """A regional checklist (binomial species column, some common names missing)."""
    path = tmp_path / "checklist.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(RANKS) + ["common_name"])
        w.writerow(["Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "Turdus merula", "common blackbird"])
        w.writerow(["Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "philomelos", ""])
        w.writerow(["Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina", "dog rose"])
    out = tmp_path / "out"
    r = tc_helpers.cli("teacher_cache.label_bank", f"--species_file={path}", f"--out_dir={out}", *tc_helpers.TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    b = label_bank.load_label_bank(str(out / "label_bank"))
    assert b.tables[-1].names == ("Animalia Chordata Aves Passeriformes Turdidae Turdus merula",
                                  "Animalia Chordata Aves Passeriformes Turdidae Turdus philomelos",
                                  "Plantae Tracheophyta Magnoliopsida Rosales Rosaceae Rosa canina")
    assert b.tables[-1].common_names == ("common blackbird", "", "dog rose")
    assert [len(t) for t in b.tables] == [2, 2, 2, 2, 2, 2, 3]
    # bad input: clear message, exit 2
    bad = tmp_path / "bad.csv"
    bad.write_text("kingdom,phylum\nAnimalia,Chordata\n")
    r = tc_helpers.cli("teacher_cache.label_bank", f"--species_file={bad}", f"--out_dir={tmp_path / 'o2'}", *tc_helpers.TINY)
    assert r.returncode == 2 and "missing column" in r.stderr


@pytest.mark.parametrize("num_species,k,chunk", [(1000, 10, 97), (5, 10, 2), (300, 1, 300)])
def test_streaming_topk_equals_dense(num_species, k, chunk):
    g = torch.Generator().manual_seed(num_species)
    img = torch.nn.functional.normalize(torch.randn(13, 24, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(num_species, 24, generator=g), dim=-1).numpy()
    values, indices = streaming_topk(img, txt, 100.0, k, chunk_size=chunk)
    dense = 100.0 * img.numpy() @ txt.T
    kk = min(k, num_species)
    ref_idx = np.argsort(-dense, axis=1, kind="stable")[:, :kk]
    assert values.shape == indices.shape == (13, kk)
    assert indices.dtype == torch.int32 and values.dtype == torch.float32
    np.testing.assert_array_equal(indices.numpy(), ref_idx)
    np.testing.assert_allclose(values.numpy(), np.take_along_axis(dense, ref_idx, 1), atol=1e-4)
