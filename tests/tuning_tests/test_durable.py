"""A trial's reported artifacts, kept in its Tune folder, come back as artifact path -> local file.

``hemotune sync`` logs what ``recover_from_trial_folder`` returns to a rebuilt child run
(the copy into the folder happens in a live trial: tests/tracking_tests/test_rebuild.py
and tests/cluster_tests/test_head_loss.py cover it on a local folder and on S3).
"""

from __future__ import annotations

from pathlib import Path

from hemotune.tuning.durable import DURABLE_ARTIFACTS, recover_from_trial_folder


def test_the_reported_artifacts_come_back_under_their_artifact_paths(tmp_path: Path) -> None:
    trial = tmp_path / "experiment" / "trial_abc"
    (trial / DURABLE_ARTIFACTS / "weights").mkdir(parents=True)
    (trial / DURABLE_ARTIFACTS / "weights" / "best.pt").write_bytes(b"weights of epoch 7")
    (trial / DURABLE_ARTIFACTS / "confusion_matrix.png").write_bytes(b"png")
    (trial / "checkpoint_000001").mkdir()  # Tune's own folders are not artifacts
    found = recover_from_trial_folder(str(trial), tmp_path / "copy")
    assert sorted(found) == ["confusion_matrix.png", "weights/best.pt"]
    assert found["weights/best.pt"].read_bytes() == b"weights of epoch 7"
    assert found["weights/best.pt"].is_relative_to(tmp_path / "copy")


def test_a_trial_folder_without_reported_artifacts_gives_none(tmp_path: Path) -> None:
    (tmp_path / "trial_old").mkdir()  # a search run before trials copied their artifacts
    assert recover_from_trial_folder(str(tmp_path / "trial_old"), tmp_path / "copy") == {}
    assert recover_from_trial_folder(str(tmp_path / "missing"), tmp_path / "copy") == {}
