"""Export: the plain inference graph, exact uint8 grids, bad input, and the export directory."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bioclip_lite_tf.keras import keras, tf
from bioclip_lite_tf import export
from bioclip_lite_tf.export import plain_graph as export_graph, tfjs as export_tfjs
from bioclip_lite_tf.testing import export_fixtures as export_testing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(args):
  return subprocess.run([sys.executable, "-m"] + args, capture_output=True, text=True, cwd=REPO)


# -- grids --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo_level,hi_level", [(0, 255), (3, 250), (100, 101), (7, 7)])
def test_find_uint8_grid_recovers_any_sub_range_exactly(lo_level, hi_level):
  rng = np.random.RandomState(lo_level)
  scale, nudged_min = np.float32(0.0123), np.float32(-1.37)
  q = rng.randint(lo_level, hi_level + 1, size=(3, 3, 8, 16))
  q.flat[0], q.flat[1] = lo_level, hi_level
  values = (q.astype(np.float32) * scale + nudged_min).astype(np.float32)
  grid = export_tfjs.find_uint8_grid(values)
  assert grid is not None
  s, m, levels = grid
  decoded = (levels.astype(np.float64) * s + m).astype(np.float32)
  assert np.max(np.abs(decoded - values)) <= 2 * np.spacing(np.float32(np.abs(values).max()))


def test_find_uint8_grid_refuses_off_grid_values():
  rng = np.random.RandomState(0)
  assert export_tfjs.find_uint8_grid(rng.randn(64, 8).astype(np.float32)) is None
  # 200 distinct values that are NOT on one step: must not be "rounded" onto a grid
  values = np.sort(rng.uniform(-1, 1, 200)).astype(np.float32)
  assert export_tfjs.find_uint8_grid(values) is None


# -- plain inference graph ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_qat():
  tf.random.set_seed(0)
  qat = export_testing.quantize_per_tensor(export_testing.tiny_float_model(32, 24))
  photos = export.synthetic_photos(48, 32)
  targets = export_testing.unit_rows(np.random.RandomState(1).randn(48, 24))
  export_testing.train_briefly(qat, photos, targets, steps=8)
  return qat, photos


def test_plain_graph_is_the_qat_model_without_activation_quantization(tiny_qat):
  qat, photos = tiny_qat
  plain = export_graph.plain_inference_model(qat)
  assert plain.folded_batchnorms == ["stem_bn", "dw_bn", "expand_bn"]
  assert all(w.per_tensor and w.levels <= 256 for w in plain.quantized_weights)
  assert not any("Quantize" in type(l).__name__ for l in plain.model.layers)
  # Independent reference: the float model with each kernel replaced by TF's fake-quant of it
  # on the quantizer's stored range (what the QAT forward pass uses), BN in inference mode.
  float_model = export_testing.tiny_float_model(32, 24)
  for layer in float_model.layers:
    if not layer.weights:
      continue
    wrapper = next((l for l in qat.layers if getattr(getattr(l, "layer", None), "name", None)
                    == layer.name), None)
    source = wrapper if wrapper is not None else qat.get_layer(layer.name)
    values = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in source.weights}
    new = []
    for v in layer.weights:
      short = v.name.split("/")[-1].split(":")[0]
      value = values[short]
      if short in ("kernel", "depthwise_kernel"):
        value = tf.quantization.fake_quant_with_min_max_vars(
            value, values[f"{short}_min"], values[f"{short}_max"], num_bits=8).numpy()
      new.append(value)
    layer.set_weights(new)
  expected = float_model.predict(photos, verbose=0)
  got = plain.model.predict(photos, verbose=0)
  assert np.max(np.abs(got - expected)) < 1e-5
  # and it differs from the QAT model proper only through activation quantization
  assert np.max(np.abs(got - qat.predict(photos, verbose=0))) > 1e-4


def test_batchnorm_as_affine_matches_keras_batchnorm():
  rng = np.random.RandomState(0)
  bn = keras.layers.BatchNormalization(epsilon=1e-3)
  x = rng.randn(4, 5, 5, 6).astype(np.float32)
  bn.build(x.shape)
  gamma, beta = rng.randn(6), rng.randn(6)
  gamma[2] = 0.0  # a dead channel must still output beta
  mean, var = rng.randn(6), rng.uniform(0.1, 2, 6)
  bn.set_weights([gamma, beta, mean, var])
  offset, scale = export_graph.batchnorm_as_affine(gamma, beta, mean, var, 1e-3)
  np.testing.assert_allclose((x + offset) * scale, bn(x, training=False).numpy(), atol=2e-5)


# -- CLI bad input ------------------------------------------------------------------------------

def test_cli_without_qat_checkpoint_exits_2(tmp_path):
  proc = _run(["bioclip_lite_tf.export", f"--workdir={tmp_path}/run",
               f"--out_dir={tmp_path}/export"])
  assert proc.returncode == 2
  assert os.path.join("qat", "model.h5") in proc.stderr
  assert not os.path.exists(tmp_path / "export")


# -- the export directory -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "bioclip_export_workspace")
  return export_testing.exported_workspace(root)


def test_cli_with_mismatched_label_bank_exits_2(tmp_path, exported):
  export_testing.write_label_bank(str(tmp_path / "bank" / "label_bank"), embed_dim=40)
  proc = _run(["bioclip_lite_tf.export", f"--workdir={exported['train']}",
               f"--out_dir={tmp_path}/export", f"--label_bank_dir={tmp_path}/bank/label_bank"])
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "40-d" in proc.stderr and "512-d" in proc.stderr
  assert not os.path.exists(tmp_path / "export")


def test_manifest_ties_files_together(exported):
  out = exported["export"]
  with open(os.path.join(out, "manifest.json")) as f:
    manifest = json.load(f)
  assert manifest["format_version"] == export.FORMAT_VERSION
  assert manifest["embed_dim"] == 512 and manifest["resolution"] == 32
  assert manifest["preprocessing"]["resize"] == "squash"
  assert manifest["teacher"]["real_weights"] is False
  assert manifest["label_bank"]["num_species"] == 8
  for rel in ("tfjs/model.json", "tflite/model_int8.tflite", "labels/label_bank.json",
              "labels/label_bank.bin", "labels/names.bin", "saved_model/saved_model.pb"):
    assert rel in manifest["files"], rel
  for rel, entry in manifest["files"].items():
    with open(os.path.join(out, rel), "rb") as f:
      data = f.read()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"], rel
    assert len(data) == entry["bytes"]
  assert not [n for n in os.listdir(os.path.dirname(out)) if ".staging-" in n]


def test_serving_saved_model_takes_uint8_photos_of_any_size(exported):
  loaded = tf.saved_model.load(os.path.join(exported["export"], "saved_model"))
  serve = loaded.signatures["serving_default"]
  rng = np.random.RandomState(0)
  core = export_graph.plain_inference_model(export.load_qat_model(exported["train"])).model
  from bioclip_lite_tf.model.layers import squash_resize
  for h, w in [(40, 90), (200, 120)]:
    photo = rng.randint(0, 256, (2, h, w, 3)).astype(np.uint8)
    out = serve(photo=tf.constant(photo))["embedding"].numpy()
    assert out.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    expected = core.predict(squash_resize(photo, 32).numpy(), verbose=0)
    assert np.max(np.abs(out - expected)) < 1e-4
