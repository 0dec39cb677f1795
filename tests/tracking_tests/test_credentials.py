"""MLflow credentials from the environment or a 0600 file: what is accepted, what is refused and how it says so.

Real files in ``tmp_path``; no server (tests/tracking_tests/test_auth.py has the real basic-auth server).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import synthetic_space_file

from hemotune.cli import main
from hemotune.errors import UsageError
from hemotune.tracking.credentials import (
    CREDENTIALS_FILE_VAR,
    PASSWORD_VAR,
    USERNAME_VAR,
    check_tracking_access,
    credentials_env,
    load_credentials,
)

PASSWORD = "unit-FAKE-MLFLOWPW-1234"


@pytest.fixture(autouse=True)
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start from no credentials at all; whatever a test's code sets is undone afterwards."""
    for name in (USERNAME_VAR, PASSWORD_VAR, CREDENTIALS_FILE_VAR):
        monkeypatch.delenv(name, raising=False)


def credentials_file(tmp_path: Path, mode: int = 0o600, text: str | None = None) -> Path:
    path = tmp_path / "mlflow-credentials"
    path.write_text(
        text
        if text is not None
        else f"[mlflow]\nmlflow_tracking_username = hemotune\nmlflow_tracking_password = {PASSWORD}\n"
    )
    path.chmod(mode)
    return path


def test_a_0600_file_is_read_and_its_path_not_its_password_goes_to_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = credentials_file(tmp_path)
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(path))
    credentials = load_credentials()
    assert credentials is not None
    assert (credentials.username, credentials.password) == ("hemotune", PASSWORD)
    assert credentials.source == f"{CREDENTIALS_FILE_VAR}={path}"
    assert PASSWORD not in repr(credentials)
    assert credentials_env() == {CREDENTIALS_FILE_VAR: str(path.resolve())}
    # check_tracking_access puts them where MLflow's client reads them (no request for SQLite)
    assert check_tracking_access(f"sqlite:///{tmp_path / 'mlflow.db'}") == credentials
    assert os.environ[USERNAME_VAR] == "hemotune" and os.environ[PASSWORD_VAR] == PASSWORD


def test_the_variables_win_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(credentials_file(tmp_path)))
    monkeypatch.setenv(USERNAME_VAR, "alice")
    monkeypatch.setenv(PASSWORD_VAR, "alice-FAKE-PW")
    credentials = load_credentials()
    assert credentials is not None and credentials.username == "alice"
    assert credentials.source == f"{USERNAME_VAR}/{PASSWORD_VAR}"


@pytest.mark.parametrize(
    ("mode", "text", "message"),
    [
        (0o644, None, r"may be read by group or others \(mode 0644\): run `chmod 600 .*mlflow-credentials`"),
        (0o640, None, r"may be read by group or others \(mode 0640\)"),
        (0o600, "[other]\nx = 1\n", r"needs an \[mlflow\] section with mlflow_tracking_username"),
        (0o600, "[mlflow]\nmlflow_tracking_username = hemotune\n", "mlflow_tracking_password"),
        (0o600, "no section header\n", r"not an INI file with an \[mlflow\] section"),
    ],
    ids=["world-readable", "group-readable", "no-section", "no-password", "not-ini"],
)
def test_an_unusable_credentials_file_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, text: str | None, message: str
) -> None:
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(credentials_file(tmp_path, mode, text)))
    with pytest.raises(UsageError, match=message) as caught:
        load_credentials()
    assert CREDENTIALS_FILE_VAR in str(caught.value) and PASSWORD not in str(caught.value)


def test_a_missing_file_or_half_a_pair_of_variables_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"nope: cannot read the MLflow credentials file \(No such file"):
        load_credentials()
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(tmp_path))
    with pytest.raises(UsageError, match="is not a file"):
        load_credentials()
    monkeypatch.delenv(CREDENTIALS_FILE_VAR)
    monkeypatch.setenv(USERNAME_VAR, "hemotune")
    with pytest.raises(UsageError, match=f"{PASSWORD_VAR} is not set \\(but its partner is\\)"):
        load_credentials()


def test_search_with_a_group_readable_credentials_file_exits_2_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(credentials_file(tmp_path, 0o644)))
    space = synthetic_space_file(tmp_path, name="credentials_mode_test")
    code = main(["search", str(space), "--results-dir", str(tmp_path / "results"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "may be read by group or others (mode 0644): run `chmod 600" in err
    assert "data:" not in out and "ray tune:" not in out  # refused before the data and before Ray
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("command", ["best", "evaluate", "report", "sync"])
def test_every_command_that_reads_mlflow_logs_in_from_the_file(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """best/evaluate/report/sync load the credentials file as search does (a 401 otherwise, found on the
    cluster); a file too open is refused with exit 2 naming it, before any store is read."""
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(credentials_file(tmp_path, mode=0o644)))
    assert main([command, "nothing_here", "--results-dir", str(tmp_path / "results")]) == 2
    assert str(tmp_path / "mlflow-credentials") in capsys.readouterr().err
    monkeypatch.setenv(CREDENTIALS_FILE_VAR, str(credentials_file(tmp_path)))
    main([command, "nothing_here", "--results-dir", str(tmp_path / "results")])
    assert os.environ[USERNAME_VAR] == "hemotune" and os.environ[PASSWORD_VAR] == PASSWORD
