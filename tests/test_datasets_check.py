"""A CI run without the real datasets fails, naming the missing folder; it never passes with skips.

``.ci/run`` checks ``../shared/datasets`` before it installs anything, and tests/conftest.py
checks again when the test session starts (with ``CI=true`` a missing dataset ends the run;
without ``CI`` the tests that need it skip, saying which folder is missing). These tests run
both on temporary copies of the repository's layout, with and without ``shared/`` beside it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from datasets_check import REQUIRED, dataset_problems

REPO = Path(__file__).resolve().parent.parent


def _datasets(root: Path, skip: tuple[str, ...] = ()) -> Path:
    """``root/shared/datasets`` with every required dataset except ``skip`` (empty files, right names)."""
    datasets = root / "shared" / "datasets"
    for name, parts in REQUIRED.items():
        if name in skip:
            continue
        for part in parts:
            path = datasets / name / part
            if "." in path.name:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
            else:
                path.mkdir(parents=True, exist_ok=True)
    return datasets


def _clone(root: Path, *files: str) -> Path:
    """``root/hemotune``: the repository's ``files`` at their paths, nothing else (no install, no data)."""
    clone = root / "hemotune"
    for name in files:
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return clone


def _python3_that_refuses_to_install(root: Path) -> Path:
    """A ``python3`` that runs scripts but stops with exit 97 at ``-m venv`` (the start of the install)."""
    venv_bin = str(Path(sys.executable).parent)
    others = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != venv_bin)
    real = shutil.which("python3", path=others) or sys.executable
    shim = root / "bin" / "python3"
    shim.parent.mkdir(parents=True, exist_ok=True)
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then echo "INSTALL REACHED" >&2; exit 97; fi\n'
        f'exec "{real}" "$@"\n'
    )
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    return shim.parent


def test_the_check_names_every_missing_or_incomplete_folder(tmp_path: Path) -> None:
    datasets = _datasets(tmp_path, skip=("pbc8",))
    shutil.rmtree(datasets / "all_leukemia" / "all")
    assert dataset_problems(datasets) == {
        "pbc8": f"missing folder {datasets / 'pbc8'}",
        "all_leukemia": f"incomplete folder {datasets / 'all_leukemia'}: no all",
    }
    script = REPO / "tests" / "datasets_check.py"
    proc = subprocess.run([sys.executable, str(script), str(datasets)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"missing folder {datasets / 'pbc8'}" in proc.stderr
    assert f"{datasets / 'all_leukemia'}: no all" in proc.stderr
    assert "bccd" not in proc.stderr.splitlines()[0]
    _datasets(tmp_path)
    ok = subprocess.run([sys.executable, str(script), str(datasets)], capture_output=True, text=True)
    assert (ok.returncode, ok.stderr) == (0, "")


def test_ci_run_fails_before_the_install_on_a_clone_without_shared_datasets(tmp_path: Path) -> None:
    clone = _clone(tmp_path, ".ci/run", "tests/datasets_check.py")
    env = {
        **os.environ,
        "PATH": f"{_python3_that_refuses_to_install(tmp_path)}{os.pathsep}{os.environ['PATH']}",
    }
    proc = subprocess.run(
        ["bash", str(clone / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for name in REQUIRED:
        assert f"missing folder {tmp_path / 'shared' / 'datasets' / name}" in proc.stderr
    assert "INSTALL REACHED" not in proc.stderr
    assert not (clone / ".venv").exists()
    # with the data beside the clone the check passes and .ci/run goes on to the install
    _datasets(tmp_path)
    proc = subprocess.run(
        ["bash", str(clone / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 97 and "INSTALL REACHED" in proc.stderr, proc.stdout + proc.stderr


def _pytest_in(clone: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "tests"],
        cwd=clone,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_test_session_without_the_datasets_fails_in_ci_and_skips_by_name_locally(tmp_path: Path) -> None:
    clone = _clone(tmp_path, "tests/conftest.py", "tests/datasets_check.py")
    (clone / "tests" / "test_needs_bccd.py").write_text(
        "def test_reads_bccd(bccd_dir):\n    assert (bccd_dir / 'JPEGImages').is_dir()\n"
    )
    missing = tmp_path / "shared" / "datasets" / "bccd"
    ci = _pytest_in(clone, ci=True)
    assert ci.returncode == pytest.ExitCode.USAGE_ERROR, ci.stdout + ci.stderr
    assert f"missing folder {missing}" in ci.stdout + ci.stderr
    assert "passed" not in ci.stdout and "skipped" not in ci.stdout  # no test ran
    local = _pytest_in(clone, ci=False)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "1 skipped" in local.stdout
    assert f"real dataset bccd: missing folder {missing}" in local.stdout
    _datasets(tmp_path)
    assert "1 passed" in _pytest_in(clone, ci=True).stdout


def test_a_dataset_fixture_fails_instead_of_skipping_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATASETS", tmp_path)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"missing folder {tmp_path / 'pbc8'}"):
        conftest.real_dataset("pbc8")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=f"missing folder {tmp_path / 'pbc8'}"):
        conftest.real_dataset("pbc8")
