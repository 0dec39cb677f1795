"""Bad command lines and space files: each exits 2 with a message naming what to fix (docs/reliability.md).

Every case runs the real CLI (``hemotune.cli.main``) on real files in ``tmp_path``; the
exact excerpts asserted here are the ones docs/reliability.md quotes. Cases that need
data, Ray or a server live with their subjects (the table names those tests).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import synthetic_space_file

from hemotune.cli import main


def space(tmp_path: Path) -> str:
    return str(synthetic_space_file(tmp_path, name="bad_inputs_test"))


def raw_file(text: str) -> Callable[[Path], str]:
    def make(tmp_path: Path) -> str:
        path = tmp_path / "raw.yaml"
        path.write_text(text)
        return str(path)

    return make


#: id -> (the space argument, the options after it, an excerpt of the error message)
CASES: dict[str, tuple[Callable[[Path], str], list[str], str]] = {
    "malformed-yaml": (raw_file("name: x\n  bad: [\n"), [], "invalid YAML at line 2, column 6"),
    "empty-space-file": (raw_file(""), [], "the file must hold a YAML mapping (key: value lines)"),
    "yaml-list-not-mapping": (raw_file("- a\n- b\n"), [], "the file must hold a YAML mapping"),
    "missing-space-file": (lambda tmp: str(tmp / "nope.yaml"), [], "search-space file not found"),
    "unknown-space-name": (lambda tmp: "no_such_space", [], "no search space named 'no_such_space'; known:"),
    "num-samples-not-a-number": (
        space,
        ["--num-samples", "abc"],
        "argument --num-samples: invalid int value",
    ),
    "num-samples-zero": (space, ["--num-samples", "0"], "budget.num_samples: must be >= 1, got 0"),
    "max-concurrent-negative": (
        space,
        ["--max-concurrent", "-1"],
        "budget.max_concurrent: must be >= 1, got -1",
    ),
    "set-without-value": (
        space,
        ["--set", "budget.epochs"],
        "--set 'budget.epochs': expected key.path=value",
    ),
    "set-wrong-type": (
        space,
        ["--set", "budget.epochs=zero"],
        "budget.epochs: must be an integer, got 'zero'",
    ),
    "set-unknown-key": (space, ["--set", "nosuch.key=1"], "--set nosuch.key: unknown top-level key 'nosuch'"),
    "unknown-preset": (space, ["--preset", "huge"], "presets.huge: no such preset"),
    "missing-data-folder": (space, ["--data", "/no/such/dir"], "dataset.path: /no/such/dir does not exist"),
    "resume-nothing": (space, ["--resume"], "nothing to resume: no search named 'bad_inputs_test'"),
    "trial-larger-than-machine": (
        space,
        ["--num-cpus", "1", "--set", "resources.cpu=4"],
        "resources.cpu: a trial asks for 4 CPU",
    ),
}


@pytest.mark.parametrize(("make", "options", "message"), CASES.values(), ids=CASES.keys())
def test_bad_search_input_exits_2_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], str],
    options: list[str],
    message: str,
) -> None:
    results = tmp_path / "results"
    argv = ["search", make(tmp_path), *options, "--results-dir", str(results), "--no-progress"]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert message in err, err
    assert "Traceback" not in out + err and "ray tune:" not in out
    assert not results.exists() or not any(results.iterdir()), "something was started"


def test_an_unreachable_ray_address_exits_2_at_once_instead_of_retrying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ray.init`` would retry a dead GCS address for minutes (measured: still retrying after 2 min)."""
    with socket.socket() as closed:  # bound, never listening: connecting is refused at once
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
        argv = [
            "search",
            space(tmp_path),
            "--address",
            address,
            "--results-dir",
            str(tmp_path / "r"),
            "--no-progress",
        ]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at {address} (Connection refused)" in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nosuchcommand"], "argument COMMAND: invalid choice: 'nosuchcommand'"),
        (["trainers", "nosuch"], "unknown trainer 'nosuch'; available:"),
        (["spaces", "show", "nosuch"], "no search space named 'nosuch'"),
        (
            ["sync", "nosuch", "--results-dir", "/nonexistent/results"],
            "nothing to resume: no search named 'nosuch'",
        ),
    ],
    ids=["unknown-command", "unknown-trainer", "unknown-space-to-show", "sync-unknown-search"],
)
def test_other_bad_commands_exit_2_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
