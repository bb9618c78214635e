"""The demo generator: real TreeOfLife-10M layout, determinism, hierarchical visual signal."""
import csv
import io
import os
import tarfile

import numpy as np
from PIL import Image

from teacher_cache import demo_data, webdataset
from teacher_cache.sources import INAT_FOLDER
from formats.ranks import RANKS
from formats.taxonomy import Taxonomy

import tc_helpers


def _tar_members(path):
    with tarfile.open(path) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def test_wds_layout_and_catalog(wds_demo):
    tars = sorted(n for n in os.listdir(wds_demo) if n.endswith(".tar"))
    assert tars == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert "SYNTHETIC" in open(os.path.join(wds_demo, "SYNTHETIC_DATA.txt")).read()
    with open(os.path.join(wds_demo, "catalog.csv"), newline="") as f:
        catalog = {r["key"]: r for r in csv.DictReader(f)}
    seen = set()
    for t in tars:
        samples = list(webdataset.iter_tar_samples(os.path.join(wds_demo, t)))
        for s in samples:
            assert s.error is None
            assert set(s.members) == {"jpg", *webdataset.TEXT_MEMBERS}
            row = catalog[s.key]
            lineage = [row[r] for r in RANKS]
            assert s.members["taxonomic_name.txt"].decode() == " ".join(lineage)
            assert s.members["scientific_name.txt"].decode() == f"{row['genus']} {row['species']}"
            assert s.members["taxon_com.txt"].decode() == (
                f"a photo of {' '.join(lineage)} with common name {row['common_name']}.")
            img = Image.open(io.BytesIO(s.members["jpg"]))
            assert img.format == "JPEG" and img.size == (224, 224)
            seen.add(s.key)
    assert seen == set(catalog) and len(seen) == 24
    assert {r["source"] for r in catalog.values()} == {"synthetic-demo"}


def test_deterministic_given_seed(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    demo_data.write_demo(a, "wds", num_photos=6, num_shards=2, seed=3, num_species=4)
    demo_data.write_demo(b, "wds", num_photos=6, num_shards=2, seed=3, num_species=4)
    demo_data.write_demo(c, "wds", num_photos=6, num_shards=2, seed=4, num_species=4)
    for name in ("shard-000000.tar", "shard-000001.tar", "catalog.csv"):
        assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
    assert _tar_members(os.path.join(a, "shard-000000.tar")) != _tar_members(os.path.join(c, "shard-000000.tar"))


def test_inat_and_csv_formats(inat_demo, csv_demo):
    folders = sorted(os.listdir(inat_demo))
    class_dirs = [f for f in folders if INAT_FOLDER.match(f)]
    assert len(class_dirs) == 8 and "SYNTHETIC_DATA.txt" in folders
    # NNNNN is the row of the species in sorted order, the rest is the lineage with underscores.
    for i, f in enumerate(class_dirs):
        assert f.startswith(f"{i:05d}_") and len(f.split("_")) == 8
    with open(csv_demo, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    for r in rows:
        assert os.path.isfile(os.path.join(os.path.dirname(csv_demo), r["path"]))
        assert all(r[k] for k in RANKS)


def test_taxa_are_a_real_hierarchy():
    tax = Taxonomy.from_rows(demo_data.DEMO_SPECIES)
    sizes = [len(t) for t in tax.tables]
    assert sizes[0] == 3 and sizes[-1] == len(demo_data.DEMO_SPECIES) >= 24
    assert sizes[5] < sizes[6] and sizes[4] < sizes[5]  # species share genera, genera share families


def test_relatives_look_more_alike():
    """Mean photo-space distance: same genus < same family (other genus) < other kingdom."""
    def mean_image(lineage):
        return np.mean([demo_data.render_photo(lineage, np.random.default_rng(s), 64).astype(np.float32)
                        for s in range(12)], axis=0)

    sp = {l[6]: l for l, _ in demo_data.DEMO_SPECIES}
    params = {k: demo_data.species_parameters(v) for k, v in sp.items()}
    d = lambda a, b: np.linalg.norm(params[a] - params[b])
    # genus-mates vs. family-mates vs. other kingdom, in parameter space (exact by construction)
    same_genus = np.mean([d("canina", "rugosa"), d("atalanta", "cardui"), d("migratorius", "merula"),
                          d("muscaria", "phalloides"), d("carolinensis", "vulgaris")])
    same_family = np.mean([d("canina", "avium"), d("atalanta", "plexippus"), d("migratorius", "sialis"),
                           d("vulpes", "lupus")])
    other_kingdom = np.mean([d("canina", "migratorius"), d("muscaria", "vulpes"), d("robur", "plexippus")])
    assert same_genus < same_family < other_kingdom
    # ... and it survives rendering: average photos of genus-mates are closer than of strangers.
    img = {k: mean_image(sp[k]) for k in ("canina", "rugosa", "migratorius", "muscaria")}
    assert np.abs(img["canina"] - img["rugosa"]).mean() < np.abs(img["canina"] - img["migratorius"]).mean()
    assert np.abs(img["canina"] - img["rugosa"]).mean() < np.abs(img["canina"] - img["muscaria"]).mean()


def test_cli_writes_note_and_refuses_nonempty_dir(tmp_path):
    out = str(tmp_path / "d")
    r = tc_helpers.cli("teacher_cache.demo_data", f"--out_dir={out}", "--num_photos=4",
                       "--num_shards=1", "--num_species=2")
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stderr  # the log says so too
    assert os.path.isfile(os.path.join(out, "shard-000000.tar"))
    r = tc_helpers.cli("teacher_cache.demo_data", f"--out_dir={out}", "--num_photos=4")
    assert r.returncode == 2 and "not empty" in r.stderr
