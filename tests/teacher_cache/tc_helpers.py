"""Helpers shared by the teacher_cache tests (run the CLI, read a cache back)."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from typing import Dict, List, Optional

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--teacher=bioclip-lite-test-tiny", "--pretrained=none"]
VIT = ["--teacher=ViT-B-16", "--pretrained=none"]


def cli_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    # Never reach for the network from a test; the hub test sets its own HF_HOME.
    env["HF_HUB_OFFLINE"] = "1"
    # The test machine's cores are shared with other jobs; oversubscribed OpenMP threads spin
    # and make a forward pass ~10x slower, so each test process uses one intra-op thread.
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra or {})
    return env


def cli(module: str, *args: str, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs `python -m module args...` from the repo root; returns the completed process."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)


def popen(module: str, *args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=cli_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_rows(cache_dir: str) -> Dict[str, np.ndarray]:
    """All rows of a cache, concatenated over parts in (shard, part) order.

    Returns arrays keyed as in the part files plus 'image' (list of bytes) and 'skipped_key'.
    """
    out: Dict[str, List] = {}
    skipped: List[str] = []
    parts = sorted(glob.glob(os.path.join(cache_dir, "rows", "shard-*", "part-*.npz")))
    for p in parts:
        with np.load(p, allow_pickle=False) as z:
            off = z["image_offsets"]
            data = z["image_bytes"]
            out.setdefault("image", []).extend(
                data[off[i]:off[i + 1]].tobytes() for i in range(len(off) - 1))
            for name in ("key", "taxon_index", "common_name", "teacher_embedding",
                         "topk_species_indices", "topk_species_logits", "teacher_logsumexp",
                         "view_boxes", "view_flips"):
                out.setdefault(name, []).append(z[name])
            skipped.extend(z["skipped_key"].tolist())
    rows = {k: (v if k == "image" else np.concatenate(v)) for k, v in out.items()}
    rows["skipped_key"] = skipped
    return rows


def manifest(cache_dir: str) -> dict:
    with open(os.path.join(cache_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)
