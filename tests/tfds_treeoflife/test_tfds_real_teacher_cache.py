"""Builds from a cache written by the real teacher_cache CLI (tiny open_clip teacher, random
weights), so a drift between the two stages' formats fails here. teacher_cache runs in its own
process: TF code never imports it."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from formats.ranks import RANKS  # noqa: E402
from tfds_treeoflife import load_label_bank  # noqa: E402
from tfds_treeoflife.build import build  # noqa: E402


@pytest.mark.slow
def test_build_from_teacher_cache_output(tmp_path, run_module):
  src, cache = tmp_path / "photos", tmp_path / "cache"
  r = run_module("teacher_cache.demo_data", f"--out_dir={src}", "--num_photos=24",
                 "--num_species=6", "--num_shards=2", "--image_size=64")
  assert r.returncode == 0, r.stderr[-3000:]
  for shard in (0, 1):  # two independent workers, as at scale
    r = run_module("teacher_cache", f"--source={src}", f"--out_dir={cache}",
                   "--teacher=bioclip-lite-test-tiny", "--pretrained=none", "--num_shards=2",
                   f"--shard_index={shard}")
    assert r.returncode == 0, r.stderr[-3000:]

  builder = build(str(cache), str(tmp_path / "tfds"), config="species_holdout")
  bank = load_label_bank(builder.info.data_dir)
  splits = builder.info.splits
  assert sum(s.num_examples for s in splits.values()) == 24
  assert builder.info.features["teacher_embedding"].shape == (2, bank.embed_dim)  # V=2 views
  for rank in RANKS:
    assert builder.info.features[rank].names == bank.ranks[rank].names
  for split in splits:
    for ex in tfds.as_numpy(builder.as_dataset(split=split)):
      assert ex["image"].shape == (64, 64, 3)
      # Labels follow the parent links of the bank.
      for r in range(1, len(RANKS)):
        assert bank.ranks[RANKS[r]].parents[ex[RANKS[r]]] == ex[RANKS[r - 1]]
      # Zero-shot from the dataset's own bank reproduces the teacher's top-k.
      for v in range(2):
        logits = (bank.logit_scale * bank.ranks["species"].text_embeddings.astype(np.float64)
                  @ ex["teacher_embedding"][v])
        np.testing.assert_allclose(logits[ex["topk_species_indices"][v]],
                                   ex["topk_species_logits"][v], rtol=1e-4, atol=1e-3)
        assert np.all(np.diff(ex["topk_species_logits"][v]) <= 1e-6)  # highest first
        top = logits.max()
        np.testing.assert_allclose(ex["teacher_logsumexp"][v],
                                   top + np.log(np.exp(logits - top).sum()), rtol=1e-5)
      np.testing.assert_array_equal(ex["view_boxes"][0], [0, 0, 64, 64])
      assert ex["view_flips"][0] == 0
