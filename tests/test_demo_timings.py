"""pipeline.demo's stage timings: wall and CPU seconds of the stage's processes, and set-up."""
import json
import os

from absl import flags

from pipeline import demo


def _parse_flags():
  if not flags.FLAGS.is_parsed():
    flags.FLAGS(["demo"])


def test_stage_cpu_seconds_are_the_childs_and_marker_records_them(tmp_path):
  _parse_flags()
  # A child that burns CPU on purpose: about 10**8 additions.
  stage = demo.Stage("burn", "CPU on purpose",
                     lambda o: ["timeit", "-n", "1", "-r", "1", "sum(range(3 * 10**7))"])
  timing = demo.run_stage(str(tmp_path), stage, 1, 1)
  assert timing["cpu_s"] > 0.2, timing           # the child's CPU, not this process's
  assert timing["wall_s"] >= 0.9 * timing["cpu_s"] / os.cpu_count()
  # Both figures are rounded to 0.1 s from the unrounded CPU seconds, so they agree to within
  # the two roundings (cpu_s's, spread over the cores, and the estimate's own).
  cores = flags.FLAGS.cores
  assert abs(timing["idle_wall_estimate_s"] - timing["cpu_s"] / cores) <= 0.05 / cores + 0.05 + 1e-9
  with open(tmp_path / ".done" / "burn.json") as f:
    assert json.load(f)["cpu_s"] == timing["cpu_s"]
  assert demo.run_stage(str(tmp_path), stage, 1, 1) == {}  # done before: skipped


def test_setup_times_file_and_merged_timings(tmp_path):
  setup = tmp_path / "setup.txt"
  # line 1: wall seconds; then bash `times`: the shell's user/sys, its children's user/sys.
  setup.write_text("250.5\n0m0.010s 0m0.020s\n3m10.000s 0m50.000s\n")
  got = demo.read_setup_times(str(setup), 2)
  assert got == {"wall_s": 250.5, "cpu_s": 240.0, "idle_wall_estimate_s": 120.0}
  assert demo.read_setup_times(str(tmp_path / "absent.txt"), 2) == {}
  bad = tmp_path / "bad.txt"
  bad.write_text("not a number\n")
  assert demo.read_setup_times(str(bad), 2) == {}
  out = str(tmp_path / "demo")
  os.makedirs(out)
  demo.write_timings(out, {"setup": got, "train": {"wall_s": 10.0, "cpu_s": 16.0,
                                                  "idle_wall_estimate_s": 8.0}}, 2)
  # A later run that skipped train keeps train's timing and adds evaluate's.
  path = demo.write_timings(out, {"train": {}, "evaluate": {"wall_s": 5.0, "cpu_s": 6.0,
                                                           "idle_wall_estimate_s": 3.0}}, 2)
  with open(path) as f:
    t = json.load(f)
  assert set(t["stages"]) == {"setup", "train", "evaluate"}
  assert t["total"] == {"wall_s": 265.5, "cpu_s": 262.0, "idle_wall_estimate_s": 131.0}


def test_demo_times_latency_at_224_only():
  evaluate = next(s for s in demo.STAGES if s.name == "evaluate")
  _parse_flags()
  argv = evaluate.argv("runs/x")
  assert "--latency_resolutions=224" in argv
