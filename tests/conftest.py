"""Test-wide setup: nothing may reach a non-loopback address, every cache is private.

The proxy variables are set at import, before any test can start a Ray process:
Ray's dashboard probes the cloud metadata address (169.254.169.254) at start-up,
and HTTP routed to a closed loopback port stops it (see STACK-NOTES). Loopback
services (mlflow server, moto) are reached directly through ``no_proxy``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

for _var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
    os.environ[_var] = "http://127.0.0.1:9"
os.environ["no_proxy"] = os.environ["NO_PROXY"] = "localhost,127.0.0.1,::1"
_OWN_CACHE = "HEMOTUNE_CACHE_DIR" not in os.environ
os.environ.setdefault("HEMOTUNE_CACHE_DIR", tempfile.mkdtemp(prefix="hemotune-test-cache-"))
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

from hemotune.offline import apply_offline_env  # noqa: E402

apply_offline_env()

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


def dataset_or_skip(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"real dataset {path} is not available")
    return path


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    return dataset_or_skip("bccd")


@pytest.fixture(scope="session")
def pbc8_dir() -> Path:
    return dataset_or_skip("pbc8")


@pytest.fixture(scope="session")
def leukemia_dir() -> Path:
    return dataset_or_skip("all_leukemia")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["HEMOTUNE_CACHE_DIR"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the private cache this session created (converted datasets, Ultralytics settings)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["HEMOTUNE_CACHE_DIR"], ignore_errors=True)
