"""What every bench writes: its JSON result (atomically) and a description of the machine."""
from __future__ import annotations

import os
import platform

from formats import atomic


def machine(**extra) -> dict:
  """CPU, memory, Python and GPU presence of this machine, plus the bench's own extras."""
  info = {"python": platform.python_version(), "machine": platform.machine(),
          "cpus": os.cpu_count(), "system": platform.platform()}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          info["cpu_model"] = line.split(":", 1)[1].strip()
          break
    with open("/proc/meminfo") as f:
      info["mem_total_kb"] = int(f.readline().split()[1])
  except OSError:
    pass
  info["gpu"] = "none" if not os.path.exists("/dev/nvidia0") else "present"
  info["load_average_1m"] = os.getloadavg()[0]
  info.update(extra)
  return info


def write_result(path: str, result: dict) -> None:
  """bench/results/<name>.json, written atomically, keys in the order the bench built them."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  atomic.write_json(path, result, sort_keys=False)


def flatten(d: dict, prefix: str = ""):
  """(dotted.key, scalar) pairs of a nested result dict, depth first; lists are skipped."""
  for k, v in d.items():
    key = f"{prefix}.{k}" if prefix else str(k)
    if isinstance(v, dict):
      yield from flatten(v, key)
    elif isinstance(v, (int, float, str, bool)) or v is None:
      yield key, v
