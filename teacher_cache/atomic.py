"""Atomic file and directory writes: write under a temporary name, then rename.

Readers treat only final names as complete, so a kill at any moment leaves either the old
state or the new one, plus temp litter that the next run removes.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from typing import Any, Callable

TMP_MARK = ".tmp-"


def fresh_tmp_dir(final_dir: str) -> str:
    """A new empty sibling directory 'FINAL.tmp-XXXX' for building final_dir."""
    parent = os.path.dirname(os.path.abspath(final_dir))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=os.path.basename(final_dir) + TMP_MARK, dir=parent)


def commit_dir(tmp_dir: str, final_dir: str) -> None:
    """Renames tmp_dir to final_dir; an existing *empty* final_dir is replaced."""
    if os.path.isdir(final_dir) and not os.listdir(final_dir):
        os.rmdir(final_dir)
    os.chmod(tmp_dir, 0o755)  # mkdtemp makes 0700; the result is an ordinary directory
    os.rename(tmp_dir, final_dir)


def write_bytes(path: str, data: bytes) -> None:
    write_with(path, lambda f: f.write(data))


def write_json(path: str, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str, writer: Callable[[io.BufferedWriter], Any]) -> None:
    """Calls writer(binary file) on a temp file next to path, fsyncs, renames onto path."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + TMP_MARK, dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_tmp_litter(directory: str) -> int:
    """Deletes leftovers of interrupted atomic writes in one directory; returns how many."""
    n = 0
    if not os.path.isdir(directory):
        return 0
    for name in os.listdir(directory):
        if TMP_MARK in name:
            p = os.path.join(directory, name)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
            n += 1
    return n
