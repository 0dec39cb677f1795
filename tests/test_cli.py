"""The command line: exit codes, speed and imports of the commands that must stay light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from helpers import SYNTHETIC, base_doc, write

CLI_PROBE = textwrap.dedent(
    """
    import sys
    from hemotune.cli import main
    code = main(sys.argv[1:])
    heavy = [m for m in ("ray", "torch", "ultralytics", "mlflow") if m in sys.modules]
    print("OPTUNA=" + str("optuna" in sys.modules))
    print("HEAVY=" + ",".join(heavy))
    sys.exit(code)
    """
)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (
            lambda d: d["parameters"].update(momentum={"type": "float", "low": 0.1, "high": 0.9}),
            "parameters.momentum",
        ),
        (lambda d: d["parameters"]["plateau"].update(low=0.9, high=0.3), "parameters.plateau.low"),
        (lambda d: d["parameters"]["lr"].update(low=-1.0), "parameters.lr.low"),
        (
            lambda d: d["parameters"].update(optimizer={"type": "categorical", "choices": ["auto"]}),
            "parameters.optimizer",
        ),
        (lambda d: d["dataset"].update(path="/no/such/dataset"), "dataset.path"),
        (None, "invalid YAML"),
    ],
)
def test_cli_search_with_malformed_space_exits_2_fast_without_starting_ray(
    tmp_path: Path, mutate, key: str
) -> None:
    if mutate is None:
        path = write(tmp_path, "name: broken\ntrainer: synthetic_curves\nparameters: [\n")
    else:
        doc = base_doc(tmp_path)
        mutate(doc)
        path = write(tmp_path, doc)
    # The same interpreter running nothing: its start-up is not hemotune's to spend, so it is taken off.
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], check=True, timeout=60)
    startup = time.monotonic() - start
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, "search", str(path), "--results-dir", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    # README: "fails in well under a second": importing hemotune, validating and exiting, beyond start-up.
    assert elapsed - startup < 1.0, f"{elapsed:.2f}s, of which interpreter start-up {startup:.2f}s"
    assert str(path) in proc.stderr and key in proc.stderr
    assert "HEAVY=\n" in proc.stdout or proc.stdout.strip().endswith("HEAVY="), proc.stdout
    assert not (tmp_path / "results").exists()


def test_cli_help_and_validate_import_nothing_heavy() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, "spaces", "validate", str(SYNTHETIC)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout and proc.stdout.strip().endswith("HEAVY=")
    assert "OPTUNA=False" in proc.stdout  # Optuna is imported only to convert a validated space
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, hemotune; print(sorted(m for m in ('ray','torch','ultralytics','mlflow') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stdout.strip() == "[]"


def test_spaces_list_and_show_name_every_shipped_space(capsys: pytest.CaptureFixture[str]) -> None:
    from hemotune.cli import main

    assert main(["spaces", "list"]) == 0
    listing = capsys.readouterr().out
    for name in ("bcd_loss_weights", "pbc_class_weights", "all_leukemia"):
        assert name in listing
    assert main(["spaces", "show", "bcd_loss_weights", "--preset", "smoke"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out.split("\n", 1)[1])
    assert shown["name"] == "bcd_loss_weights" and shown["preset"] == "smoke"
    assert shown["budget"]["num_samples"] == 4 and "source" not in shown
    assert shown["parameters"]["box"] == {"type": "float", "low": 2.5, "high": 22.5, "log": True}


def test_trainers_lists_each_trainers_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    from hemotune.cli import main

    assert main(["trainers"]) == 0
    assert {"yolo_detection", "image_classification", "synthetic_curves"} <= {
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()
    }
    assert main(["trainers", "yolo_detection"]) == 0
    text = capsys.readouterr().out
    assert "box (float)" in text and "optimizer (str)" in text and "val/AP50/<class>" in text
    assert main(["trainers", "no_such_trainer"]) == 2
    assert "unknown trainer 'no_such_trainer'" in capsys.readouterr().err


def test_usage_errors_exit_2_and_the_version_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from hemotune.cli import main

    assert main([]) == 2
    assert main(["spaces", "show", "no_such_space"]) == 2
    assert "no search space named 'no_such_space'" in capsys.readouterr().err
    assert main(["sync", "no_such_search", "--results-dir", "/nonexistent/results"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "hemotune", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("hemotune ")
