"""`python -m bioclip_lite_tf.evaluate --photos`: your own labelled photos against the export,
no teacher and no dataset build. Photos are drawn by the test (testing.synthetic.draw_photo)
into iNat21-style class folders and a CSV, including a species the label bank lacks."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bioclip_lite_tf.testing import export_fixtures as export_testing
from bioclip_lite_tf.testing.synthetic import draw_photo
from formats import device_label_bank as device_format
from formats.ranks import RANKS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNKNOWN = ("Animalia", "Chordata", "Aves", "Strigiformes", "Strigidae", "Strix", "nebulosa")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "bioclip_export_workspace")
  return export_testing.exported_workspace(root)


def _lineages(export_dir):
  bank = device_format.read_device_label_bank(os.path.join(export_dir, "labels"))
  return [tuple(name.split()) for name in bank.table("species").names]


def _write_photos(root, lineages, per_class=3, seed=0):
  rng = np.random.default_rng(seed)
  rows = []
  for i, lin in enumerate(lineages):
    folder = os.path.join(root, f"{i:05d}_" + "_".join(lin))
    os.makedirs(folder)
    for j in range(per_class):
      path = os.path.join(folder, f"p{j}.jpg")
      Image.fromarray(draw_photo(rng, lin, 64 + 8 * j)).save(path, quality=92)
      rows.append([os.path.relpath(path, root)] + list(lin))
  return rows


def _run(*args):
  return subprocess.run([sys.executable, "-m", "bioclip_lite_tf.evaluate", *args],
                        capture_output=True, text=True, cwd=REPO, timeout=900)


def test_photos_folders_and_csv_report_every_runtime(exported, tmp_path):
  known = _lineages(exported["export"])[:4]
  photos = tmp_path / "photos"
  rows = _write_photos(str(photos), known + [UNKNOWN])
  proc = _run(f"--photos={photos}", f"--export_dir={exported['export']}",
              f"--out={tmp_path / 'r1'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Strix nebulosa" in proc.stderr          # unknown names are printed
  report = json.loads((tmp_path / "r1" / "photos_report.json").read_text())
  assert report["n_photos_read"] == 15 and report["n_evaluated"] == 12
  assert report["unknown_names"] == [{"name": " ".join(UNKNOWN), "photos": 3}]
  assert report["errors"] == [] and report["skipped"] == []
  for runtime in ("keras", "tflite_int8", "tfjs"):
    res = report["runtimes"][runtime]
    assert res["accuracy"]["n"] == 12, runtime
    top1 = res["accuracy"]["student_vs_truth"]["top1"]
    assert all(0 <= top1[r] <= 1 for r in RANKS)
    assert "mistake_severity" in res["hierarchy"] and res["abstention"]["curve"]
  # The same photos through the same graph: Keras (SavedModel) and TF.js give the same answers.
  assert report["runtimes"]["tfjs"]["accuracy"] == report["runtimes"]["keras"]["accuracy"]
  # The CSV form of the same photos gives the same figures.
  csv_path = photos / "photos.csv"
  with open(csv_path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["path"] + list(RANKS))
    w.writerows(rows)
  proc = _run(f"--photos={csv_path}", f"--export_dir={exported['export']}",
              f"--out={tmp_path / 'r2'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report2 = json.loads((tmp_path / "r2" / "photos_report.json").read_text())
  assert report2["runtimes"]["keras"]["accuracy"] == report["runtimes"]["keras"]["accuracy"]
  assert report2["unknown_names"] == report["unknown_names"]


def test_photos_bad_input_exits_2(exported, tmp_path):
  proc = _run(f"--photos={tmp_path / 'nope'}", f"--export_dir={exported['export']}")
  assert proc.returncode == 2 and "nope" in proc.stderr and "no such file" in proc.stderr
  bad = tmp_path / "bad.csv"
  bad.write_text("path,kingdom\nx.jpg,Animalia\n")
  proc = _run(f"--photos={bad}", f"--export_dir={exported['export']}",
              f"--out={tmp_path / 'r'}")
  assert proc.returncode == 2 and "lacks column" in proc.stderr and "species" in proc.stderr
  assert not (tmp_path / "r" / "photos_report.json").exists()
  proc = _run(f"--photos={tmp_path}", f"--export_dir={tmp_path / 'no_export'}")
  assert proc.returncode == 2 and "manifest.json" in proc.stderr
