"""File-system access for the readers and writers: the local disk or TensorFlow's gfile.

The formats package imports neither TensorFlow nor torch. A stage that reads caches on gs:// or
hdfs:// passes `GFileSystem(tf.io.gfile)`; everything else uses `LOCAL`.
"""
from __future__ import annotations

import glob as _glob
import os
import shutil
from typing import IO, List


class LocalFileSystem:
  """The local disk (and anything mounted there)."""

  is_local = True

  def open(self, path: str, mode: str = "r") -> IO:
    return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))

  def exists(self, path: str) -> bool:
    return os.path.exists(path)

  def isdir(self, path: str) -> bool:
    return os.path.isdir(path)

  def listdir(self, path: str) -> List[str]:
    return os.listdir(path)

  def glob(self, pattern: str) -> List[str]:
    return _glob.glob(pattern)

  def makedirs(self, path: str) -> None:
    os.makedirs(path, exist_ok=True)

  def rename(self, src: str, dst: str) -> None:
    os.replace(src, dst)

  def remove(self, path: str) -> None:
    shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


class GFileSystem:
  """TensorFlow's tf.io.gfile (local, gs://, hdfs://, ...), handed in by the caller."""

  def __init__(self, gfile):
    self._g = gfile

  @property
  def is_local(self) -> bool:
    return False

  def open(self, path: str, mode: str = "r") -> IO:
    return self._g.GFile(path, mode)

  def exists(self, path: str) -> bool:
    return self._g.exists(path)

  def isdir(self, path: str) -> bool:
    return self._g.isdir(path)

  def listdir(self, path: str) -> List[str]:
    return [p.rstrip("/") for p in self._g.listdir(path)]

  def glob(self, pattern: str) -> List[str]:
    return self._g.glob(pattern)

  def makedirs(self, path: str) -> None:
    self._g.makedirs(path)

  def rename(self, src: str, dst: str) -> None:
    self._g.rename(src, dst, overwrite=True)

  def remove(self, path: str) -> None:
    self._g.rmtree(path) if self._g.isdir(path) else self._g.remove(path)


LOCAL = LocalFileSystem()


def is_local_path(path: str) -> bool:
  return "://" not in os.fspath(path)
