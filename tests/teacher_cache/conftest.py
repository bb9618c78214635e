"""Fixtures for the teacher_cache tests: tiny generated datasets and in-process teachers."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from teacher_cache import demo_data  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs the CLI in subprocesses or a ViT-B-16 forward "
                            "(seconds to a minute each); still part of `make test`")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread while these tests run (the cores are shared; see tc_helpers)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tc_demo")


@pytest.fixture(scope="session")
def wds_demo(demo_root):
    """24 synthetic photos over 8 species, 3 tar shards + catalog.csv."""
    out = str(demo_root / "wds")
    demo_data.write_demo(out, "wds", num_photos=24, num_shards=3, seed=1, num_species=8)
    return out


@pytest.fixture(scope="session")
def wds_small(demo_root):
    """12 synthetic photos over 6 species in 2 tar shards: ViT-B-16 runs cost ~0.2 s a photo."""
    out = str(demo_root / "wds_small")
    demo_data.write_demo(out, "wds", num_photos=12, num_shards=2, seed=2, num_species=6)
    return out


@pytest.fixture(scope="session")
def inat_demo(demo_root):
    out = str(demo_root / "inat")
    demo_data.write_demo(out, "inat", num_photos=24, seed=1, num_species=8)
    return out


@pytest.fixture(scope="session")
def csv_demo(demo_root):
    out = str(demo_root / "csv")
    demo_data.write_demo(out, "csv", num_photos=24, seed=1, num_species=8)
    return os.path.join(out, "catalog.csv")


@pytest.fixture(scope="session")
def tiny_teacher():
    from teacher_cache.teachers import load_teacher
    return load_teacher("bioclip-lite-test-tiny", "none")


@pytest.fixture(scope="session")
def vit_teacher():
    from teacher_cache.teachers import load_teacher
    return load_teacher("ViT-B-16", "none")
