"""`make figures`: every measured table in the READMEs and bench/RESULTS.md, from files.

A generated table sits between two marker lines (docs: bench/README.md, "Figures"):

    <!-- figures:ID -->
    ...replaced wholesale by RENDERERS[ID](sources)...
    <!-- /figures:ID -->

The sources are the JSON files in bench/results/ (committed) and the demo's snapshot,
bench/results/demo.json, which this command refreshes from runs/demo/report/report.json and
runs/demo/timings.json when a demo has run here. Nothing else: no number in a block is typed.

    python -m bench.figures            snapshot the demo (if any), rewrite every block
    python -m bench.figures --check    exit 1, naming the blocks, when a file differs

To add a table: write `def render_x(src: Sources) -> str`, register it with `@figure("x")`,
and put the two marker lines where it belongs. `json:NAME` needs no code: it is the flattened
key/value table of bench/results/NAME.json.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import results_io  # noqa: E402
from formats import atomic  # noqa: E402
from formats.ranks import RANKS  # noqa: E402

RESULTS_DIR = os.path.join(REPO, "bench", "results")
DEMO_SNAPSHOT = "demo.json"
BEGIN = re.compile(r"^<!-- figures:(?P<id>[A-Za-z0-9_.:-]+) -->\s*$")
END = "<!-- /figures:{id} -->"
# species first: the tables lead with the rank users read first
RANKS_DEEPEST_FIRST = tuple(reversed(RANKS))


class FiguresError(Exception):
  """A marker, ID or source file the generator cannot use; the message names which."""


class MissingSource(FiguresError):
  """A renderer's JSON file does not exist (yet); the block is left as it is, with a warning."""


class Sources:
  """The JSON files a renderer may read: bench/results/<name>, loaded once each."""

  def __init__(self, results_dir: str = RESULTS_DIR):
    self.results_dir = results_dir
    self._cache: Dict[str, dict] = {}
    self.used: List[str] = []

  def load(self, name: str) -> dict:
    if name not in self._cache:
      path = os.path.join(self.results_dir, name)
      if not os.path.exists(path):
        raise MissingSource(f"{os.path.relpath(path, REPO)} does not exist")
      with open(path) as f:
        try:
          self._cache[name] = json.load(f)
        except json.JSONDecodeError as e:
          raise FiguresError(f"{path}: not JSON ({e})") from e
    if name not in self.used:
      self.used.append(name)
    return self._cache[name]


Renderer = Callable[[Sources], str]
RENDERERS: Dict[str, Renderer] = {}


def figure(figure_id: str):
  """Registers a renderer under the ID its marker lines name."""
  def register(fn: Renderer) -> Renderer:
    if figure_id in RENDERERS:
      raise ValueError(f"figure {figure_id!r} registered twice")
    RENDERERS[figure_id] = fn
    return fn
  return register


def renderer_for(figure_id: str) -> Renderer:
  if figure_id in RENDERERS:
    return RENDERERS[figure_id]
  if figure_id.startswith("json:"):
    return lambda src: json_table(src, figure_id[len("json:"):] + ".json")
  raise FiguresError(f"no renderer for figure ID {figure_id!r}; registered: "
                     f"{sorted(RENDERERS)} and json:NAME")


# ---------------------------------------------------------------- number formats

def sig(v, digits: int = 2) -> str:
  """`digits` significant digits, no exponent (0.000021, 1.6, 40, 1527)."""
  if v is None:
    return "n/a"
  v = float(v)
  if v == 0:
    return "0"
  import math
  places = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
  text = f"{v:.{places}f}"
  return text.rstrip("0").rstrip(".") if "." in text else text


def fixed(v, places: int) -> str:
  return "n/a" if v is None else f"{float(v):.{places}f}"


def _sci(v) -> str:
  return "n/a" if v is None else f"{float(v):.1e}"


def mb(n_bytes) -> str:
  return "n/a" if n_bytes is None else f"{n_bytes / 1e6:.2f} MB"


def minutes(seconds) -> str:
  if seconds is None:
    return "n/a"
  s = int(round(float(seconds)))
  return f"{s // 60} min {s % 60} s"


def get(d, path: str, default=None):
  for key in path.split("."):
    if not isinstance(d, dict) or key not in d:
      return default
    d = d[key]
  return d


def _cell(v) -> str:
  if isinstance(v, float):
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"
  return str(v).replace("|", "\\|").replace("\n", " ")


def json_table(src: Sources, name: str) -> str:
  """bench/results/NAME as a key | value table (lists of scalars are skipped)."""
  try:
    data = src.load(name)
  except MissingSource:
    return f"Not produced: `bench/results/{name}` does not exist (its bench did not run)."
  rows = ["| key | value |", "|---|---|"]
  rows += [f"| {k} | {_cell(v)} |" for k, v in results_io.flatten(data)]
  return "\n".join(rows)


# ---------------------------------------------------------------- bench/RESULTS.md

@figure("results-machine")
def render_results_machine(src: Sources) -> str:
  m = src.load("summary.json").get("machine", {})
  rows = ["| what | value |", "|---|---|"]
  rows += [f"| {k} | {_cell(v)} |" for k, v in m.items()]
  return "\n".join(rows)


@figure("results-headline")
def render_results_headline(src: Sources) -> str:
  s = src.load("summary.json")
  rows = ["| ratio | value | goal |", "|---|---|---|"]
  rows += [f"| {k} | {_cell(v)} | {goal} |" for k, (v, goal) in s.get("headline", {}).items()]
  runs = s.get("runs", {})
  if runs:
    rows += ["", "| benchmark | last `make bench` run |", "|---|---|"]
    rows += [f"| {k} | {v} |" for k, v in runs.items()]
  return "\n".join(rows)


# ---------------------------------------------------------------- root README.md (the demo)

def _demo(src: Sources) -> dict:
  return src.load(DEMO_SNAPSHOT)


@figure("demo-compression")
def render_demo_compression(src: Sources) -> str:
  """Root README: what each compression step costs, and the hierarchical metrics, of the demo."""
  r = _demo(src)["report"]
  steps = r.get("compression_steps", {})
  rows = ["| step | species top-1 agreement with the teacher | top-5 | embedding cosine mean | p5 |",
          "|---|---|---|---|---|"]
  for name in ("float", "pruned", "qat", "tfjs", "tflite_int8"):
    st = steps.get(name) or {}
    rows.append(f"| {name} | {fixed(st.get('species_top1_agreement'), 3)} | "
                f"{fixed(st.get('species_top5_agreement'), 3)} | "
                f"{fixed(st.get('embedding_cosine_mean'), 4)} | "
                f"{fixed(st.get('embedding_cosine_p5'), 4)} |")
  h = r.get("hierarchy", {})
  curve = r.get("abstention", {}).get("curve") or []
  rows += ["", f"Against the true labels (exported student): mistake severity "
           f"{fixed(h.get('mistake_severity'), 2)} over {h.get('mistakes')} top-1 mistakes, "
           f"hierarchical distance@1 {fixed(h.get('hdist_at_1'), 2)}, @5 "
           f"{fixed(h.get('hdist_at_5'), 2)} (LCA height, 0 = same species .. 7 = other kingdom); "
           f"`best` answers at most {fixed(max([c.get('answered_share') or 0 for c in curve] or [0]), 3)} "
           "of photos at any threshold of `abstention.curve` (it abstains below the species "
           "similarity floor)."]
  return "\n".join(rows)


@figure("demo-report")
def render_demo_report(src: Sources) -> str:
  r = _demo(src)["report"]
  tj, tl = get(r, "parity.tfjs_vs_keras", {}), get(r, "parity.tflite_vs_keras", {})
  top1 = get(r, "accuracy.student_vs_teacher.top1", {})
  lat = get(r, "latency_ms", {})
  m = r.get("model", {})
  rows = [
      f"Its report ({get(r, 'accuracy.n')} validation photos, `bench/results/demo.json`):", "",
      "| | |", "|---|---|",
      f"| TF.js (uint8 weights) vs Keras QAT: cosine min, species top-1 agreement | "
      f"{fixed(tj.get('cosine_min'), 7)} (max abs diff {_sci(tj.get('max_abs_diff'))}), "
      f"{fixed(tj.get('top1_agreement'), 3)} |",
      f"| TFLite int8 vs Keras QAT: species top-1 agreement | {fixed(tl.get('top1_agreement'), 3)} "
      f"(cosine min {fixed(tl.get('cosine_min'), 4)}) |",
      f"| sparsity; Keras fp32 / TF.js / TFLite bytes | {fixed(m.get('sparsity'), 3)}; "
      f"{mb(m.get('keras_fp32_bytes'))} / {mb(m.get('tfjs_bytes'))} / {mb(m.get('tflite_bytes'))} |",
      f"| student vs teacher top-1: {', '.join(RANKS_DEEPEST_FIRST)} | "
      f"{', '.join(fixed(top1.get(k), 3) for k in RANKS_DEEPEST_FIRST)} |",
      "| latency at 224 per photo: teacher torch / Keras / TFLite / TF.js wasm | "
      + " / ".join(sig(get(lat, f"{rt}.224"), 3) for rt in
                   ("teacher_torch_cpu", "keras_cpu", "tflite_xnnpack", "tfjs_wasm_node"))
      + " ms |",
  ]
  return "\n".join(rows)


@figure("demo-timing")
def render_demo_timing(src: Sources) -> str:
  t = _demo(src).get("timings", {})
  stages = t.get("stages", {})
  if not stages:
    return "(no stage timings in `bench/results/demo.json`)"
  rows = ["| stage | wall | CPU (user + sys) | idle-machine estimate (CPU / "
          f"{t.get('cores_for_estimate', 2)} cores) |", "|---|---|---|---|"]
  order = ["setup", "demo_data", "teacher_cache", "tfds_build", "train", "export", "evaluate"]
  for name, s in sorted(stages.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order
                                                        else len(order), kv[0])):
    rows.append(f"| {name} | {minutes(s.get('wall_s'))} | {minutes(s.get('cpu_s'))} | "
                f"{minutes(s.get('idle_wall_estimate_s'))} |")
  tot = dict(t.get("total", {}))
  for key in ("wall_s", "cpu_s", "idle_wall_estimate_s"):
    values = [s.get(key) for s in stages.values()]
    if key not in tot and all(v is not None for v in values):
      tot[key] = sum(values)
  rows.append(f"| **all** | {minutes(tot.get('wall_s'))} | {minutes(tot.get('cpu_s'))} | "
              f"{minutes(tot.get('idle_wall_estimate_s'))} |")
  if "setup" not in stages:
    rows += ["", "(This run did not go through `make demo`'s set-up, so it has no `setup` row.)"]
  load = t.get("load_average_1m_at_end")
  if load is not None:
    rows += ["", f"Load average at the end of the run: {load} on {t.get('cpu_count')} cores; the "
             "idle estimate assumes both cores busy all the time, so it is a lower bound."]
  return "\n".join(rows)


@figure("bench-speedups")
def render_bench_speedups(src: Sources) -> str:
  lat = src.load("latency.json")
  by = get(lat, "latency.speedup_vs_teacher_224_by_runtime", {})
  return (f"`make bench` (`bench/results/latency.json`): the shipped student "
          f"({get(lat, 'student.name')} {get(lat, 'student.alpha')}, random weights) at 224 is "
          f"{sig(by.get('tfjs_wasm_node'), 3)}x (TF.js wasm), {sig(by.get('keras_cpu'), 3)}x "
          f"(Keras) and {sig(by.get('tflite_xnnpack_1t'), 3)}x (TFLite, 1 thread) faster than the "
          f"teacher's image tower, and its TF.js artifact is "
          f"{sig(get(lat, 'sizes.size_ratio_teacher_over_tfjs'), 3)}x smaller than the tower's "
          f"{mb(get(lat, 'teacher.fp32_bytes'))} of fp32 weights. With the 454k-species int8 "
          f"device bank ({mb(get(lat, 'label_bank.bytes'))}) an app downloads "
          f"{mb(get(lat, 'sizes.download_bytes_tfjs'))} (TF.js).")


# ---------------------------------------------------------------- bioclip_lite_tf/README.md

@figure("train-agreement")
def render_train_agreement(src: Sources) -> str:
  t = src.load("train.json")
  agree, speed = t.get("demo_agreement", {}), t.get("demo_photos_per_second", {})
  rows = ["| phase | " + " | ".join(RANKS_DEEPEST_FIRST) + " | photos/s |",
          "|---" * (len(RANKS_DEEPEST_FIRST) + 2) + "|"]
  for phase in ("float", "prune", "qat"):
    a = agree.get(phase, {})
    rows.append(f"| {phase} | " + " | ".join(fixed(a.get(k), 3) for k in RANKS_DEEPEST_FIRST) +
                f" | {sig(speed.get(phase), 3)} |")
  return "\n".join(rows)


@figure("train-throughput")
def render_train_throughput(src: Sources) -> str:
  t = src.load("train.json")
  model = t.get("model", {})
  pps = t.get("photos_per_second", {})
  return (f"`bench/train_bench.py` (`bench/results/train.json`: {model.get('name')} alpha "
          f"{model.get('alpha')} at {model.get('resolution')}, batch {t.get('batch_size')}, "
          f"{t.get('steps_per_phase')} steps per phase): "
          + ", ".join(f"{p} {sig(pps.get(p), 3)}" for p in ("float", "prune", "qat"))
          + " photos/s.")


# ---------------------------------------------------------------- tfds_treeoflife/README.md

@figure("tfds-throughput")
def render_tfds_throughput(src: Sources) -> str:
  d = src.load("tfds.json")
  rows = ["| what | photos/s |", "|---|---|",
          f"| build, in process | {sig(get(d, 'build.local.examples_per_s'), 3)} |",
          f"| read: decode + squash-resize 224 bicubic + batch 32 + prefetch | "
          f"{sig(get(d, 'read.photos_per_s'), 3)} |"]
  for step in d.get("train_step", []):
    rows.append(f"| train step, {step['model']}, {step['resolution']}, batch "
                f"{step['batch_size']} | {sig(step['photos_per_s'], 3)} |")
  rows += ["", f"Input / fastest train step = {sig(d.get('input_over_train_step'), 3)}x "
           f"(goal >= 3x), `bench/results/tfds.json`."]
  return "\n".join(rows)


# ---------------------------------------------------------------- react-bio-clip/README.md

_FRAMES = [("portrait_textured", "1080 x 1920 textured"), ("portrait_dense", "1080 x 1920 dense"),
           ("photo12mp_textured", "4032 x 3024 textured"), ("photo12mp_dense", "4032 x 3024 dense")]


def _pair(d) -> str:
  return f"{sig(d['mean'])} / {sig(d['max'])}"


def _worst(items) -> dict:
  return {"mean": max(d["mean"] for d in items), "max": max(d["max"] for d in items)}


@figure("rbc-resize")
def render_rbc_resize(src: Sources) -> str:
  parity, webgl = src.load("resize_parity.json"), src.load("webgl_browser.json")
  gl_resize = webgl.get("resize", {}) or {}
  rows = ["| frame | `squashResize`: cpu, wasm, WebGL float32 (worst) | WebGL half-float | "
          "before: `'area'` (photos) | before: `'bilinear'` (tfjs-react-native camera) | "
          "the teacher's PIL resize (uint8) | `squashResize` ms: wasm / cpu |",
          "|---|---|---|---|---|---|---|"]
  for key, label in _FRAMES:
    frame = parity["frames"][key]
    cpu, wasm = frame["backends"]["cpu"], frame["backends"]["wasm"]
    gl, half = gl_resize.get(f"{key} float32"), gl_resize.get(f"{key} float16")
    ours = _worst([cpu["bicubic"], wasm["bicubic"]] + ([gl] if gl else []))
    rows.append(f"| {label} | {_pair(ours)} | {_pair(half) if half else 'n/a'} | "
                f"{_pair(_worst([cpu['area'], wasm['area']]))} | "
                f"{_pair(_worst([cpu['bilinear'], wasm['bilinear']]))} | "
                f"{_pair(frame['teacher_pil_bicubic_uint8'])} | "
                f"{round(wasm['squash_resize_ms_median'])} / {round(cpu['squash_resize_ms_median'])} |")
  return "\n".join(rows)


@figure("rbc-webgl")
def render_rbc_webgl(src: Sources) -> str:
  webgl = src.load("webgl_browser.json")
  rows = ["| textures | cosine to Keras, min | top-1 species agreement with Keras | "
          "the bare TF.js graph: broken embeddings |", "|---|---|---|---|"]
  for key, label in (("float32", "float32"),
                     ("float16", "half-float (`WEBGL_RENDER_FLOAT32_ENABLED=false`)")):
    m = webgl["modes"][key]
    cos = m["cosine_vs_keras_min"]
    cos_text = f"{cos:.12f}".rstrip("0") if cos > 0.9999999 else f"{cos:.5f}"
    rows.append(f"| {label} | {cos_text} | {fixed(m['top1_agreement_with_keras'], 3)} of "
                f"{webgl['photos']} photos | {m['raw_graph_broken_embeddings']} |")
  return "\n".join(rows)


def _ms(stats: dict) -> str:
  return f"{stats['median']:,.0f} / {stats['p90']:,.0f} ms" if stats["median"] >= 100 else \
      f"{stats['median']:.0f} / {stats['p90']:.0f} ms"


@figure("rbc-node-latency")
def render_rbc_node_latency(src: Sources) -> str:
  d = src.load("tfjs_node.json")
  rows = ["| backend | classify, 224 x 224 photo (median / p90) | classify, 640 x 480 frame | "
          "embed only | scoring only | load | peak `numBytes` in classify |",
          "|---|---|---|---|---|---|---|"]
  for name, b in d["backends"].items():
    rows.append(f"| {name} | {_ms(b['classify_ms']['photo_224x224'])} | "
                f"{_ms(b['classify_ms']['camera_frame_640x480'])} | "
                f"{sig(b['embed_ms']['photo_224x224']['median'], 3)} ms | "
                f"{sig(b['classify_embedding_ms']['median'])} ms | {sig(b['load_ms'] / 1e3)} s | "
                f"{b['peak_bytes'] / 1e6:.1f} MB |")
  e = d.get("export", {})
  rows += ["", f"Export: R = {e.get('resolution')}, D = {e.get('embed_dim')}, "
           f"{e.get('num_species'):,} species, TF.js weights {e.get('tfjs_bytes', 0) / 1e6:.1f} MB; "
           f"resident between calls (wasm): "
           f"{get(d, 'backends.wasm.resident_bytes', 0) / 1e6:.1f} MB of tensors; "
           f"`@tensorflow/tfjs` {d.get('tfjs_version')}, Node {d.get('node')}, {d.get('runs')} "
           f"timed runs after {d.get('warmup')} warm-up runs (`bench/results/tfjs_node.json`)."]
  return "\n".join(rows)


@figure("rbc-demo-wasm")
def render_rbc_demo_wasm(src: Sources) -> str:
  lat = src.load("latency.json")
  ms = get(lat, "latency.ms", {})
  return (f"The shipped student ({get(lat, 'student.config')}: {get(lat, 'student.name')}, alpha "
          f"{get(lat, 'student.alpha')}, random weights) embeds one photo at 224 in about "
          f"{sig(get(ms, 'tfjs_wasm_node.224'))} ms on wasm in Node and "
          f"{sig(get(ms, 'tflite_xnnpack_1t.224'))} ms in TFLite (XNNPACK, 1 thread), measured in "
          f"one run at load average {sig(get(lat, 'machine.load_average_1m'))} on 2 cores (the "
          "repository's `bench/results/latency.json`).")


@figure("latency-shipped")
def render_latency_shipped(src: Sources) -> str:
  """The shipped config and its neighbours: ms per photo and speed-up over the teacher's image
  tower, per runtime, all from one run of bench/latency_bench.py."""
  lat = src.load("latency.json")
  runtimes = [r for r in get(lat, "latency.ms", {}) if r != "teacher_torch_cpu"]
  rows = ["| student | " + " | ".join(f"{r} ms (x teacher)" for r in runtimes) +
          " | TF.js / TFLite |", "|---" * (len(runtimes) + 2) + "|"]
  entries = [(f"{get(lat, 'student.name')} {get(lat, 'student.alpha')} (shipped)", lat)]
  entries += [(name.replace(":", " "), v) for name, v in sorted(lat.get("neighbours", {}).items())]
  for label, e in entries:
    cells = []
    nested = "latency" in e   # the shipped config's figures sit under latency.*, a neighbour's at its top
    for r in runtimes:
      ms = get(e, f"latency.ms.{r}.224" if nested else f"latency_ms.{r}.224")
      speed = get(e, ("latency." if nested else "") + f"speedup_vs_teacher_224_by_runtime.{r}")
      cells.append("n/a" if ms is None else f"{sig(ms, 3)} ({sig(speed, 3)}x)")
    ratio = get(e, "latency.tfjs_over_tflite_224") if nested else get(e, "tfjs_over_tflite.224")
    rows.append(f"| {label} | " + " | ".join(cells) + f" | {sig(ratio, 3)} |")
  rows += ["", f"Teacher image tower ({get(lat, 'teacher.architecture')}, torch CPU, 1 thread): "
           f"{sig(get(lat, 'teacher.latency_ms'), 4)} ms; machine load average "
           f"{sig(get(lat, 'machine.load_average_1m'))} on {get(lat, 'machine.cpus')} cores."]
  return "\n".join(rows)


@figure("label-bank-scale")
def render_label_bank_scale(src: Sources) -> str:
  """react-bio-clip/README.md: the 454k-species device bank in Node (bench/label_bank_scale.js)."""
  b = src.load("label_bank_scale.json")
  rows = ["| figure | value |", "|---|---|",
          f"| species x D, rows | {get(b, 'num_species')} x {get(b, 'embed_dim')}, "
          f"{get(b, 'rows_dtype')} |",
          f"| bank files | {mb(get(b, 'bank_file_bytes'))} |",
          f"| resident (process RSS delta, model included) | {mb(get(b, 'resident_bytes'))} "
          f"({sig(get(b, 'resident_over_file_bytes'), 3)}x the files) |",
          f"| load | {sig(get(b, 'load_ms'), 3)} ms |",
          f"| classify at {get(b, 'num_species')} species ({get(b, 'scoring_path')}) | "
          f"{sig(get(b, 'classify_ms'), 3)} ms |",
          f"| backbone alone | {sig(get(b, 'backbone_ms'), 3)} ms |",
          f"| classify / backbone | {sig(get(b, 'classify_over_backbone'), 3)} (plain JS, as on "
          f"Hermes: {sig(get(b, 'classify_over_backbone_plain_js'), 3)}) |",
          f"| machine load average (1 min) | {sig((get(b, 'machine.loadavg') or [None])[0])} on "
          f"{get(b, 'machine.cpus')} cores |"]
  return "\n".join(rows)


@figure("scale-sim")
def render_scale_sim(src: Sources) -> str:
  """bench/RESULTS.md: the 454k-species scale simulation, before (scale_before.json) and the
  latest run (scale.json), side by side."""
  runs = [("before", src.load("scale_before.json")), ("latest", src.load("scale.json"))]
  stages = ["generate", "teacher_cache", "tfds", "train", "export"]
  head = " | ".join(f"{name} ({str(r.get('git_commit', ''))[:7]})" for name, r in runs)
  rows = [f"| figure | {head} |", "|---|---|---|"]
  def row(label, fn):
    rows.append(f"| {label} | " + " | ".join(fn(r) for _, r in runs) + " |")
  row("species, rows, workers", lambda r: f"{r.get('num_species')}, {r.get('num_rows')}, "
                                          f"{r.get('num_workers')}")
  for stage in stages:
    row(f"{stage}: status, s, peak RSS, examples/s",
        lambda r, st=stage: f"{get(r, 'status.' + st)}, {sig(get(r, 'seconds.' + st), 3)}, "
                            f"{mb(get(r, 'peak_rss_bytes.' + st))}, "
                            f"{sig(get(r, 'examples_per_second.' + st), 3)}")
  row("peak PSS (shared pages once): teacher_cache, tfds, train",
      lambda r: ", ".join(mb(get(r, f"peak_pss_bytes.{st}"))
                          for st in ("teacher_cache", "tfds", "train")))
  row("teacher_cache worker start s: first, others max",
      lambda r: f"{sig(get(r, 'teacher_cache.worker_start_seconds.first'), 3)}, "
                f"{sig(get(r, 'teacher_cache.worker_start_seconds.others_max'), 3)}")
  row("teacher_cache prepare s (no imports): first; others max (own work max, lock wait max)",
      lambda r: (f"{sig(get(r, 'teacher_cache.worker_prepare_seconds.first'), 3)}; "
                 f"{sig(get(r, 'teacher_cache.worker_prepare_seconds.others_max'), 3)} ("
                 f"{sig(get(r, 'teacher_cache.worker_prepare_seconds.others_max_own_work'), 3)}"
                 f", {sig(get(r, 'teacher_cache.worker_prepare_seconds.others_lock_wait_max'), 3)})")
      if get(r, "teacher_cache.worker_prepare_seconds.others_max") is not None else "n/a")
  row("train resume s (step: seconds)",
      lambda r: ", ".join(f"{e.get('step')}: {sig(e.get('seconds'), 3)}"
                          for e in get(r, "train.resume_seconds", []) or []))
  for goal in ("resume_independent_of_step", "later_workers_start", "later_workers_prepare",
               "peak_rss_per_stage"):
    row(f"goal {goal}", lambda r, g=goal: "pass" if get(r, f"goals.{g}.pass") else
        ("fail" if get(r, f"goals.{g}.pass") is False else "n/a"))
  return "\n".join(rows)


# ---------------------------------------------------------------- the demo snapshot

def snapshot_demo(demo_dir: str, results_dir: str = RESULTS_DIR) -> Optional[str]:
  """bench/results/demo.json from a finished demo: its report.json (less machine-specific
  paths) and timings.json (or, from an older demo, the stages' .done wall seconds)."""
  report_path = os.path.join(demo_dir, "report", "report.json")
  if not os.path.exists(report_path):
    return None
  with open(report_path) as f:
    report = json.load(f)
  if isinstance(report.get("export"), dict):
    report["export"].pop("dir", None)
  timings_path = os.path.join(demo_dir, "timings.json")
  if os.path.exists(timings_path):
    with open(timings_path) as f:
      timings = json.load(f)
  else:
    stages = {}
    done = os.path.join(demo_dir, ".done")
    for name in sorted(os.listdir(done)) if os.path.isdir(done) else []:
      with open(os.path.join(done, name)) as f:
        stages[name[:-len(".json")]] = {"wall_s": json.load(f).get("seconds")}
    timings = {"stages": stages, "note": "wall seconds only (a demo older than timings.json)"}
  out = {"what": "the last `make demo` run here: runs/demo/report/report.json and "
                 "runs/demo/timings.json, copied by `make figures`",
         "snapshot_utc": datetime.datetime.utcfromtimestamp(
             os.path.getmtime(report_path)).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "report": report, "timings": timings}
  path = os.path.join(results_dir, DEMO_SNAPSHOT)
  atomic.write_json(path, out, sort_keys=False)
  return path


# ---------------------------------------------------------------- files and blocks

def figure_files(repo: str = REPO) -> List[str]:
  """Every README.md the repository tracks (or holds, outside a git checkout), plus
  bench/RESULTS.md, as paths relative to repo."""
  try:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          "*README.md", "bench/RESULTS.md"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.split()
  except (OSError, subprocess.CalledProcessError):
    out = []
    for root, dirs, files in os.walk(repo):
      dirs[:] = [d for d in dirs if d not in ("node_modules", ".venv", "runs", ".git")]
      out += [os.path.relpath(os.path.join(root, f), repo) for f in files if f == "README.md"]
    out.append(os.path.join("bench", "RESULTS.md"))
  return sorted(p for p in set(out) if "node_modules" not in p and
                os.path.exists(os.path.join(repo, p)))


def blocks(text: str, where: str) -> List[Tuple[str, int, int]]:
  """(id, index of the begin line, index of the end line) per block; lines 0-based."""
  lines = text.split("\n")
  found, i = [], 0
  while i < len(lines):
    m = BEGIN.match(lines[i])
    if m:
      end = END.format(id=m.group("id"))
      for j in range(i + 1, len(lines)):
        if BEGIN.match(lines[j]):
          raise FiguresError(f"{where}:{j + 1}: a figures block starts inside "
                             f"figures:{m.group('id')} (line {i + 1}), which has no `{end}`")
        if lines[j].rstrip() == end:
          found.append((m.group("id"), i, j))
          i = j
          break
      else:
        raise FiguresError(f"{where}:{i + 1}: figures:{m.group('id')} has no `{end}` line")
    elif lines[i].startswith("<!-- /figures:"):
      raise FiguresError(f"{where}:{i + 1}: `{lines[i].rstrip()}` closes no open block")
    i += 1
  return found


def render_text(text: str, src: Sources, where: str, warn=None) -> str:
  """text with every figures block replaced by its renderer's output."""
  lines = text.split("\n")
  for figure_id, b, e in reversed(blocks(text, where)):
    try:
      body = renderer_for(figure_id)(src).strip("\n")
    except MissingSource as err:
      if warn:
        warn(f"{where}:{b + 1}: figures:{figure_id} left as it is: {err}")
      continue
    except (KeyError, TypeError, IndexError) as err:
      raise FiguresError(f"{where}:{b + 1}: figures:{figure_id}: its source JSON lacks "
                         f"{err!r} ({src.used})") from err
    lines[b + 1:e] = body.split("\n")
  return "\n".join(lines)


def run(check: bool, demo_dir: Optional[str], repo: str = REPO, results_dir: str = RESULTS_DIR,
        log=print) -> int:
  if demo_dir and not check:
    snap = snapshot_demo(demo_dir, results_dir)
    if snap:
      log(f"[figures] {os.path.relpath(snap, repo)} <- {demo_dir}")
  src = Sources(results_dir)
  stale = []
  for rel in figure_files(repo):
    path = os.path.join(repo, rel)
    with open(path) as f:
      text = f.read()
    if not blocks(text, rel):
      continue
    wanted = render_text(text, src, rel, warn=lambda m: log(f"[figures] warning: {m}"))
    if wanted != text:
      stale.append(rel)
      if not check:
        atomic.write_text(path, wanted)
        log(f"[figures] rewrote {rel}")
  if check and stale:
    log(f"[figures] out of date with bench/results: {stale}; run `make figures`")
    return 1
  return 0



@figure("label_bank_compact")
def render_label_bank_compact(src: Sources) -> str:
  """bioclip_lite_tf/README.md: bytes against agreement for each compact device bank option."""
  result = src.load("label_bank_scale.json")
  compact, info = result["compact"], result["compact_bench"]
  sb = info["structured_bank"]
  default = info["default"]
  lines = [
      f"Generated bank: {info['num_species']} species x {info['embed_dim']} "
      f"({', '.join(f'{k} {v}' for k, v in sb['counts'].items())}), noise per rank "
      f"{list(sb['noise_scales'].values())}, spectrum decay {sb['spectrum_decay']}; "
      f"{info['num_queries']} queries with image noise {sb['image_noise']}, float32 top-1 vs "
      f"the true species {sb['float32_top1_vs_true_species']:.3f}. Demo bank: "
      f"{info['demo_bank']['num_species']} species, {info['demo_bank']['num_queries']} teacher "
      f"image embeddings (random-weight teacher). \"with names\" adds an estimated "
      f"{info['names_bytes_estimate']:,} bytes of names (leaf names + parent indices).",
      "",
      "| option | bytes at 454k (rows + scales + projection) | with names | top-1 agreement, demo "
      "bank | top-1 agreement, generated 454k bank |",
      "|---|---|---|---|---|"]
  for option, v in sorted(compact.items(), key=lambda kv: -kv[1]["bytes"]):
    mark = " (default)" if option == default["option"] else ""
    lines.append(f"| `{option}`{mark} | {v['bytes'] / 1e6:.1f} MB | "
                 f"{v['bytes_with_names'] / 1e6:.1f} MB | {v['top1_agreement_demo_bank']:.3f} | "
                 f"{v['top1_agreement_structured_bank']:.3f} |")
  lines += ["", f"Choice: `{default['option']}`, {default['why']}"
                f"{'' if default['meets_goal'] else ' (the >= 0.99 goal is NOT met)'}."]
  return "\n".join(lines)

def main(argv: List[str]) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--check", action="store_true", help="exit 1 when a block is stale")
  parser.add_argument("--demo_dir", default=os.path.join(REPO, "runs", "demo"),
                      help="a finished demo to snapshot into bench/results/demo.json ('' none)")
  args = parser.parse_args(argv)
  try:
    return run(args.check, args.demo_dir or None)
  except FiguresError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
