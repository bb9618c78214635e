"""The dataset loads in a separate Python process whose working directory is outside the repo:
with `import tfds_treeoflife` (the README's Keras example, run verbatim) and with no import."""
import os
import re
import shutil
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

from tfds_treeoflife.build import build  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _readme_example() -> str:
  with open(os.path.join(REPO, "tfds_treeoflife", "README.md")) as f:
    text = f.read()
  block = re.search(r"<!-- keras-example:start -->\s*```python\n(.*?)```", text, re.S)
  assert block, "README lost its keras-example block"
  return block.group(1)


def _run(code, cwd, pythonpath):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  if pythonpath:
    env["PYTHONPATH"] = pythonpath
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=600)


@pytest.fixture
def built(tmp_path, dummy_cache):
  data_dir = tmp_path / "tfds"
  build(dummy_cache, str(data_dir))
  outside = tmp_path / "other_project"
  outside.mkdir()
  assert not str(outside).startswith(REPO)
  return data_dir, outside


@pytest.mark.slow
def test_readme_keras_example_outside_repo(built):
  data_dir, outside = built
  code = f"DATA_DIR = {str(data_dir)!r}\n" + _readme_example() + textwrap.dedent("""
      import numpy as np
      assert info.features["teacher_embedding"].shape == (2, bank.embed_dim)  # [V, D]
      assert info.features["species"].names == bank.ranks["species"].names
      assert bank.teacher_id and bank.logit_scale > 0
      x = next(iter(ds))[0]
      probs = tf.nn.softmax(bank.logit_scale * student(x) @ bank.ranks["species"].text_embeddings.T)
      np.testing.assert_allclose(probs.numpy().sum(-1), 1.0, rtol=1e-4)
      print("README-EXAMPLE-OK", float(student.history.history["loss"][-1]))
      """)
  r = _run(code, cwd=str(outside), pythonpath=REPO)
  assert r.returncode == 0, r.stderr[-4000:]
  assert "README-EXAMPLE-OK" in r.stdout


def test_load_with_no_import_and_from_a_copied_directory(built):
  data_dir, outside = built
  copy = outside / "copied_dataset"
  shutil.copytree(data_dir / "tree_of_life_distill" / "default" / "2.0.0", copy)
  code = textwrap.dedent(f"""
      import json, os, sys
      import numpy as np
      import tensorflow_datasets as tfds
      ds, info = tfds.load("tree_of_life_distill", split="validation", data_dir={str(data_dir)!r},
                           with_info=True)
      ex = next(iter(ds))
      assert ex["image"].dtype.name == "uint8" and ex["image"].shape[-1] == 3
      assert ex["teacher_embedding"].shape == (2, info.metadata["embed_dim"])
      b = tfds.builder_from_directory({str(copy)!r})
      assert b.info.splits["train"].num_examples == 36
      names = b.info.features["species"].names
      bank_dir = os.path.join(b.info.data_dir, "label_bank")
      emb = np.load(os.path.join(bank_dir, "species.npy"))
      rows = open(os.path.join(bank_dir, "species.tsv")).read().splitlines()[1:]
      assert [r.split("\\t")[1] for r in rows] == names and emb.shape == (len(names), 16)
      teacher = json.load(open(os.path.join(b.info.data_dir, "teacher.json")))
      assert teacher["logit_scale"] == b.info.metadata["logit_scale"] == 100.0
      assert "tfds_treeoflife" not in sys.modules
      print("NO-IMPORT-OK")
      """)
  r = _run(code, cwd=str(outside), pythonpath=None)
  assert r.returncode == 0, r.stderr[-4000:]
  assert "NO-IMPORT-OK" in r.stdout
