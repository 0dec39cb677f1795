"""A search without --address starts its own private Ray, whatever cluster the machine last recorded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import synthetic_space_file

from hemotune.config import RunSettings
from hemotune.spaces import load_space
from hemotune.tuning import run_search


@pytest.fixture
def stale_cluster_record() -> object:
    """``ray_current_cluster`` pointing at a dead GCS address, as a crashed `ray start` leaves it."""
    from ray._private.utils import get_ray_address_file

    path = Path(get_ray_address_file(None))
    before = path.read_text() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("127.0.0.1:1")  # nothing listens on port 1
    try:
        yield path
    finally:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(before)


def test_a_local_search_ignores_a_stale_cluster_record(
    tmp_path: Path, stale_cluster_record: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = synthetic_space_file(
        tmp_path,
        name="private_ray",
        fixed={"seconds_per_epoch": 0.0},
        budget={"num_samples": 2, "max_concurrent": 2, "epochs": 2, "grace_period": 2},  # no early stop
    )
    settings = RunSettings(
        results_dir=str(tmp_path / "results"), local_dir=tmp_path / "results", num_cpus=2, show_progress=False
    )
    outcome = run_search(load_space(str(path)), settings)
    assert stale_cluster_record.read_text() == "127.0.0.1:1"  # the search did not rely on (or fix) it
    assert not outcome.interrupted and len(outcome.ranking) == 2
    assert all(t.outcome == "completed" and t.epochs == 2 for t in outcome.ranking)
    assert "RAY_ADDRESS" not in os.environ
