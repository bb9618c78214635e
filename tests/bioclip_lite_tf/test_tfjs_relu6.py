"""The TF.js export's clamp rewrite: Minimum(Maximum(z, 0), 6) -> Relu6(z), lossless."""
import os

import numpy as np
import pytest

from bioclip_lite_tf.keras import keras
from bioclip_lite_tf import export
from bioclip_lite_tf.evaluate import latency as eval_latency
from bioclip_lite_tf.export import plain_graph as export_graph, tfjs as export_tfjs


def _scalar(name, value):
  return ({"name": name, "shape": [], "dtype": "float32"},
          np.float32(value).tobytes())


def _graph(six=6.0, extra_consumer=False):
  nodes = [
      {"name": "x", "op": "Placeholder"},
      {"name": "c0", "op": "Const"}, {"name": "c3", "op": "Const"}, {"name": "c6", "op": "Const"},
      {"name": "add", "op": "AddV2", "input": ["x", "c3"]},
      {"name": "max", "op": "Maximum", "input": ["add", "c0"], "attr": {"T": {"type": "DT_FLOAT"}}},
      {"name": "min", "op": "Minimum", "input": ["c6", "max"], "attr": {"T": {"type": "DT_FLOAT"}}},
      {"name": "y", "op": "Mul", "input": ["x", "min"]},
  ]
  if extra_consumer:
    nodes.append({"name": "y2", "op": "Mul", "input": ["max", "x"]})
  entries = [_scalar("c0", 0.0), _scalar("c3", 3.0), _scalar("c6", six)]
  return {"modelTopology": {"node": nodes}, "signature": {"outputs": {"y": {"name": "y:0"}}}}, entries


def test_clamp_pair_becomes_one_relu6_and_unused_constants_go():
  model_json, entries = _graph()
  kept = export_tfjs.clamps_to_relu6(model_json, entries)
  nodes = {n["name"]: n for n in model_json["modelTopology"]["node"]}
  assert nodes["min"]["op"] == "Relu6" and nodes["min"]["input"] == ["add"]
  assert "max" not in nodes
  assert "c0" not in nodes and "c6" not in nodes and "c3" in nodes
  assert [spec["name"] for spec, _ in kept] == ["c3"]
  assert nodes["y"]["input"] == ["x", "min"]


@pytest.mark.parametrize("six,extra", [(5.5, False), (6.0, True)])
def test_other_clamps_are_left_alone(six, extra):
  model_json, entries = _graph(six, extra)
  before = [dict(n) for n in model_json["modelTopology"]["node"]]
  kept = export_tfjs.clamps_to_relu6(model_json, entries)
  assert model_json["modelTopology"]["node"] == before
  assert kept == entries


@pytest.mark.skipif(eval_latency.node_available() is not None,
                    reason=str(eval_latency.node_available()))
def test_converted_hard_swish_runs_relu6_and_matches_keras(tmp_path):
  inputs = keras.Input((16, 16, 3))
  x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
  x = export_graph.ExportHardSwish()(x)
  x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
  x = export_graph.ExportHardSigmoid()(x)
  outputs = keras.layers.GlobalAveragePooling2D()(x)
  model = keras.Model(inputs, outputs)
  rng = np.random.RandomState(0)
  model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
  out_dir = str(tmp_path / "tfjs")
  eval_latency.convert_tfjs_at(model, out_dir)
  import json
  ops = [n["op"] for n in json.load(open(os.path.join(out_dir, "model.json")))["modelTopology"]["node"]]
  assert ops.count("Relu6") == 2 and "Minimum" not in ops and "Maximum" not in ops, ops
  photos = export.synthetic_photos(4, 16, seed=2)
  want = model.predict(photos, verbose=0)
  for backend in ("wasm", "cpu"):
    got = eval_latency.tfjs_embed(out_dir, photos, backend)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
