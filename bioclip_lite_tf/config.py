"""Configs as code: a tiny ConfigDict (ml_collections is not a dependency) and config loading.

A config file is a Python module with `get_config(arg: str) -> ConfigDict` (big_vision style).
`--config=path/to/file.py:arg` passes `arg`; `--override=train.batch_size=8` (repeatable)
changes one leaf, parsed as a Python literal and type-checked against the existing value.
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
from typing import Any, Dict, Iterable, Tuple


class ConfigError(ValueError):
  """A config that cannot be loaded or an override that does not fit it."""


class ConfigDict(dict):
  """A dict with attribute access; nested dicts become ConfigDicts. JSON-serializable."""

  def __init__(self, *args, **kwargs):
    super().__init__()
    for k, v in dict(*args, **kwargs).items():
      self[k] = v

  def __setitem__(self, key, value):
    if isinstance(value, dict) and not isinstance(value, ConfigDict):
      value = ConfigDict(value)
    super().__setitem__(key, value)

  def __getattr__(self, key):
    try:
      return self[key]
    except KeyError:
      raise AttributeError(f"config has no field {key!r}; fields: {sorted(self)}") from None

  def __setattr__(self, key, value):
    self[key] = value

  def __deepcopy__(self, memo):
    return ConfigDict(copy.deepcopy(dict(self), memo))

  def to_dict(self) -> Dict[str, Any]:
    return json.loads(json.dumps(self))


def parse_config_spec(spec: str) -> Tuple[str, str]:
  """'path.py:arg' -> ('path.py', 'arg'); 'path.py' -> ('path.py', '')."""
  if ":" in spec and not spec.rsplit(":", 1)[1].endswith(".py"):
    path, arg = spec.rsplit(":", 1)
    return path, arg
  return spec, ""


def load_config(spec: str) -> ConfigDict:
  """Imports the config file named by spec and calls its get_config(arg)."""
  path, arg = parse_config_spec(spec)
  if not os.path.isfile(path):
    raise ConfigError(f"--config: file {path!r} does not exist (expected e.g. "
                      "bioclip_lite_tf/configs/demo.py)")
  module_spec = importlib.util.spec_from_file_location(
      "bioclip_lite_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"--config: {path} has no get_config(arg) function")
  config = module.get_config(arg)
  if not isinstance(config, ConfigDict):
    config = ConfigDict(config)
  return config


def apply_overrides(config: ConfigDict, overrides: Iterable[str]) -> ConfigDict:
  """Applies 'a.b.c=value' strings; the field must exist and keep its type (int -> float ok)."""
  config = copy.deepcopy(config)
  for item in overrides:
    if "=" not in item:
      raise ConfigError(f"--override {item!r}: expected dotted.key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = config
    for p in parts[:-1]:
      if not isinstance(node, dict) or p not in node:
        raise ConfigError(f"--override {item!r}: no field {p!r} (config fields: "
                          f"{sorted(node) if isinstance(node, dict) else node})")
      node = node[p]
    leaf = parts[-1]
    if not isinstance(node, dict) or leaf not in node:
      raise ConfigError(f"--override {item!r}: no field {leaf!r} under {'.'.join(parts[:-1]) or 'the root'}")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw  # a bare string
    old = node[leaf]
    if old is not None and not isinstance(old, dict):
      if isinstance(old, bool) != isinstance(value, bool):
        raise ConfigError(f"--override {item!r}: {key} is {type(old).__name__}, got {value!r}")
      if isinstance(old, float) and isinstance(value, int):
        value = float(value)
      elif isinstance(old, (list, tuple)) and isinstance(value, (list, tuple)):
        value = type(old)(value)
      elif not isinstance(value, type(old)):
        raise ConfigError(f"--override {item!r}: {key} is {type(old).__name__}, got "
                          f"{type(value).__name__} {value!r}")
    node[leaf] = value
  return config
