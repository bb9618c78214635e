"""Acceptance: the exported TF.js / TFLite students compute what the Keras QAT student computes.

Runs on a briefly trained real student (bioclip_lite_tf.model + quantization, per-tensor QAT)
exported by bioclip_lite_tf.export, in the real runtimes: @tensorflow/tfjs in Node (wasm and
cpu backends) and tf.lite.Interpreter. The Keras reference is the QAT model with activation
fake-quants disabled (export_graph.plain_inference_model), as defined by the issue.
"""
import os

import numpy as np
import pytest

from formats import device_label_bank
from bioclip_lite_tf import data as eval_data
from bioclip_lite_tf import export
from bioclip_lite_tf.evaluate import latency as eval_latency
from bioclip_lite_tf.evaluate import metrics as eval_metrics
from bioclip_lite_tf.export import plain_graph as export_graph
from bioclip_lite_tf.export import tflite as export_tflite
from bioclip_lite_tf.export import tfjs as export_tfjs
from bioclip_lite_tf.testing import export_fixtures as export_testing


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
  root = os.path.join(str(tmp_path_factory.getbasetemp()), "bioclip_export_workspace")
  paths = export_testing.exported_workspace(root)
  qat = export.load_qat_model(paths["train"])
  plain = export_graph.plain_inference_model(qat)
  dataset_dir = eval_data.find_dataset_dir(paths["tfds"])
  photos = np.concatenate([p for split in ("validation", "train") for p, _ in
                           eval_data.iter_examples(dataset_dir, split, 32)])
  bank = device_label_bank.read_device_label_bank(os.path.join(paths["export"], "labels"))
  reference = plain.model.predict(photos, batch_size=64, verbose=0)
  return dict(paths=paths, qat=qat, plain=plain, photos=photos, bank=bank, reference=reference)


@pytest.mark.skipif(eval_latency.node_available() is not None,
                    reason=str(eval_latency.node_available()))
@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_tfjs_matches_keras(ws, backend):
  out = eval_latency.tfjs_embed(os.path.join(ws["paths"]["export"], "tfjs"), ws["photos"],
                                backend)
  p = eval_metrics.parity(ws["reference"], out, ws["bank"].species_embeddings)
  assert p["n"] >= 200
  assert p["cosine_min"] >= 0.99999, p
  assert p["top1_agreement"] >= 0.995, p


def test_tfjs_weights_are_the_qat_weights(ws):
  """Weight-level losslessness: every quantized kernel reaches model.json as uint8 and decodes
  (as tfjs-core decodes it) to the QAT model's fake-quantized values, to float rounding."""
  decoded = export_tfjs.decode_weights(os.path.join(ws["paths"]["export"], "tfjs"))
  with open(os.path.join(ws["paths"]["export"], "tfjs", "model.json")) as f:
    import json
    specs = {w["name"]: w for g in json.load(f)["weightsManifest"] for w in g["weights"]}
  plain_kernels = [w.numpy() for w in ws["plain"].model.weights if "kernel" in w.name]
  assert len(plain_kernels) == len(ws["plain"].quantized_weights)
  for kernel in plain_kernels:
    matches = [n for n, v in decoded.items() if v.shape == kernel.shape and
               np.max(np.abs(v - kernel)) <= 4 * np.spacing(np.float32(np.abs(kernel).max()))]
    assert matches, f"no TF.js weight equals a kernel of shape {kernel.shape}"
    assert any(specs[n].get("quantization", {}).get("dtype") == "uint8" for n in matches)


def test_tflite_int8_agrees_with_keras(ws):
  with open(os.path.join(ws["paths"]["export"], export.TFLITE_PATH), "rb") as f:
    content = f.read()
  interp = export_tflite.interpreter(content)
  ops = interp._get_ops_details()  # pylint: disable=protected-access
  tensors = {t["index"]: t for t in interp.get_tensor_details()}
  kinds = {o["op_name"] for o in ops}
  assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "QUANTIZE"} <= kinds
  for op in ops:  # every compute op runs on int8 tensors, only the L2 norm is float
    if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL",
                         "HARD_SWISH", "MEAN"):
      assert all(tensors[i]["dtype"] == np.int8 for i in op["outputs"]), op
    if op["op_name"] == "L2_NORMALIZATION":
      assert all(tensors[i]["dtype"] == np.float32 for i in op["outputs"]), op
  out = export_tflite.run(content, ws["photos"])
  p = eval_metrics.parity(ws["reference"], out, ws["bank"].species_embeddings)
  assert p["top1_agreement"] >= 0.98, p
  assert p["cosine_min"] > 0.9995, p


def test_tfjs_artifact_is_small(ws):
  tfjs_bytes = export_tfjs.directory_bytes(os.path.join(ws["paths"]["export"], "tfjs"))
  fp32 = 4 * export_graph.count_params(ws["plain"].model)["params"]
  assert tfjs_bytes <= 0.3 * fp32, (tfjs_bytes, fp32)
