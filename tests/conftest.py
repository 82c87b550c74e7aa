import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(2)

# A small SynFER for fast end-to-end tests (every class present in every split).
TINY = "synfer:n=700"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Tests never read or fill the user's ~/.cache/fer_bench (dataset and feature caches)."""
    os.environ["FER_BENCH_CACHE"] = str(tmp_path_factory.mktemp("fer_bench_cache"))


@pytest.fixture(scope="session")
def tiny_dataset():
    from fer_bench.data import load_dataset

    return load_dataset(TINY)
