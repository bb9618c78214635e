"""Every measured figure in a README.md or bench/RESULTS.md comes from bench/results/*.json.

1. Every `<!-- figures:ID -->` block is what `python -m bench.figures` renders from the files
   now (a hand-edited number, or a re-run bench without `make figures`, fails).
2. Every number inside a block is found in those files (a renderer that types a number fails).
3. Outside blocks, a measured-looking number (ms, photos/s, x, MB, agreement ...) fails unless
   tests/readme_figures_allowed.txt lists it with a reason.
"""
from __future__ import annotations

import json
import math
import os
import re

import pytest

from bench import figures

REPO = figures.REPO
ALLOWED = os.path.join(os.path.dirname(__file__), "readme_figures_allowed.txt")
NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])-?\d+(?:\.\d+)?"
                    r"(?:e-?\d+)?")
# A number with a unit of time, speed, size or ratio, or an agreement/accuracy/cosine value.
MEASURED = re.compile(
    r"(?<![\w.-])~?\d[\d,]*(?:\.\d+)?(?:x(?![\w])|×|\s?(?:ms|photos/s|examples/s|steps/s|fps|MB|KB|kB|GB|"
    r"MiB|KiB|GiB|min(?![\w])|s(?= |\)|,|\.|$)))"
    r"|(?:agreement|accuracy|cosine|top-1|top-5)[^.|\n]{0,40}?(?<![\w.])[01]\.\d{2,}",
    re.IGNORECASE)


def _source_numbers(results_dir: str) -> list:
  """Every number in the files: JSON values, and numbers inside keys and strings."""
  values = []

  def walk(node):
    if isinstance(node, dict):
      for k, v in node.items():
        walk(k)
        walk(v)
    elif isinstance(node, list):
      for v in node:
        walk(v)
    elif isinstance(node, bool):
      return
    elif isinstance(node, (int, float)):
      values.append(float(node))
    elif isinstance(node, str):
      values.extend(float(m) for m in re.findall(r"\d+(?:\.\d+)?", node))

  for name in sorted(os.listdir(results_dir)):
    if name.endswith(".json"):
      with open(os.path.join(results_dir, name)) as f:
        walk(json.load(f))
  return values


def _decimals(token: str) -> int:
  token = token.replace(",", "")
  if "e" in token.lower():
    mantissa, exp = token.lower().split("e")
    return max(0, len(mantissa.split(".")[1]) if "." in mantissa else 0) - int(exp)
  return len(token.split(".")[1]) if "." in token else 0


# How a file's value may be shown: as is, in percent, bytes as kB/MB, ms as s, seconds as
# minutes + seconds (the demo timing table).
SCALES = (1.0, 100.0, 1e-3, 1e-6, 1 / 60.0)


def found(token: str, values, seconds: bool = False) -> bool:
  """True if some file value, shown at the token's precision (rounded or cut), is the token."""
  shown = float(token.replace(",", ""))
  places = _decimals(token)
  half = 0.5 * 10 ** (-places)
  for v in values:
    for scale in SCALES:
      x = abs(v * scale)
      if abs(x - abs(shown)) <= half * (1 + 1e-9) or (x >= abs(shown) and x - abs(shown) < 2 * half):
        return True
      if seconds and scale == 1.0 and abs(x % 60 - shown) <= half:  # "2 min 39 s": the 39
        return True
  return False


def _files():
  return figures.figure_files(REPO)


def _read(rel):
  with open(os.path.join(REPO, rel)) as f:
    return f.read()


def test_there_are_blocks_and_every_id_has_a_renderer():
  ids = [b[0] for rel in _files() for b in figures.blocks(_read(rel), rel)]
  # The tables issue 13 names: root README, bioclip_lite_tf, tfds_treeoflife, react-bio-clip.
  for wanted in ("demo-report", "demo-timing", "bench-speedups", "train-agreement",
                 "tfds-throughput", "rbc-resize", "rbc-webgl", "rbc-node-latency",
                 "rbc-demo-wasm", "results-headline", "json:latency"):
    assert wanted in ids, f"no figures:{wanted} block in any README or bench/RESULTS.md"
  for figure_id in ids:
    figures.renderer_for(figure_id)  # raises for an unknown ID


def test_blocks_are_what_the_files_say_now():
  src = figures.Sources()
  stale = []
  for rel in _files():
    text = _read(rel)
    missing = []
    if figures.render_text(text, src, rel, warn=missing.append) != text:
      stale.append(rel)
    assert not missing, f"figures blocks whose source JSON is missing: {missing}"
  assert not stale, f"{stale}: figures blocks differ from bench/results; run `make figures`"


def test_every_number_in_a_block_is_in_the_files():
  values = _source_numbers(figures.RESULTS_DIR)
  bad = []
  for rel in _files():
    lines = _read(rel).split("\n")
    for figure_id, b, e in figures.blocks("\n".join(lines), rel):
      for i in range(b + 1, e):
        # `code` spans name keys and flags (`latency_ms.224`, `--cpu_devices=2`), not figures.
        line = re.sub(r"`[^`]*`", "", lines[i])
        for token in NUMBER.findall(line):
          if not found(token, values, seconds=True):
            bad.append(f"{rel}:{i + 1} figures:{figure_id}: {token!r} is in no "
                       f"bench/results/*.json")
  assert not bad, "\n".join(bad)


def _allowed():
  """(file, snippet, reason) per line `path | snippet | reason` of the allow list."""
  out = []
  with open(ALLOWED) as f:
    for n, line in enumerate(f, 1):
      if not line.strip() or line.startswith("#"):
        continue
      parts = [p.strip() for p in line.rstrip("\n").split(" | ")]
      assert len(parts) == 3 and all(parts), f"{ALLOWED}:{n}: want `path | snippet | reason`"
      out.append(tuple(parts))
  return out


def measured_outside_blocks(rel: str, text: str):
  """(line number, the match, the line) of measured-looking numbers outside figures blocks
  and outside code (fenced blocks and `spans`)."""
  inside = set()
  for _, b, e in figures.blocks(text, rel):
    inside.update(range(b, e + 1))
  # react-bio-clip's Expo support matrix is written from bench/results/expo_bundles.json by
  # example/scripts/build_bundles.js, which `make test-example` checks (--check_readme).
  lines = text.split("\n")
  for b, line in enumerate(lines):
    if line.startswith("<!-- support-matrix:begin"):
      e = next(j for j in range(b, len(lines)) if lines[j].startswith("<!-- support-matrix:end"))
      inside.update(range(b, e + 1))
  out, fenced = [], False
  for i, line in enumerate(text.split("\n")):
    if line.lstrip().startswith("```"):
      fenced = not fenced
      continue
    if fenced or i in inside:
      continue
    bare = re.sub(r"`[^`]*`", "", line)
    for m in MEASURED.finditer(bare):
      out.append((i + 1, m.group(0), line))
  return out


def test_no_measured_number_outside_blocks_unless_allowed():
  allowed = _allowed()
  used = set()
  bad = []
  for rel in _files():
    for n, match, line in measured_outside_blocks(rel, _read(rel)):
      hits = [a for a in allowed if a[0] == rel and a[1] in line and match in a[1]]
      if hits:
        used.update(hits)
      else:
        bad.append(f"{rel}:{n}: {match!r} in: {line.strip()}")
  assert not bad, ("measured-looking numbers outside `<!-- figures:ID -->` blocks (generate "
                   "them with bench/figures.py, or list them in "
                   "tests/readme_figures_allowed.txt with a reason):\n" + "\n".join(bad))
  stale = [a for a in allowed if a not in used]
  assert not stale, f"allow-list entries that match nothing any more: {stale}"


def test_the_checks_catch_a_hand_typed_number(tmp_path):
  """The three checks fail on a README that holds a typed number."""
  src = figures.Sources()
  text = ("# x\n\n<!-- figures:tfds-throughput -->\n<!-- /figures:tfds-throughput -->\n")
  rendered = figures.render_text(text, src, "t.md")
  assert "photos/s" in rendered and rendered != text
  tfds = src.load("tfds.json")
  real = f"{tfds['read']['photos_per_s']:.0f}"
  assert real in rendered
  # 1. an edited block is stale
  edited = rendered.replace(f"| {real} |", "| 553 |")
  assert edited != rendered
  assert figures.render_text(edited, src, "t.md") == rendered
  # 2. a number in no file is not found (553 photos/s was README's old, typed figure)
  values = _source_numbers(figures.RESULTS_DIR)
  assert found(real, values)
  assert not found("553.7", values) and not found("0.6001", values)
  # 3. a typed figure outside a block is flagged
  hits = measured_outside_blocks("t.md", "It reads 935 photos/s, 18.9x the step.\n" + rendered)
  assert [h[1] for h in hits] == ["935 photos/s", "18.9x"]


def test_unknown_or_broken_markers_are_refused():
  with pytest.raises(figures.FiguresError, match="no renderer for figure ID 'nope'"):
    figures.render_text("<!-- figures:nope -->\n<!-- /figures:nope -->\n", figures.Sources(),
                        "t.md")
  with pytest.raises(figures.FiguresError, match=r"t.md:1: figures:rbc-webgl has no"):
    figures.blocks("<!-- figures:rbc-webgl -->\ntext\n", "t.md")
  with pytest.raises(figures.FiguresError, match="closes no open block"):
    figures.blocks("<!-- /figures:rbc-webgl -->\n", "t.md")


def test_registry_is_extensible_and_json_blocks_need_no_code(tmp_path):
  (tmp_path / "scale.json").write_text(json.dumps({"rows": {"n": 1000000, "ms": 12.5}}))
  src = figures.Sources(str(tmp_path))
  out = figures.render_text("<!-- figures:json:scale -->\n<!-- /figures:json:scale -->", src, "t")
  assert "| rows.n | 1000000 |" in out and "| rows.ms | 12.5 |" in out
  missing = figures.render_text("<!-- figures:json:absent -->\n<!-- /figures:json:absent -->",
                                src, "t")
  assert "does not exist" in missing
  assert math.isclose(float(figures.sig(0.00019836, 2)), 0.0002)
