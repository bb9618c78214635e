"""Atomic file and directory writes: write under a unique temporary name, then rename.

Readers treat only final names as complete, so a kill at any moment leaves either the old state
or the new one, plus temp litter (names containing TMP_MARK) that `remove_tmp_litter` clears.
Temp names are unique per write (mkstemp / mkdtemp, or a random suffix on gfile), so two
processes writing the same file never write into one temp file.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from typing import Any, Callable

from formats.errors import FormatError
from formats.fs import LOCAL

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


def replace_dir(tmp_dir: str, final_dir: str) -> None:
  """Puts tmp_dir in place of final_dir, which may exist and be non-empty (it is removed)."""
  os.chmod(tmp_dir, 0o755)
  if os.path.exists(final_dir):
    parent = os.path.dirname(os.path.abspath(final_dir))
    old = tempfile.mkdtemp(prefix=os.path.basename(final_dir) + TMP_MARK + "old-", dir=parent)
    os.replace(final_dir, os.path.join(old, "x"))
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(tmp_dir, final_dir)


def write_with(path: str, writer: Callable[[io.BufferedWriter], Any], fs=LOCAL) -> None:
  """Calls writer(binary file) on a temp file next to path, then renames it onto path.

  On the local disk the temp file is fsynced before the rename.
  """
  if not fs.is_local:
    tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    try:
      with fs.open(tmp, "wb") as f:
        writer(f)
      fs.rename(tmp, path)
    except BaseException:
      if fs.exists(tmp):
        fs.remove(tmp)
      raise
    return
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + TMP_MARK, dir=d)
  try:
    with os.fdopen(fd, "wb") as f:
      writer(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the result is an ordinary file
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_bytes(path: str, data: bytes, fs=LOCAL) -> None:
  write_with(path, lambda f: f.write(data), fs)


def write_text(path: str, text: str, fs=LOCAL) -> None:
  write_bytes(path, text.encode("utf-8"), fs)


def json_text(obj: Any, **dumps_kwargs) -> str:
  """The project's JSON layout: indent 2, sorted keys, UTF-8, final newline (overridable)."""
  options = {"indent": 2, "sort_keys": True, "ensure_ascii": False}
  options.update(dumps_kwargs)
  text = json.dumps(obj, **options)
  return text if options.get("indent") is None else text + "\n"


def write_json(path: str, obj: Any, fs=LOCAL, **dumps_kwargs) -> None:
  """Writes obj as JSON atomically (see json_text for the layout; dumps_kwargs override it)."""
  write_text(path, json_text(obj, **dumps_kwargs), fs)


def read_json(path: str, fs=LOCAL) -> Any:
  """json.load of a file; FormatError naming the file when it is not valid JSON."""
  with fs.open(path, "r") as f:
    try:
      return json.load(f)
    except ValueError as e:
      raise FormatError(f"{path}: not valid JSON ({e})") from e


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
