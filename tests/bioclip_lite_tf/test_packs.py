"""Regional and clade packs through the real CLI (python -m bioclip_lite_tf.device_label_bank)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from formats import atomic
from formats import device_label_bank as device_format
from formats import label_bank as label_bank_format
from formats.taxonomy import Taxonomy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Real names, with a real homonym: Morus is a gannet genus (Aves) and the mulberry (Plantae).
LINEAGES = [
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "merula"),
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "migratorius"),
    ("Animalia", "Chordata", "Aves", "Suliformes", "Sulidae", "Morus", "bassanus"),
    ("Animalia", "Chordata", "Mammalia", "Carnivora", "Canidae", "Vulpes", "vulpes"),
    ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Danaus", "plexippus"),
    ("Animalia", "Arthropoda", "Insecta", "Coleoptera", "Coccinellidae", "Coccinella",
     "septempunctata"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Moraceae", "Morus", "alba"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina"),
    ("Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita",
     "muscaria"),
]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
  """A label_bank/ of LINEAGES with random unit rows, and the global device bank of it."""
  root = tmp_path_factory.mktemp("packs")
  taxonomy = Taxonomy({l: "" for l in LINEAGES})
  rng = np.random.default_rng(0)
  rows = {}
  for t in taxonomy.tables:
    x = rng.standard_normal((len(t), 24)).astype(np.float32)
    rows[t.rank] = x / np.linalg.norm(x, axis=1, keepdims=True)
  label_bank = root / "ds" / "label_bank"
  label_bank_format.write_label_bank(str(label_bank), taxonomy.tables, 24,
                                     label_bank_format.in_memory_rows(rows))
  atomic.write_json(str(root / "ds" / "teacher.json"), {"id": "t", "logit_scale": 50.0,
                                                        "embed_dim": 24})
  proc = _run([f"--label_bank={label_bank}", f"--out={root}/global"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  return root, label_bank, device_format.read_device_label_bank(str(root / "global"))


def _run(args):
  return subprocess.run([sys.executable, "-m", "bioclip_lite_tf.device_label_bank"] + args,
                        capture_output=True, text=True, cwd=REPO, timeout=600)


def _same_rows_as_global(pack, global_bank):
  index = {n: i for i, n in enumerate(global_bank.table("species").names)}
  rows = [index[n] for n in pack.table("species").names]
  assert np.array_equal(pack.species_embeddings, global_bank.species_embeddings[rows])


def test_clade_and_checklist_packs(bank, tmp_path):
  root, label_bank, global_bank = bank
  # clades at two ranks, one a leaf name and one a full lineage name; the TFDS dir form
  proc = _run([f"--label_bank={label_bank.parent}", "--clade=Aves,Animalia Arthropoda Insecta",
               f"--out={tmp_path}/clade"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  pack = device_format.read_device_label_bank(str(tmp_path / "clade"))
  assert pack.table("species").names == tuple(sorted(
      " ".join(l) for l in LINEAGES if l[2] in ("Aves", "Insecta")))
  assert pack.table("kingdom").names == ("Animalia",)
  assert pack.table("class").names == ("Animalia Arthropoda Insecta", "Animalia Chordata Aves")
  for t in pack.tables[1:]:  # parent links point at the right rows of the pack
    prev = pack.tables[pack.tables.index(t) - 1]
    assert all(n.startswith(prev.names[p] + " ") for n, p in zip(t.names, t.parents))
  _same_rows_as_global(pack, global_bank)
  assert pack.logit_scale == pytest.approx(50.0)
  assert "5 species (of 9 in the label bank)" in proc.stdout
  assert f"label_bank.bin {os.path.getsize(tmp_path / 'clade' / 'label_bank.bin')} bytes" in proc.stdout

  # a checklist of "Genus epithet" and full lineage names, and one of kingdom..species columns
  (tmp_path / "a.csv").write_text("species,count\nTurdus merula,3\n"
                                  "Plantae Tracheophyta Magnoliopsida Rosales Moraceae Morus alba,1"
                                  "\n,\n")
  (tmp_path / "b.csv").write_text("kingdom,phylum,class,order,family,genus,species\n"
                                  "Animalia,Chordata,Aves,Passeriformes,Turdidae,Turdus,"
                                  "Turdus merula\n"
                                  "Plantae,Tracheophyta,Magnoliopsida,Rosales,Moraceae,Morus,alba"
                                  "\n")
  for name in ("a", "b"):
    proc = _run([f"--label_bank={label_bank}", f"--checklist={tmp_path}/{name}.csv",
                 f"--out={tmp_path}/{name}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    pack = device_format.read_device_label_bank(str(tmp_path / name))
    assert pack.table("species").names == (
        "Animalia Chordata Aves Passeriformes Turdidae Turdus merula",
        "Plantae Tracheophyta Magnoliopsida Rosales Moraceae Morus alba")
    assert len(pack.table("kingdom")) == 2
    _same_rows_as_global(pack, global_bank)


def test_unknown_and_ambiguous_names_exit_2(bank, tmp_path):
  _, label_bank, _ = bank
  proc = _run([f"--label_bank={label_bank}", "--clade=Avess,Insecta,Reptilia,Morus",
               f"--out={tmp_path}/bad"])
  assert proc.returncode == 2
  assert "2 unknown taxon names" in proc.stderr
  assert "'Avess' (close: Aves)" in proc.stderr and "'Reptilia'" in proc.stderr
  # Morus is a genus in two kingdoms: both candidates are listed
  assert "'Morus': " in proc.stderr
  assert "Animalia Chordata Aves Suliformes Sulidae Morus (genus)" in proc.stderr
  assert "Plantae Tracheophyta Magnoliopsida Rosales Moraceae Morus (genus)" in proc.stderr
  assert not os.path.exists(tmp_path / "bad")

  # checklist: species only (a genus name is not a species), close matches for typos
  (tmp_path / "c.csv").write_text("species\nTurdus merula\nTurdus merla\nTurdus\n")
  proc = _run([f"--label_bank={label_bank}", f"--checklist={tmp_path}/c.csv",
               f"--out={tmp_path}/bad"])
  assert proc.returncode == 2
  assert "2 unknown species" in proc.stderr
  assert "'Turdus merla' (close: Turdus merula)" in proc.stderr and "'Turdus'" in proc.stderr
  assert not os.path.exists(tmp_path / "bad")

  (tmp_path / "d.csv").write_text("name\nTurdus merula\n")
  proc = _run([f"--label_bank={label_bank}", f"--checklist={tmp_path}/d.csv",
               f"--out={tmp_path}/bad", "--bank_dtype=int4"])
  assert proc.returncode == 2 and "no `species` column" in proc.stderr
  proc = _run([f"--label_bank={label_bank}", "--clade=Aves", f"--out={tmp_path}/bad",
               "--bank_dtype=int2"])
  assert proc.returncode == 2 and "int2" in proc.stderr
  assert not os.path.exists(tmp_path / "bad")


def test_compact_pack(bank, tmp_path):
  _, label_bank, _ = bank
  proc = _run([f"--label_bank={label_bank}", "--clade=Animalia", "--bank_compact=pca4_int4",
               f"--out={tmp_path}/small"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  pack = device_format.read_device_label_bank(str(tmp_path / "small"))
  assert pack.meta["dtype"] == "int4" and pack.meta["projection"]["shape"] == [24, 4]
  assert len(pack.table("species")) == 6 and "int4 x 4 projected" in proc.stdout
