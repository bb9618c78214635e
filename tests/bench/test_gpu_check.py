"""bench/gpu_check.sh --smoke: the GPU check's whole code path on CPU at toy size (the real
teacher architectures and the student at 224 with 454k species need the GPU)."""
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_gpu_check_smoke_writes_every_figure(tmp_path):
  out = tmp_path / "gpu_check.json"
  proc = subprocess.run([os.path.join(REPO, "bench", "gpu_check.sh"), "--smoke", f"--out={out}"],
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "[gpu_check" in proc.stdout  # progress is printed
  r = json.loads(out.read_text())
  assert r["smoke"] is True and r["device"] == "cpu" and "seconds" in r
  (teacher,) = r["teachers"].values()
  assert teacher["status"] == "ok" and teacher["batch"] == 2
  assert teacher["forward_only_photos_per_second"] > 0
  assert teacher["whole_stage_photos_per_second"] > 0
  phases = r["student"]["phases"]
  assert set(phases) == {f"{p}_mixed_{m}" for p in ("float", "prune", "qat") for m in ("on", "off")}
  for p in ("float", "prune", "qat"):
    assert phases[f"{p}_mixed_off"]["status"] == "ok", phases
    assert phases[f"{p}_mixed_off"]["photos_per_second"] > 0
    on = phases[f"{p}_mixed_on"]
    # Without a config field it must say so, not silently measure float twice.
    if r["student"]["mixed_precision_config_field"] is None:
      assert on["status"] == "unsupported"
    else:
      assert on["status"] == "ok", on
