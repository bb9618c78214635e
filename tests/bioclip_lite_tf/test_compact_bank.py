"""Compact device bank: encodings against brute force, agreement computed, the writer, the CLI."""
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import label_bank_compact as bench
from bioclip_lite_tf.export import compact_bank as cb
from bioclip_lite_tf.export import device_bank
from bioclip_lite_tf.testing import export_fixtures as export_testing
from bench import structured_label_bank as slb
from formats import device_label_bank as device_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _unit(x):
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _rows(n=300, d=48, seed=0):
  rng = np.random.default_rng(seed)
  # a shared offset plus a decaying spectrum: like text embeddings, not isotropic
  return _unit(1.5 + rng.standard_normal((n, d)) * (1.0 + np.arange(d)) ** -0.5)


def test_int4_packing_is_two_signed_nibbles_low_first():
  rng = np.random.default_rng(1)
  q = rng.integers(-7, 8, (5, 9)).astype(np.int8)  # odd width: a pad nibble
  packed = device_format.pack_int4(q)
  assert packed.shape == (5, 5) and packed.dtype == np.uint8
  for i in range(5):
    for j in range(9):
      byte = int(packed[i, j // 2])
      nibble = (byte >> 4) if j % 2 else (byte & 0xF)
      assert (nibble - 16 if nibble > 7 else nibble) == q[i, j]
    assert int(packed[i, 4]) >> 4 == 0
  assert np.array_equal(device_format.unpack_int4(packed, 9), q)


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_quantized_rows_within_half_a_step(dtype):
  x = _rows()
  bank = cb.encode(x, dtype)
  back = bank.decode_rows()
  levels = 127 if dtype == "int8" else 7
  step = bank.scales[:, None]
  inside = np.abs(x) <= step * levels  # int4 may clip the largest values of a row
  assert np.all(np.abs(back - x)[inside] <= step.repeat(x.shape[1], 1)[inside] / 2 + 1e-7)
  if dtype == "int4":
    # least-squares clipping is never worse than the plain max|x| / 7 scale (brute force)
    plain = np.abs(x).max(1, keepdims=True) / 7
    plain_err = np.sum((np.clip(np.rint(x / plain), -7, 7) * plain - x) ** 2, axis=1)
    assert np.all(np.sum((back - x) ** 2, axis=1) <= plain_err + 1e-9)
  else:
    assert np.allclose(bank.scales, np.abs(x).max(1) / 127)


def test_pca_spans_the_top_principal_axes():
  x = _rows(400, 32)
  mean, p = cb.fit_pca(x, 8)
  assert np.allclose(mean, x.mean(0), atol=1e-6)
  assert np.allclose(p.T @ p, np.eye(8), atol=1e-5)
  _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)  # brute force
  top = vt[:8].T
  assert np.allclose(p @ p.T, top @ top.T, atol=1e-4)


@pytest.mark.parametrize("option", ["float16", "int8", "int4", "pca48_float16", "pca48_int8",
                                    "pca16_int8", "pca16_int4"])
def test_scores_are_the_device_formula(option):
  x = _rows()
  q = _rows(20, 48, seed=5)
  bank = cb.encode_option(x, option)
  recon = bank.reconstruct()
  # the device's q . mean + (q @ P) . row equals q . (mean + P row), computed a second way
  mean = bank.mean if bank.mean is not None else np.zeros(48, np.float32)
  p = bank.projection if bank.projection is not None else np.eye(48, dtype=np.float32)
  device = np.array([[float(qi @ mean + (qi @ p) @ r) for r in bank.decode_rows()] for qi in q])
  assert np.allclose(bank.scores(q), device, atol=1e-4)
  assert np.allclose(q @ recon.T, device, atol=1e-4)
  # chunked top-1 equals the argmax of the full matrix
  assert np.array_equal(bank.top1(q, chunk_rows=7), device.argmax(1))
  err = np.linalg.norm(recon - x, axis=1)
  if option in ("float16", "pca48_float16"):
    assert err.max() < 2e-3  # a full-width projection is a rotation: nothing lost
  elif option in ("int8", "pca48_int8"):
    assert err.max() < 0.02
  elif option == "int4":
    assert err.max() < 0.25
  # bytes are the arrays' own
  stored = bank.rows.nbytes + (bank.scales.nbytes if bank.scales is not None else 0)
  stored += (bank.projection.nbytes + bank.mean.nbytes) if bank.projection is not None else 0
  assert bank.bytes["total"] == stored + (-bank.rows.nbytes) % 4


def test_bench_agreement_is_computed():
  # a loosely structured bank (noise 1 at every rank) and easy queries: int8 is ~lossless
  bank = slb.generate((2, 4, 8, 16, 40, 200, 3000), embed_dim=64, seed=3,
                      noise_scales=(1.0,) * 7)
  q, truth = slb.queries(bank, 400, image_noise=0.5, seed=4)
  out = bench.measure_options(bank.species, q, ["int8", "pca4_int8", "pca32_int8"])
  # brute force: float64 argmax of the full matrices
  ref = (q.astype(np.float64) @ bank.species.T.astype(np.float64)).argmax(1)
  for option in out:
    recon = cb.encode_option(bank.species, option).reconstruct().astype(np.float64)
    assert out[option]["top1_agreement"] == pytest.approx(
        np.mean((q.astype(np.float64) @ recon.T).argmax(1) == ref), abs=0.006)
  assert out["int8"]["top1_agreement"] >= 0.99
  assert out["pca4_int8"]["top1_agreement"] < out["int8"]["top1_agreement"] - 0.2
  assert out["pca4_int8"]["top1_agreement"] < out["pca32_int8"]["top1_agreement"]


def test_choose_default_smallest_passing_else_best():
  c = {"a": {"bytes": 50, "top1_agreement_demo_bank": 1.0, "top1_agreement_structured_bank": .995},
       "b": {"bytes": 30, "top1_agreement_demo_bank": .999, "top1_agreement_structured_bank": .991},
       "c": {"bytes": 10, "top1_agreement_demo_bank": 1.0, "top1_agreement_structured_bank": .9},
       "d": {"bytes": 10 ** 9, "top1_agreement_demo_bank": 1, "top1_agreement_structured_bank": 1}}
  assert bench.choose_default(c, 5)["option"] == "b"
  for o in ("a", "b"):
    c[o]["top1_agreement_structured_bank"] = 0.95
  choice = bench.choose_default(c, 5)
  assert choice["option"] in ("a", "b") and not choice["meets_goal"]


@pytest.mark.parametrize("dtype,dims", [("int4", 0), ("int4", 12), ("int8", 20),
                                        ("float16", 16)])
def test_writer_round_trip(tmp_path, dtype, dims):
  src = tmp_path / "ds" / "label_bank"
  export_testing.write_label_bank(str(src), embed_dim=40)
  source = device_bank.read_source_label_bank(str(src))
  meta = device_bank.write_device_label_bank(source, str(tmp_path / "out"), dtype, dims)
  back = device_format.read_device_label_bank(str(tmp_path / "out"))
  expected = cb.encode(np.asarray(source.species_embeddings), dtype, dims)
  assert meta["dtype"] == dtype and meta["embed_dim"] == 40
  assert meta["rows"]["stored_dim"] == (dims or 40)
  assert (meta["projection"] is not None) == bool(dims)
  assert back.species_embeddings.shape == (len(source.tables[-1]), 40)
  assert np.allclose(back.species_embeddings, expected.reconstruct(), atol=1e-5)
  assert os.path.getsize(tmp_path / "out" / "label_bank.bin") == expected.bytes["total"]


def _export(args):
  return subprocess.run([sys.executable, "-m", "bioclip_lite_tf.export", "--workdir=/nope",
                         "--out_dir=/tmp/compact-never-written"] + args, capture_output=True,
                        text=True, cwd=REPO)


@pytest.mark.parametrize("args,message", [
    (["--bank_dtype=int3"], "int3"), (["--bank_dims=abc"], "abc"),
    (["--bank_compact=pca0_int4"], "pca0_int4"), (["--bank_compact=int4", "--bank_dims=64"],
                                                  "--bank_dims")])
def test_export_cli_bad_bank_options_exit_2(args, message):
  proc = _export(args)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert message in proc.stderr
  assert not os.path.exists("/tmp/compact-never-written")
