"""TF.js graph model with exact uint8 weight storage.

The converter (tensorflowjs.converters.convert_tf_saved_model) writes the graph with float32
weights; `store_grid_weights_as_uint8` then rewrites the weight shards, storing each weight
tensor whose values lie on a <= 256-level affine grid as uint8 with that grid's own
`(scale, min)` in model.json. TF.js dequantizes `q * scale + min` at load.

Why not the converter's own `--quantize_uint8`: it derives the grid from the tensor's min and
max, `scale = (max - min) / 255`. That is the QAT grid only when the tensor uses both end
levels 0 and 255; a tensor that uses, say, levels 3..250 would be moved onto a different grid
(an error up to half a step per weight). Detecting the grid from the values covers both cases,
and it also survives graph rewrites that scale a kernel by a scalar (grappler folds a scalar
input multiply into the first conv). Each tensor stored as uint8 is checked by decoding it the
way tfjs-core does (`Float32Array` of `q * scale + min` in double precision); a tensor that
does not decode to within a few float32 ulps stays float32, so the storage is lossless by
construction.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np

_DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "float16": 2, "int8": 1}
_SHARD_BYTES = 4 * 1024 * 1024  # the converter's default; keeps each fetch small on mobile


def find_uint8_grid(values: np.ndarray) -> Optional[Tuple[float, float, np.ndarray]]:
  """Finds an affine 8-bit grid that holds `values` exactly.

  values: float32 array of any shape. Returns (scale, minimum, q) with q uint8 of the same
  shape such that float32(q * scale + minimum), computed in float64 as tfjs-core does, equals
  `values` to within 4 float32 ulps of the largest magnitude; None when no such grid exists
  (more than 256 distinct values, or values off any common step).
  """
  flat = np.asarray(values, np.float32).reshape(-1)
  if flat.size == 0 or not np.all(np.isfinite(flat)):
    return None
  levels = np.unique(flat).astype(np.float64)
  if levels.size > 256:
    return None
  lo, hi = float(levels[0]), float(levels[-1])
  if levels.size == 1:
    scale = 1.0
    q = np.zeros(flat.shape, np.uint8)
  else:
    step = float(np.diff(levels).min())
    steps = round((hi - lo) / step)
    if steps > 255 or steps < 1:
      return None
    scale = (hi - lo) / steps
    exact = (flat.astype(np.float64) - lo) / scale
    q_float = np.rint(exact)
    if np.max(np.abs(q_float - exact)) > 0.01:
      return None
    q = q_float.astype(np.uint8)
  decoded = (q.astype(np.float64) * scale + lo).astype(np.float32)
  tolerance = 4 * float(np.spacing(np.float32(max(abs(lo), abs(hi), 1e-30))))
  if float(np.max(np.abs(decoded.astype(np.float64) - flat))) > tolerance:
    return None
  return scale, lo, q.reshape(np.shape(values))


def _read_weight_bytes(model_dir: str, manifest: List[dict]) -> List[Tuple[dict, bytes]]:
  """(spec, raw bytes) per weight, in manifest order, from the shard files."""
  out = []
  for group in manifest:
    data = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
    offset = 0
    for spec in group["weights"]:
      if spec.get("dtype") == "string":
        raise ValueError(f"{model_dir}: weight {spec['name']} has dtype string; not supported")
      dtype = spec.get("quantization", {}).get("dtype", spec["dtype"])
      size = int(np.prod(spec["shape"], dtype=np.int64)) * _DTYPE_BYTES[dtype]
      out.append((spec, data[offset:offset + size]))
      offset += size
    if offset != len(data):
      raise ValueError(f"{model_dir}: shards of {group['paths']} hold {len(data)} bytes, the "
                       f"manifest describes {offset}")
  return out


def decode_weights(model_dir: str) -> Dict[str, np.ndarray]:
  """Reads a TF.js graph model's weights as tfjs-core decodes them. name -> array (float32 for
  float weights, dequantized)."""
  with open(os.path.join(model_dir, "model.json")) as f:
    model_json = json.load(f)
  weights = {}
  for spec, raw in _read_weight_bytes(model_dir, model_json["weightsManifest"]):
    quant = spec.get("quantization")
    if quant and quant["dtype"] == "uint8":
      q = np.frombuffer(raw, np.uint8).astype(np.float64)
      value = (q * quant["scale"] + quant["min"]).astype(np.float32)
    elif quant and quant["dtype"] == "float16":
      value = np.frombuffer(raw, np.float16).astype(np.float32)
    else:
      value = np.frombuffer(raw, {"float32": np.float32, "int32": np.int32,
                                  "bool": np.bool_}[spec["dtype"]])
    weights[spec["name"]] = value.reshape(spec["shape"])
  return weights


def compact_model_json(model_json: dict) -> dict:
  """Shrinks model.json without changing the graph; returns the same dict, modified.

  model.json is a sizeable part of a small model's download (about 200 KB for the demo student,
  ~400 bytes per node). Two safe reductions: grappler's bookkeeping attributes (`_grappler_*`,
  never read by TF.js) are dropped, and the prefix every inner node shares
  (`StatefulPartitionedCall/student_core/`) is cut from node and weight names. Input, output
  and signature names are kept; if cutting would make two names equal, or the graph has a
  function library (control flow), names are left alone.
  """
  topology = model_json["modelTopology"]
  nodes = topology["node"]
  for node in nodes:
    attrs = node.get("attr", {})
    for key in [k for k in attrs if k.startswith("_grappler")]:
      del attrs[key]
  if topology.get("library", {}).get("function"):
    return model_json
  protected = {n["name"] for n in nodes if n["op"] == "Placeholder"}
  for side in ("inputs", "outputs"):
    for spec in (model_json.get("signature", {}).get(side) or {}).values():
      protected.add(spec.get("name", "").split(":")[0])
  candidates = [n["name"] for n in nodes if n["name"] not in protected and "/" in n["name"]]
  if not candidates:
    return model_json
  prefix = os.path.commonprefix(candidates)
  prefix = prefix[:prefix.rfind("/") + 1]
  if not prefix:
    return model_json
  rename = {n["name"]: (n["name"][len(prefix):] if n["name"] in candidates else n["name"])
            for n in nodes}
  if len(set(rename.values())) != len(rename):
    return model_json

  def renamed_input(ref: str) -> str:
    control = ref.startswith("^")
    base = ref[1:] if control else ref
    name, sep, port = base.partition(":")
    return ("^" if control else "") + rename.get(name, name) + sep + port

  for node in nodes:
    node["name"] = rename[node["name"]]
    if "input" in node:
      node["input"] = [renamed_input(ref) for ref in node["input"]]
  for group in model_json.get("weightsManifest", []):
    for spec in group["weights"]:
      spec["name"] = rename.get(spec["name"], spec["name"])
  return model_json


def _merge_duplicate_scalars(model_json: dict, entries):
  """Keeps one Const node per distinct small constant (<= 4 values: the 3.0, 6.0, 1/6 of every
  hard-swish, ...) and points the other nodes' inputs at it. Each Const node costs ~300 bytes
  of model.json; the values are bit-identical, so the graph computes the same thing."""
  nodes = model_json["modelTopology"]["node"]
  const_names = {n["name"] for n in nodes if n["op"] == "Const"}
  first_of, alias = {}, {}
  kept = []
  for spec, raw in entries:
    small = int(np.prod(spec["shape"], dtype=np.int64)) <= 4
    if small and spec["name"] in const_names and "quantization" not in spec:
      key = (spec["dtype"], tuple(spec["shape"]), raw)
      if key in first_of:
        alias[spec["name"]] = first_of[key]
        continue
      first_of[key] = spec["name"]
    kept.append((spec, raw))
  if not alias:
    return entries

  def rewire(ref: str) -> str:
    control = ref.startswith("^")
    base = ref[1:] if control else ref
    name, sep, port = base.partition(":")
    return ("^" if control else "") + alias.get(name, name) + sep + port

  model_json["modelTopology"]["node"] = [n for n in nodes if n["name"] not in alias]
  for node in model_json["modelTopology"]["node"]:
    if "input" in node:
      node["input"] = [rewire(ref) for ref in node["input"]]
  return kept


def _node_ref(ref: str) -> str:
  return ref.lstrip("^").partition(":")[0]


def clamps_to_relu6(model_json: dict, entries):
  """Rewrites every `Minimum(Maximum(z, 0), 6)` into one `Relu6(z)`; returns the kept entries.

  The export writes hard-swish / hard-sigmoid's clamp as Maximum + Minimum so that grappler
  cannot fuse it into a `_FusedHardSwish` the wasm backend rejects (plain_graph.ExportHardSwish);
  in the converted graph the pair is two broadcast kernels per activation, about a quarter of
  the default student's TF.js wasm time (bench/results/tfjs_kernel_profile.json). Relu6 is one
  unary kernel on every TF.js backend and computes the same clamp bit for bit
  (min(max(z, 0), 6) for every finite z). Only pairs whose constants are exactly 0 and 6 and
  whose Maximum feeds nothing else are rewritten; constants left unused are dropped.
  """
  nodes = model_json["modelTopology"]["node"]
  by_name = {n["name"]: n for n in nodes}
  scalars = {}
  for spec, raw in entries:
    if spec["dtype"] == "float32" and "quantization" not in spec and len(raw) == 4:
      scalars[spec["name"]] = float(np.frombuffer(raw, np.float32)[0])
  consumers: Dict[str, int] = {}
  for n in nodes:
    for ref in n.get("input", []):
      consumers[_node_ref(ref)] = consumers.get(_node_ref(ref), 0) + 1
  for sig in (model_json.get("signature", {}).get("outputs") or {}).values():
    consumers[_node_ref(sig.get("name", ""))] = consumers.get(_node_ref(sig.get("name", "")), 0) + 1

  def split(node, value):
    """(the non-constant input, True) when one input is the scalar constant `value`."""
    refs = [r for r in node.get("input", []) if not r.startswith("^")]
    if len(refs) != 2:
      return None
    for i in (0, 1):
      if scalars.get(_node_ref(refs[i])) == value and _node_ref(refs[1 - i]) not in scalars:
        return refs[1 - i]
    return None

  removed = set()
  for node in nodes:
    if node["op"] != "Minimum":
      continue
    inner = split(node, 6.0)
    maximum = by_name.get(_node_ref(inner)) if inner else None
    if (maximum is None or maximum["op"] != "Maximum" or consumers.get(maximum["name"]) != 1
        or ":" in inner):
      continue
    z = split(maximum, 0.0)
    if z is None:
      continue
    node["op"] = "Relu6"
    node["input"] = [z]
    node["attr"] = {k: v for k, v in node.get("attr", {}).items() if k == "T"}
    removed.add(maximum["name"])
  if not removed:
    return entries
  nodes = [n for n in nodes if n["name"] not in removed]
  used = {_node_ref(ref) for n in nodes for ref in n.get("input", [])}
  unused = {n["name"] for n in nodes if n["op"] == "Const" and n["name"] not in used}
  model_json["modelTopology"]["node"] = [n for n in nodes if n["name"] not in unused]
  return [(spec, raw) for spec, raw in entries if spec["name"] not in unused]


def store_grid_weights_as_uint8(model_dir: str, shard_bytes: int = _SHARD_BYTES) -> dict:
  """Rewrites a float32 TF.js graph model in place, storing on-grid weights as uint8.

  On the way, duplicate scalar constants are merged and clamp pairs become Relu6
  (clamps_to_relu6); both leave every value the graph computes unchanged.

  Returns statistics: counts and bytes of uint8 and float32 weights, and the names that stayed
  float32. The new shards and model.json are written next to the old ones and swapped in with
  renames (model.json last), so a crash leaves either the old or the new model complete.
  """
  json_path = os.path.join(model_dir, "model.json")
  with open(json_path) as f:
    model_json = json.load(f)
  entries = _read_weight_bytes(model_dir, model_json["weightsManifest"])
  old_paths = [p for g in model_json["weightsManifest"] for p in g["paths"]]
  entries = _merge_duplicate_scalars(model_json, entries)
  entries = clamps_to_relu6(model_json, entries)

  specs, blobs = [], []
  stats = {"uint8_tensors": 0, "uint8_values": 0, "float32_tensors": 0, "float32_values": 0,
           "other_tensors": 0, "float32_names": []}
  for spec, raw in entries:
    spec = dict(spec)
    if spec["dtype"] == "float32" and "quantization" not in spec:
      values = np.frombuffer(raw, np.float32).reshape(spec["shape"])
      grid = find_uint8_grid(values) if values.size > 1 else None
      if grid is not None:
        scale, minimum, q = grid
        spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": minimum}
        raw = q.astype(np.uint8).tobytes()
        stats["uint8_tensors"] += 1
        stats["uint8_values"] += int(values.size)
      else:
        stats["float32_tensors"] += 1
        stats["float32_values"] += int(values.size)
        stats["float32_names"].append(spec["name"])
    else:
      stats["other_tensors"] += 1
    specs.append(spec)
    blobs.append(raw)

  data = b"".join(blobs)
  num_shards = max(1, math.ceil(len(data) / shard_bytes))
  paths = [f"group1-shard{i + 1}of{num_shards}.bin" for i in range(num_shards)]
  staging = tempfile.mkdtemp(prefix=".uint8-", dir=model_dir)
  try:
    for i, path in enumerate(paths):
      with open(os.path.join(staging, path), "wb") as f:
        f.write(data[i * shard_bytes:(i + 1) * shard_bytes])
    model_json["weightsManifest"] = [{"paths": paths, "weights": specs}]
    compact_model_json(model_json)
    with open(os.path.join(staging, "model.json"), "w") as f:
      json.dump(model_json, f, separators=(",", ":"))
    for path in old_paths:
      if path not in paths:
        os.remove(os.path.join(model_dir, path))
    for path in paths + ["model.json"]:
      os.replace(os.path.join(staging, path), os.path.join(model_dir, path))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  stats["weight_bytes"] = len(data)
  return stats


# Activations every TF.js backend can fuse into a conv / matmul (tfjs-backend-wasm 4.22's
# FusableActivation; cpu and webgl support a superset).
PORTABLE_FUSED_ACTIVATIONS = {"Relu", "Relu6", "Prelu", "LeakyRelu", "Sigmoid", "Elu"}


def check_portable_ops(model_dir: str) -> None:
  """Raises ValueError naming any fused op the TF.js wasm backend cannot run."""
  import base64
  with open(os.path.join(model_dir, "model.json")) as f:
    model_json = json.load(f)
  nodes = model_json["modelTopology"]["node"]
  shapes = {w["name"]: w["shape"] for g in model_json["weightsManifest"] for w in g["weights"]}
  bad = []
  for node in nodes:
    fused = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    # fused_ops is [extra op (BiasAdd, or NoOp when there is no bias), activation...]
    ops = [base64.b64decode(x).decode() for x in fused]
    for op in ops[1:]:
      if op not in PORTABLE_FUSED_ACTIVATIONS:
        bad.append(f"{node['name']} ({node['op']} + {op})")
    # A scalar "bias" appears when a conv without bias feeds `x + c` (e.g. hard-swish's + 3
    # after a zero bias was folded away); cpu accepts it, wasm does not ("rank-1 bias").
    if ops and ops[0] == "BiasAdd" and len(node.get("input", [])) > 2:
      bias = node["input"][2].split(":")[0]
      if bias in shapes and len(shapes[bias]) != 1:
        bad.append(f"{node['name']} ({node['op']} with a rank-{len(shapes[bias])} bias)")
  if bad:
    raise ValueError(f"{model_dir}/model.json has fused ops the TF.js wasm backend cannot "
                     f"run: {bad[:5]}{' ...' if len(bad) > 5 else ''}")


def convert_saved_model(saved_model_dir: str, out_dir: str,
                        signature: str = "serving_default") -> dict:
  """SavedModel -> TF.js graph model in out_dir with exact uint8 weight storage.

  The conversion runs into a sibling temporary directory that replaces out_dir only when
  complete. Returns the statistics of `store_grid_weights_as_uint8`.
  """
  # tensorflowjs imports tensorflow_decision_forests, whose welcome banner imports IPython
  # whenever stdout is not a terminal (pytest, a pipeline) and IPython is not installed.
  os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
  from tensorflowjs.converters import tf_saved_model_conversion_v2  # heavy; import on use

  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".tfjs-", dir=parent)
  try:
    tf_saved_model_conversion_v2.convert_tf_saved_model(
        saved_model_dir, staging, signature_def=signature, saved_model_tags="serve",
        strip_debug_ops=True)
    check_portable_ops(staging)
    stats = store_grid_weights_as_uint8(staging)
    if os.path.exists(out_dir):
      shutil.rmtree(out_dir)
    os.replace(staging, out_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return stats


def directory_bytes(path: str) -> int:
  """Total bytes of the files under path."""
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total
