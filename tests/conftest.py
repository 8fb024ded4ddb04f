"""Shared fixtures. Every test runs in its own working directory, so MLflow databases,
journals, checkpoints and reports never land in the source tree."""

from __future__ import annotations

import os

import pytest

# tests/helpers.py holds the helpers several test modules share (test modules never import
# each other); its asserts report their values like a test's.
pytest.register_assert_rewrite("helpers")


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield


@pytest.fixture(scope="session", autouse=True)
def _token_cache(tmp_path_factory):
    """One token cache for the whole session, outside the user's home."""
    cache = tmp_path_factory.mktemp("token-cache")
    old = os.environ.get("SCALING_CACHE_DIR")
    os.environ["SCALING_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("SCALING_CACHE_DIR", None)
    else:
        os.environ["SCALING_CACHE_DIR"] = old


# Real PostgreSQL and mlflow-server fixtures (tests/services.py); skipped where absent.
from services import mlflow_server, postgres_server  # noqa: E402, F401


@pytest.fixture
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one thread avoids OpenMP spin contention,
    which made these runs 5x slower; train() never raises a caller's lower setting."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
