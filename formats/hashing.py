"""sha256 of files and strings, streamed so a 1 GB label bank never sits in memory."""
from __future__ import annotations

import hashlib
from typing import Optional

from formats.fs import LOCAL

_BLOCK = 1 << 20


def update_with_file(h, path: str, fs=LOCAL):
  """Feeds a file's bytes into the hash object h; returns h."""
  with fs.open(path, "rb") as f:
    for block in iter(lambda: f.read(_BLOCK), b""):
      h.update(block)
  return h


def sha256_file(path: str, fs=LOCAL) -> str:
  """Hex sha256 of a file's bytes."""
  return update_with_file(hashlib.sha256(), path, fs).hexdigest()


def sha256_text(text: str, prefix: Optional[bytes] = None) -> str:
  h = hashlib.sha256(prefix or b"")
  h.update(text.encode("utf-8"))
  return h.hexdigest()
