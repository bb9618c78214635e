"""Shared fixtures for the tree_of_life_distill tests: tiny caches made by make_dummy_data."""
import os
import subprocess
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_module(module, *args, cwd=None, timeout=300):
  """Runs `python -m module args` as a user would; returns the CompletedProcess."""
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def dummy_cache(tmp_path):
  from tfds_treeoflife.make_dummy_data import write_cache
  return write_cache(str(tmp_path / "cache"))


@pytest.fixture
def run_module():
  """`run_module("pkg.mod", "--flag=x", cwd=...)` runs it in a fresh Python like a user would."""
  return _run_module


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes tens of seconds (still part of make test)")
