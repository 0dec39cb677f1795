"""Test-wide setup: nothing may reach a non-loopback address, every cache is private, the real data is there.

The proxy variables are set at import, before any test can start a Ray process:
Ray's dashboard probes the cloud metadata address (169.254.169.254) at start-up,
and HTTP routed to a closed loopback port stops it (see STACK-NOTES). Loopback
services (mlflow server, moto) are reached directly through ``no_proxy``. This is
a second guard for the tests, not what keeps hemotune offline: tests/test_offline.py
runs searches without any of it and checks that hemotune does that itself.

The real datasets (``../shared/datasets``, see tests/datasets_check.py) are checked
when the session starts: in CI (``CI=true``) a missing one fails the run and the
dataset fixtures fail instead of skipping; locally those tests skip, naming the folder.
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

from datasets_check import DEFAULT_ROOT, dataset_problems, in_ci  # noqa: E402

from hemotune.offline import apply_offline_env  # noqa: E402

apply_offline_env()

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATASETS = DEFAULT_ROOT


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI, a missing real dataset fails the whole run before any test (never a run of skips)."""
    problems = dataset_problems(SHARED_DATASETS)
    if problems and in_ci():
        pytest.exit(
            "CI=true and the real datasets are not all there: "
            + "; ".join(problems.values())
            + " (the tests of the shipped search spaces need them; see tests/datasets_check.py)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_report_header(config: pytest.Config) -> list[str]:
    problems = dataset_problems(SHARED_DATASETS)
    if not problems:
        return [f"real datasets: {SHARED_DATASETS} (all there)"]
    return [
        f"real datasets: {p}; the tests that need it skip (CI=true makes this an error)"
        for p in problems.values()
    ]


def real_dataset(name: str) -> Path:
    """``../shared/datasets/NAME``; if missing: a failure in CI, a skip naming the folder elsewhere."""
    problem = dataset_problems(SHARED_DATASETS).get(name)
    if problem:
        if in_ci():
            pytest.fail(f"real dataset {name}: {problem} (CI=true: a test of a shipped space may not skip)")
        pytest.skip(f"real dataset {name}: {problem} (CI=true makes this a failure)")
    return SHARED_DATASETS / name


@pytest.fixture(scope="session")
def bccd_dir() -> Path:
    return real_dataset("bccd")


@pytest.fixture(scope="session")
def pbc8_dir() -> Path:
    return real_dataset("pbc8")


@pytest.fixture(scope="session")
def leukemia_dir() -> Path:
    return real_dataset("all_leukemia")


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    return Path(os.environ["HEMOTUNE_CACHE_DIR"])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the private cache this session created (converted datasets, Ultralytics settings)."""
    if _OWN_CACHE:
        shutil.rmtree(os.environ["HEMOTUNE_CACHE_DIR"], ignore_errors=True)
