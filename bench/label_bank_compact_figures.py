"""Writes the compact-bank table of bioclip_lite_tf/README.md from bench/results/label_bank_scale.json.

  python -m bench.label_bank_compact_figures [--check]

The table sits between `<!-- figures:label_bank_compact -->` and
`<!-- /figures:label_bank_compact -->` and is replaced wholesale. --check: exit 1 when the
README differs from what the JSON gives (nothing written).
"""
from __future__ import annotations

import argparse
import os
import sys

from formats import atomic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, "bench", "results", "label_bank_scale.json")
README = os.path.join(REPO, "bioclip_lite_tf", "README.md")
MARK = "label_bank_compact"


def table(result: dict) -> str:
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


def render(readme: str, body: str) -> str:
  start, end = f"<!-- figures:{MARK} -->", f"<!-- /figures:{MARK} -->"
  if start not in readme or end not in readme:
    raise SystemExit(f"{README}: no {start} ... {end} markers")
  head, rest = readme.split(start, 1)
  _, tail = rest.split(end, 1)
  return f"{head}{start}\n{body}\n{end}{tail}"


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--check", action="store_true")
  args = parser.parse_args()
  with open(README, encoding="utf-8") as f:
    readme = f.read()
  new = render(readme, table(atomic.read_json(RESULT)))
  if args.check:
    return 0 if new == readme else 1
  atomic.write_text(README, new)
  return 0


if __name__ == "__main__":
  sys.exit(main())
