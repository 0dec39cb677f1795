"""The image_classification trainer: contract, accumulation, training, resume, and the two search spaces."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from imagefolder_helpers import make_folder

from hemotune.spaces import load_space, validate_file
from hemotune.trainers import TrialContext, get_trainer
from hemotune.trainers.image_classification import ImageClassificationTrainer
from hemotune.trainers.image_classification.batches import make_loader
from hemotune.trainers.image_classification.checkpoint import load_checkpoint
from hemotune.trainers.image_classification.loop import train_one_epoch
from hemotune.trainers.image_classification.losses import FocalCrossEntropy
from hemotune.trainers.image_classification.models import BuiltModel, get_spec
from hemotune.trainers.image_classification.setup import Runtime, Setup

TRAINER = ImageClassificationTrainer()


class Recorder:
    """A ``report`` that keeps everything and copies each checkpoint, as Ray does."""

    def __init__(self, root: Path, stop_after: int | None = None) -> None:
        self.root, self.stop_after = root, stop_after
        self.metrics: list[dict[str, float]] = []
        self.artifacts: list[dict[str, Path]] = []
        self.checkpoints: list[Path] = []

    def __call__(self, metrics: Any, *, checkpoint: Path | None = None, artifacts: Any = None) -> None:
        self.metrics.append(dict(metrics))
        self.artifacts.append(dict(artifacts or {}))
        for name, path in (artifacts or {}).items():
            assert Path(path).is_file(), name
        assert checkpoint is not None
        copy = self.root / f"ckpt_{int(metrics['epoch'])}"
        shutil.copytree(checkpoint, copy)
        self.checkpoints.append(copy)
        if self.stop_after is not None and metrics["epoch"] >= self.stop_after:
            raise KeyboardInterrupt("simulated node loss")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("tiny")
    make_folder(root / "ds", {"red": 16, "blue": 16, "green": 16})
    dataset = {"path": str(root / "ds"), "cache_imgsz": 32}
    return str(TRAINER.prepare_data(dataset, {}, root / "cache").path)


def tiny_params(data: str, **overrides: Any) -> dict[str, Any]:
    params = {
        "model": "resnet18",
        "imgsz": 32,
        "batch": 8,
        "epochs": 2,
        "seed": 0,
        "data": data,
        "optimizer": "AdamW",
        "base_lr": 2e-3,
        "reference_batch": 8,
    }
    params.update(overrides)
    return params


# ----------------------------------------------------------------------------- contract


def test_registered_and_declares_its_metrics() -> None:
    trainer = get_trainer("image_classification")
    assert isinstance(trainer, ImageClassificationTrainer) and trainer.task == "classify"
    for name in (
        "val/accuracy",
        "val/balanced_accuracy",
        "val/macro_precision",
        "val/macro_recall",
        "val/macro_f1",
        "val/cohen_kappa",
        "val/min_class_recall",
        "val/specificity",
        "val/sensitivity",
        "val/loss",
        "train/loss",
        "lr",
        "val/recall/Cancer",
        "val/precision/x",
        "val/f1/x",
        "val/specificity/Normal",
    ):
        assert trainer.is_known_metric(name), name


def test_resolve_scales_lr_linearly() -> None:
    resolved = TRAINER.resolve({"base_lr": 1e-3, "batch": 16, "accumulate_steps": 4, "reference_batch": 32})
    assert resolved["lr"] == pytest.approx(2e-3)
    assert resolved["effective_batch"] == 64
    assert resolved["class_weighting"] == "none"  # defaults are filled in


def test_validate_catches_cross_parameter_problems() -> None:
    assert TRAINER.validate({}, ["model"]) == []
    problems = TRAINER.validate(
        {"best_metric": "val/mAP50", "pretrained": "w.pt", "model": "inception_resnet_v2", "imgsz": 64},
        ["model"],
    )
    assert len(problems) == 3
    assert TRAINER.validate({"best_metric": "val/recall/Cancer"}, []) == []


def test_trainer_module_import_is_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, hemotune.trainers.image_classification; "
        "print(sorted(m for m in ('torch', 'timm', 'ultralytics', 'sklearn', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- accumulation


def _runtime(setup: Setup) -> Runtime:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    built = BuiltModel(module, get_spec("resnet18"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), {})
    zeros, ones = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    return Runtime(setup, built, torch.device("cpu"), zeros, ones, use_amp=False)


def _epoch(batch: int, steps: int, data: tuple[torch.Tensor, torch.Tensor]) -> tuple[Runtime, int]:
    params = TRAINER.resolve(
        {
            "batch": batch,
            "accumulate_steps": steps,
            "data": "x",
            "optimizer": "SGD",
            "momentum": 0.0,
            "weight_decay": 0.0,
            "augment": False,
        }
    )
    setup = Setup.from_params(params)
    rt = _runtime(setup)
    optimizer = torch.optim.SGD(rt.built.module.parameters(), lr=0.5)
    calls = 0
    original = optimizer.step

    def counting_step(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    optimizer.step = counting_step  # type: ignore[method-assign]
    loader = make_loader(data[0], data[1], setup, 3, torch.Generator().manual_seed(5), False)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_one_epoch(rt, loader, FocalCrossEntropy(), optimizer, scaler, None)
    return rt, calls


def test_accumulation_equals_a_bigger_batch_and_handles_the_leftover() -> None:
    g = torch.Generator().manual_seed(0)
    data = (
        torch.randint(0, 256, (16, 3, 4, 4), dtype=torch.uint8, generator=g),
        torch.randint(0, 3, (16,), generator=g),
    )
    big, big_steps = _epoch(8, 1, data)
    small, small_steps = _epoch(4, 2, data)
    assert big_steps == small_steps == 2
    for a, b in zip(big.built.module.parameters(), small.built.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # 4 micro-batches with accumulate_steps 3: windows of 3 and 1 -> 2 optimizer steps,
    # the same as a step on the first 12 images and one on the last 4.
    odd, odd_steps = _epoch(4, 3, data)
    assert odd_steps == 2
    ref, _ = _epoch(12, 1, data)  # only used for its initial weights
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3))
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    loader = make_loader(data[0], data[1], odd.setup, 3, torch.Generator().manual_seed(5), False)
    batches = list(loader)
    for window in (batches[:3], batches[3:]):
        x = torch.cat([b[0] for b in window]).float() / 255.0
        y = torch.cat([b[1] for b in window])
        torch.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()
        opt.zero_grad()
    for a, b in zip(module.parameters(), odd.built.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ref is not None


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_fit_reports_every_epoch_with_checkpoint_and_artifacts(tiny_data: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    context = TrialContext(workdir=tmp_path / "work", seed=0)
    summary = TRAINER.fit(tiny_params(tiny_data), recorder, context)
    assert [m["epoch"] for m in recorder.metrics] == [1, 2]
    first = recorder.metrics[0]
    for key in (
        "train/loss",
        "val/loss",
        "lr",
        "val/macro_f1",
        "val/cohen_kappa",
        "val/min_class_recall",
        "val/specificity",
        "val/sensitivity",
        "val/recall/red",
        "val/precision/blue",
        "val/f1/green",
        "val/specificity/red",
    ):
        assert key in first, key
    assert recorder.artifacts[0].keys() == {
        "weights/best.pt",
        "confusion_matrix.png",
        "confusion_matrix.json",
    }
    best_epoch = int(summary["best_epoch"])
    assert summary["best/val/macro_f1"] == recorder.metrics[best_epoch - 1]["val/macro_f1"]
    assert summary["best/val/macro_f1"] == max(m["val/macro_f1"] for m in recorder.metrics)
    state = load_checkpoint(recorder.checkpoints[-1])
    assert state["epoch"] == 2 and {"model", "optimizer", "scaler", "rng", "best_epoch"} <= set(state)


@pytest.mark.slow
def test_resume_in_a_new_workdir_equals_an_uninterrupted_run(tiny_data: str, tmp_path: Path) -> None:
    params = tiny_params(
        tiny_data,
        epochs=3,
        augment=True,
        balanced_sampling=True,
        accumulate_steps=2,
        class_weighting="inverse_sqrt",
        focal_gamma=1.0,
    )
    full = Recorder(tmp_path / "full")
    full_summary = TRAINER.fit(params, full, TrialContext(workdir=tmp_path / "a", seed=0))

    interrupted = Recorder(tmp_path / "cut", stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        TRAINER.fit(params, interrupted, TrialContext(workdir=tmp_path / "b", seed=0))
    moved = tmp_path / "elsewhere" / "checkpoint"
    shutil.copytree(interrupted.checkpoints[0], moved)
    resumed = Recorder(tmp_path / "resumed")
    summary = TRAINER.fit(params, resumed, TrialContext(workdir=tmp_path / "c", seed=0, resume_from=moved))

    assert [m["epoch"] for m in resumed.metrics] == [2, 3]
    assert resumed.metrics == full.metrics[1:]
    assert summary == full_summary
    a = load_checkpoint(full.checkpoints[-1])["model"]
    b = load_checkpoint(resumed.checkpoints[-1])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_yolo_classifier_trains_in_the_same_loop(tiny_data: str, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    params = tiny_params(
        tiny_data,
        model="yolo11n-cls",
        epochs=1,
        optimizer="SGD",
        segmentation=True,
        class_weighting="effective_number",
        class_weight_beta=0.99,
        focal_gamma=2.0,
        balanced_sampling=True,
        accumulate_steps=2,
        label_smoothing=0.1,
    )
    summary = TRAINER.fit(params, recorder, TrialContext(workdir=tmp_path / "w", seed=0))
    assert summary["best_epoch"] == 1.0
    assert 0.0 <= recorder.metrics[0]["val/accuracy"] <= 1.0
    assert recorder.metrics[0]["lr"] == pytest.approx(4e-3)  # 2e-3 * 8 * 2 / 8


def test_too_large_imgsz_and_resume_mismatch_fail_clearly(tiny_data: str, tmp_path: Path) -> None:
    from hemotune.errors import UsageError

    with pytest.raises(UsageError, match="imgsz 64 > cache_imgsz 32"):
        TRAINER.fit(tiny_params(tiny_data, imgsz=64), Recorder(tmp_path), TrialContext(workdir=tmp_path))


# ----------------------------------------------------------------------------- best epoch by the objective

#: Three epochs whose best differs by metric: macro F1 (best_metric's default) peaks at 2,
#: accuracy at 3, the val loss is lowest at 1.
CURVES = {
    1: {"val/macro_f1": 0.2, "val/accuracy": 0.5, "val/loss": 0.7},
    2: {"val/macro_f1": 0.6, "val/accuracy": 0.4, "val/loss": 1.1},
    3: {"val/macro_f1": 0.4, "val/accuracy": 0.7, "val/loss": 0.9},
}


@pytest.mark.parametrize(
    ("objective", "mode", "best_metric", "best_epoch"),
    [
        (None, "max", "val/macro_f1", 2),  # no objective: best_metric decides
        (None, "max", "val/loss", 1),  # a loss best_metric is best lowest
        ("val/accuracy", "max", "val/macro_f1", 3),  # the objective wins over best_metric
        ("val/loss", "min", "val/macro_f1", 1),
    ],
)
def test_best_epoch_and_weights_follow_the_search_objective(
    tiny_data: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    objective: str | None,
    mode: str,
    best_metric: str,
    best_epoch: int,
) -> None:
    """The epochs' metrics are faked (no training); selection, best.pt and the checkpoint are real."""
    from hemotune.trainers.image_classification.loop import ClassificationTrial

    def fake_epoch(trial: ClassificationTrial, epoch: int) -> tuple[dict[str, float], Any, Any]:
        y_true = trial.val_y.numpy()
        return {"epoch": epoch, **CURVES[epoch]}, y_true, y_true * 0

    monkeypatch.setattr(ClassificationTrial, "_train_and_evaluate", fake_epoch)
    params = tiny_params(tiny_data, model="mobilenetv3_small_100", epochs=3, best_metric=best_metric)
    context = TrialContext(workdir=tmp_path / "w", seed=0, objective=objective, mode=mode)
    recorder = Recorder(tmp_path)
    summary = TRAINER.fit(params, recorder, context)
    metric = objective or best_metric
    assert summary["best_epoch"] == best_epoch
    assert summary[f"best/{metric}"] == CURVES[best_epoch][metric]
    assert summary["best/val/macro_f1"] == CURVES[best_epoch]["val/macro_f1"]
    exported = [epoch for epoch, files in enumerate(recorder.artifacts, 1) if "weights/best.pt" in files]
    assert exported[0] == 1 and exported[-1] == best_epoch
    weights = torch.load(recorder.artifacts[best_epoch - 1]["weights/best.pt"], weights_only=False)
    assert (weights["epoch"], weights["best_metric"]) == (best_epoch, metric)
    assert load_checkpoint(recorder.checkpoints[-1])["best_epoch"] == best_epoch
    again = replace(context, workdir=tmp_path / "again", resume_from=recorder.checkpoints[-1])
    assert TRAINER.fit(params, Recorder(tmp_path / "r"), again) == summary  # resumed: the same best epoch


@pytest.mark.slow
def test_a_min_mode_objective_picks_the_best_epoch_of_a_real_run(tiny_data: str, tmp_path: Path) -> None:
    """Trained for real: with ``val/loss`` (min) as the objective, best.pt is the lowest-loss epoch."""
    recorder = Recorder(tmp_path)
    context = TrialContext(workdir=tmp_path / "w", seed=0, objective="val/loss", mode="min")
    summary = TRAINER.fit(tiny_params(tiny_data, model="mobilenetv3_small_100", epochs=3), recorder, context)
    losses = [m["val/loss"] for m in recorder.metrics]
    assert len(losses) == 3 and summary["best/val/loss"] == min(losses)
    assert summary["best_epoch"] == losses.index(min(losses)) + 1
    exported = [epoch for epoch, files in enumerate(recorder.artifacts, 1) if "weights/best.pt" in files]
    assert exported[-1] == summary["best_epoch"]


# ----------------------------------------------------------------------------- the search spaces


@pytest.mark.parametrize("name", ["pbc_class_weights", "all_leukemia"])
def test_space_files_validate(name: str) -> None:
    assert validate_file(name) == ["as written", "preset plumbing", "preset smoke"]


def test_known_points_are_the_studies_recipes() -> None:
    pbc = load_space("pbc_class_weights", check_data=False)
    first = pbc.points_to_evaluate[0]
    assert (first["model"], first["optimizer"], first["base_lr"], first["class_weighting"]) == (
        "densenet121",
        "Adam",
        1e-3,
        "none",
    )
    assert pbc.fixed["batch"] == 32 and TRAINER.resolve(pbc.trial_params(first))["lr"] == pytest.approx(1e-3)
    leuk = load_space("all_leukemia", check_data=False)
    first = leuk.points_to_evaluate[0]
    assert (first["model"], first["optimizer"]) == ("yolo11n-cls", "SGD")
    assert TRAINER.resolve(leuk.trial_params(first))["lr"] == pytest.approx(1e-3)
    assert leuk.fixed["positive_class"] == "Cancer"
    assert leuk.dataset.options["class_map"] == {
        "Benign": "Normal",
        "Early": "Cancer",
        "Pre": "Cancer",
        "Pro": "Cancer",
    }


def _plumbing_trial(name: str, data: Path, cache: Path, tmp_path: Path) -> tuple[float, Recorder]:
    space = load_space(name, preset="plumbing", data=str(data))
    assert space.budget.num_samples == 4 and space.budget.epochs == 2 and space.resources.cpu == 1
    prepared = TRAINER.prepare_data(space.dataset.as_dict(), space.fixed, cache)
    params = {**space.trial_params(space.points_to_evaluate[0]), "data": str(prepared.path)}
    recorder = Recorder(tmp_path)
    started = time.perf_counter()
    TRAINER.fit(params, recorder, TrialContext(workdir=tmp_path / "w", seed=space.seed))
    return time.perf_counter() - started, recorder


@pytest.mark.slow
def test_pbc_plumbing_known_point_on_real_data(pbc8_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    seconds, recorder = _plumbing_trial("pbc_class_weights", pbc8_dir, cache_dir, tmp_path)
    assert [m["epoch"] for m in recorder.metrics] == [1, 2]
    assert "val/recall/basophil" in recorder.metrics[-1]
    print(f"pbc_class_weights plumbing trial (2 epochs): {seconds:.1f} s")


@pytest.mark.slow
def test_leukemia_plumbing_known_point_on_real_data(
    leukemia_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    seconds, recorder = _plumbing_trial("all_leukemia", leukemia_dir, cache_dir, tmp_path)
    last = recorder.metrics[-1]
    assert {"val/sensitivity", "val/specificity", "val/recall/Cancer", "val/specificity/Normal"} <= set(last)
    assert last["val/sensitivity"] == last["val/recall/Cancer"]
    assert last["val/specificity"] == last["val/recall/Normal"]
    print(f"all_leukemia plumbing trial (2 epochs): {seconds:.1f} s")
