"""The YOLO detection trainer: parameter arithmetic, guards, the search space, and real training on BCCD.

Training tests run real Ultralytics on a handful of BCCD images at 64-96 px on
CPU (a few seconds per epoch) and check structure and finiteness, not quality:
after two epochs from scratch every mAP is 0.
"""

from __future__ import annotations

import copy
import csv
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from hemotune.errors import SpaceValidationError, TrialConfigurationError, UsageError
from hemotune.metrics import metric_key
from hemotune.spaces import load_space, validate_file
from hemotune.trainers import TrialContext, get_trainer
from hemotune.trainers.yolo_detection import (
    DEFAULTS,
    OPTIMIZERS,
    STATE_FILE,
    YoloDetectionTrainer,
    accumulation_cap_problem,
    checkpoint_epoch,
    expected_accumulate,
    learning_rate,
    model_problem,
    offline_amp_check,
    trial_data_yaml,
    ultralytics_train_args,
)
from hemotune.trainers.yolo_detection.patches import is_allowed_callback, ultralytics_session
from hemotune.trainers.yolo_detection.run import UltralyticsRun

REPO = Path(__file__).resolve().parents[2]
SPACE_FILE = REPO / "search_spaces" / "bcd_loss_weights.yaml"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
EPOCH_METRICS = (
    "val/mAP50-95",
    "val/mAP50",
    "val/precision",
    "val/recall",
    "val/box_loss",
    "val/cls_loss",
    "val/dfl_loss",
    "train/box_loss",
    "train/cls_loss",
    "train/dfl_loss",
    "lr",
    "effective_batch",
    "accumulate_steps",
    "val/AP50/RBC",
    "val/AP50/WBC",
    "val/AP50/Platelets",
)


@pytest.fixture(scope="module")
def trainer() -> YoloDetectionTrainer:
    found = get_trainer("yolo_detection")
    assert isinstance(found, YoloDetectionTrainer)
    return found


# ----------------------------------------------------------------------------- resolve: pure arithmetic


@pytest.mark.parametrize(
    ("batch", "accumulate_steps", "base_lr", "reference_batch", "scaling", "effective", "lr0"),
    [
        (16, 4, 0.01, 64, "linear", 64, 0.01),  # Ultralytics' defaults: nbs 64 at batch 16
        (16, 8, 0.01, 64, "linear", 128, 0.02),
        (16, 1, 0.01, 64, "linear", 16, 0.0025),
        (16, 2, 0.002, 64, "linear", 32, 0.001),
        (4, 8, 0.01, 64, "linear", 32, 0.005),  # the smoke preset's largest
        (32, 2, 0.01, 32, "linear", 64, 0.02),
        (16, 16, 0.01, 64, "sqrt", 256, 0.02),
        (16, 8, 0.01, 64, "none", 128, 0.01),
    ],
)
def test_resolve_scales_the_learning_rate_with_images_per_step(
    trainer: YoloDetectionTrainer,
    batch: int,
    accumulate_steps: int,
    base_lr: float,
    reference_batch: int,
    scaling: str,
    effective: int,
    lr0: float,
) -> None:
    resolved = trainer.resolve(
        {
            "batch": batch,
            "accumulate_steps": accumulate_steps,
            "base_lr": base_lr,
            "reference_batch": reference_batch,
            "lr_scaling": scaling,
        }
    )
    assert resolved["effective_batch"] == resolved["nbs"] == effective
    assert resolved["lr0"] == pytest.approx(lr0)
    # Ultralytics: accumulate = max(round(nbs / batch), 1) = accumulate_steps; weight decay * batch*acc/nbs = 1
    assert max(round(resolved["nbs"] / batch), 1) == accumulate_steps
    assert resolved["weight_decay_scale"] == 1.0
    assert resolved["weight_decay"] == DEFAULTS["weight_decay"]


def test_resolve_fills_defaults_and_derived_values(trainer: YoloDetectionTrainer) -> None:
    resolved = trainer.resolve({"optimizer": "RMSProp", "epochs": 2, "warmup_epochs": 3})
    assert resolved["ultralytics_optimizer"] == "RMSprop"
    assert resolved["warmup_epochs_effective"] == 1.0  # Ultralytics keeps the last epoch out of warm-up
    assert resolved["box"] == 7.5 and resolved["cls"] == 0.5 and resolved["dfl"] == 1.5
    assert resolved["model"] == "yolo11n.yaml" and resolved["patience"] == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer": "auto"}, "optimizer"),
        ({"box": 0.0}, "box"),
        ({"imgsz": 100}, "multiple of 32"),
        ({"batch": 0}, "batch"),
        ({"lr0": 0.01}, "lr0: unknown parameter"),
        ({"accumulate": 4}, "accumulate: unknown parameter"),
    ],
)
def test_resolve_rejects_what_would_not_run_as_asked(
    trainer: YoloDetectionTrainer, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(TrialConfigurationError, match=message):
        trainer.resolve(params)


@pytest.mark.parametrize(
    ("steps", "batches_per_epoch", "epochs", "expected"),
    [(4, 13, 120, 4), (8, 8, 2, 8), (8, 2, 2, 4), (8, 1, 1, 1), (1, 1, 1, 1), (16, 3, 5, 15)],
)
def test_expected_accumulate_is_capped_by_the_micro_batches_of_the_run(
    steps: int, batches_per_epoch: int, epochs: int, expected: int
) -> None:
    assert expected_accumulate(steps, batches_per_epoch, epochs) == expected


def test_accumulation_cap_problem_names_the_cap_and_the_way_out() -> None:
    assert accumulation_cap_problem(8, 8, 2) is None and accumulation_cap_problem(8, 4, 2) is None  # 8 >= 8
    problem = accumulation_cap_problem(8, 2, 2) or ""
    assert problem.startswith("accumulate_steps 8 needs 8 micro-batches per optimizer step")
    assert "only 4 in all (2 per epoch x 2 epochs)" in problem and "cap accumulation at 4" in problem
    assert "use accumulate_steps <= 4, or more train images or epochs (or a smaller batch)" in problem


def test_learning_rate_and_metric_names() -> None:
    assert learning_rate(0.01, 128, 64) == pytest.approx(0.02)
    assert metric_key("val/AP50/Band (neutrophil)") == "val/AP50/Band _neutrophil_"
    assert metric_key("val/mAP50-95") == "val/mAP50-95"


def test_box_gain_reaches_the_ultralytics_call(trainer: YoloDetectionTrainer, tmp_path: Path) -> None:
    resolved = trainer.resolve({"box": 12.5, "cls": 0.3, "dfl": 2.0, "batch": 8, "accumulate_steps": 8})
    args = ultralytics_train_args(
        resolved, data_yaml=tmp_path / "data.yaml", save_dir=tmp_path / "run", device="cpu", workers=0
    )
    assert (args["box"], args["cls"], args["dfl"]) == (12.5, 0.3, 2.0)
    assert args["batch"] == 8 and args["nbs"] == 64 and args["lr0"] == pytest.approx(0.01)
    assert args["optimizer"] == "SGD" and args["plots"] is False and args["project"] is None
    assert args["save_dir"] == str(tmp_path / "run") and args["pretrained"] is False


def test_ultralytics_builds_the_optimizer_class_each_name_maps_to() -> None:
    """The guard compares ``type(optimizer).__name__`` with these: check Ultralytics agrees."""
    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    import torch
    from ultralytics.engine.trainer import BaseTrainer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    for name, torch_class in OPTIMIZERS.items():
        built = BaseTrainer.build_optimizer(
            SimpleNamespace(), model, name=name, lr=0.01, momentum=0.9, decay=1e-4
        )
        assert type(built).__name__ == torch_class


# ----------------------------------------------------------------------------- model sources


def test_weights_missing_on_disk_fail_at_once_without_download(
    trainer: YoloDetectionTrainer, tmp_path: Path
) -> None:
    start = time.monotonic()
    with pytest.raises(UsageError, match=r"yolo11n\.pt.*not found on disk.*never\s+downloads"):
        trainer.fit(
            {"model": "yolo11n.pt", "data": str(tmp_path), "epochs": 1}, _no_report, _context(tmp_path)
        )
    # warm by construction: the weights check runs in train() before anything is imported (no
    # Ultralytics, no torch), so this bounds hemotune's own check, not a cold import
    assert time.monotonic() - start < 5
    assert not list(tmp_path.rglob("*.pt"))
    assert trainer.validate({"model": "weights/missing.pt"}, []) and "not found on disk" in model_problem(
        "x.pt"
    )
    assert "URLs are not allowed" in (model_problem("https://example.com/yolo11n.pt") or "")
    assert "must be a model .yaml" in (model_problem("yolo11n") or "")
    assert model_problem("yolo11n.yaml") is None and model_problem("yolo11s.yaml") is None
    assert "no such model config" in (model_problem("yolo99z.yaml") or "")
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"not really weights")
    assert model_problem(str(weights)) is None  # a file on disk is allowed (fine-tuning)
    assert trainer.validate({"model": "yolo11n.yaml", "imgsz": 100}, [])[0].startswith("imgsz 100")


def test_trial_data_yaml_points_at_the_folder_the_trial_sees(tmp_path: Path) -> None:
    built = tmp_path / "built-here"
    (built / "images").mkdir(parents=True)
    (built / "data.yaml").write_text(
        yaml.safe_dump({"path": "/elsewhere/abc", "train": "images/train", "names": {}})
    )
    out = trial_data_yaml(built, tmp_path / "trial")
    assert yaml.safe_load(out.read_text())["path"] == str(built.resolve())


# ----------------------------------------------------------------------------- guards (fake trainer objects)


def _fake_trainer(**overrides: Any) -> SimpleNamespace:
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.005)
    optimizer.param_groups[0]["initial_lr"] = 0.005
    fields: dict[str, Any] = {
        "batch_size": 4,
        "args": SimpleNamespace(batch=4, imgsz=128, nbs=32, warmup_epochs=3.0),
        "optimizer": optimizer,
        "train_loader": [None] * 8,
        "epochs": 2,
        "epoch": 1,
        "accumulate": 8,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def _guarded_run(trainer: YoloDetectionTrainer, tmp_path: Path) -> UltralyticsRun:
    resolved = trainer.resolve({"imgsz": 128, "batch": 4, "accumulate_steps": 8, "epochs": 2, "data": "x"})
    run = UltralyticsRun(resolved, _no_report, _context(tmp_path))
    run._on_pretrain_routine_end(_fake_trainer(epoch=0))
    return run


def test_guards_accept_what_was_asked_and_warmup_ramps(trainer: YoloDetectionTrainer, tmp_path: Path) -> None:
    run = _guarded_run(trainer, tmp_path)
    run._on_train_epoch_start(_fake_trainer())
    run._on_train_epoch_end(_fake_trainer(epoch=0, accumulate=7))  # warm-up epoch: ramping 1 -> 8
    run._on_train_epoch_end(_fake_trainer(epoch=1, accumulate=8))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 2}, "batch size to 2"),  # out-of-memory halving
        ({"epoch": 1, "accumulate": 4}, "accumulates 4 micro-batches, expected 8"),  # after warm-up
        ({"epoch": 0, "accumulate": 9}, "expected 1..8"),  # never past the target, even in warm-up
    ],
)
def test_guards_fail_the_trial_when_ultralytics_changes_it(
    trainer: YoloDetectionTrainer, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    run = _guarded_run(trainer, tmp_path)
    with pytest.raises(TrialConfigurationError, match=message):
        run._on_train_epoch_end(_fake_trainer(**change))


def test_guards_catch_optimizer_and_lr_changes(trainer: YoloDetectionTrainer, tmp_path: Path) -> None:
    import torch

    run = _guarded_run(trainer, tmp_path)
    adamw = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.005)
    with pytest.raises(TrialConfigurationError, match="optimizer AdamW, asked SGD"):
        run._on_train_epoch_start(_fake_trainer(optimizer=adamw))
    resolved = trainer.resolve({"imgsz": 128, "batch": 4, "accumulate_steps": 8, "epochs": 2, "data": "x"})
    fresh = UltralyticsRun(resolved, _no_report, _context(tmp_path))
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sgd.param_groups[0]["initial_lr"] = 0.1
    with pytest.raises(TrialConfigurationError, match=r"lr0 is 0\.1"):
        fresh._on_pretrain_routine_end(_fake_trainer(optimizer=sgd, epoch=0))
    with pytest.raises(TrialConfigurationError, match="imgsz is 160"):
        fresh._on_pretrain_routine_end(
            _fake_trainer(args=SimpleNamespace(batch=4, imgsz=160, nbs=32), epoch=0)
        )


def test_a_run_shorter_than_one_accumulation_fails_at_setup(
    trainer: YoloDetectionTrainer, tmp_path: Path
) -> None:
    """8 micro-batches in all (4 per epoch x 2) for accumulate_steps 16: Ultralytics would cap it at 8."""
    resolved = trainer.resolve({"imgsz": 128, "batch": 4, "accumulate_steps": 16, "epochs": 2, "data": "x"})
    run = UltralyticsRun(resolved, _no_report, _context(tmp_path))
    short = _fake_trainer(args=SimpleNamespace(batch=4, imgsz=128, nbs=64), train_loader=[None] * 4, epoch=0)
    with pytest.raises(TrialConfigurationError, match=r"accumulate_steps 16 .* only 8 in all .* <= 8"):
        run._on_pretrain_routine_end(short)


def test_importing_the_trainer_and_data_layer_stays_cheap() -> None:
    code = (
        "import sys, hemotune.trainers.yolo_detection, hemotune.data.detection\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ultralytics', 'ray', 'mlflow'))\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_only_ultralytics_no_op_callbacks_and_ours_survive() -> None:
    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    from ultralytics.utils import events
    from ultralytics.utils.callbacks import base, platform

    assert is_allowed_callback(base.on_fit_epoch_end)
    assert not is_allowed_callback(platform.callbacks["on_pretrain_routine_start"])
    assert not is_allowed_callback(events.callbacks["on_train_end"])
    assert is_allowed_callback(UltralyticsRun.run)


def test_the_amp_check_is_offline_and_fails_loudly_on_blacklisted_gpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from ultralytics.engine import trainer as trainer_module

    def fake_model(device_type: str) -> Any:
        parameter = SimpleNamespace(device=SimpleNamespace(type=device_type))
        return SimpleNamespace(parameters=lambda: iter([parameter]))

    assert offline_amp_check(fake_model("cpu")) is False
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    assert offline_amp_check(fake_model("cuda")) is True
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA GeForce GTX 1660 SUPER")
    with pytest.raises(TrialConfigurationError, match="set amp: false"):
        offline_amp_check(fake_model("cuda"))
    original = trainer_module.check_amp
    with ultralytics_session():
        assert trainer_module.check_amp is offline_amp_check
    assert trainer_module.check_amp is original


# ----------------------------------------------------------------------------- the search-space file


def test_search_space_file_validates_with_its_presets() -> None:
    assert validate_file(str(SPACE_FILE)) == ["as written", "preset plumbing", "preset smoke"]
    space = load_space(str(SPACE_FILE), check_data=False)
    assert space.trainer == "yolo_detection" and space.objective.metric == "val/mAP50-95"
    assert space.dataset.format == "voc" and space.dataset.options["classes"] == BCCD_CLASSES
    assert space.budget.epochs == 120
    trainer = get_trainer("yolo_detection")
    baseline = trainer.resolve(space.trial_params(space.points_to_evaluate[0]))
    assert (baseline["lr0"], baseline["nbs"], baseline["optimizer"]) == (pytest.approx(0.01), 64, "SGD")
    assert (baseline["box"], baseline["cls"], baseline["dfl"]) == (7.5, 0.5, 1.5)
    tuned = trainer.resolve(space.trial_params(space.points_to_evaluate[1]))
    assert tuned["nbs"] == 128 and tuned["lr0"] == pytest.approx(0.02)


@pytest.mark.parametrize(("preset", "train_images", "epochs"), [("smoke", 205, 6), ("plumbing", 32, 2)])
def test_smoke_and_plumbing_presets_never_cap_accumulation(
    preset: str, train_images: int, epochs: int
) -> None:
    space = load_space(str(SPACE_FILE), preset=preset, check_data=False)
    assert space.budget.num_samples == 4 and space.budget.epochs == epochs and space.resources.cpu == 1
    steps = next(p for p in space.parameters if p.name == "accumulate_steps").choices or ()
    images = space.dataset.options.get("max_train_images", 205)  # the smoke preset trains on all 205
    assert images == train_images
    batches_per_epoch = math.ceil(images / space.fixed["batch"])
    for k in steps:
        assert expected_accumulate(k, batches_per_epoch, space.budget.epochs) == k


@pytest.mark.parametrize(
    ("preset", "sets", "train_images"),
    [
        ("smoke", [], 205),  # the README's command: --preset smoke, all 205 train images
        ("plumbing", [], 32),
        # tests/test_integration.py: the plumbing preset shrunk further
        ("plumbing", ["dataset.max_train_images=16", "dataset.max_val_images=8", "fixed.imgsz=64"], 16),
        (None, [], 205),  # the real search on the BCCD train split (205 images)
    ],
)
def test_shipped_presets_and_known_points_run_every_accumulation_uncapped(
    preset: str | None, sets: list[str], train_images: int
) -> None:
    """Every accumulate_steps the space can sample or start with fits in the run's micro-batches."""
    space = load_space(str(SPACE_FILE), preset=preset, sets=sets, check_data=False)
    images = space.dataset.options.get("max_train_images", train_images)
    assert images == train_images
    batches_per_epoch = math.ceil(images / space.fixed["batch"])
    choices = next(p for p in space.parameters if p.name == "accumulate_steps").choices or ()
    known = [point["accumulate_steps"] for point in space.points_to_evaluate]
    assert set(known) <= set(choices) and 8 in known
    for k in [*choices, *known]:
        assert accumulation_cap_problem(k, batches_per_epoch, space.budget.epochs) is None, (preset, sets, k)


def test_a_broken_copy_with_an_unknown_optimizer_fails(tmp_path: Path) -> None:
    raw = yaml.safe_load(SPACE_FILE.read_text())
    broken = copy.deepcopy(raw)
    broken["parameters"]["optimizer"]["choices"] = ["SGD", "Lion"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(
        SpaceValidationError, match=r"parameters\.optimizer\.choices\[1\].*'Lion' is not allowed"
    ):
        validate_file(str(path))
    broken = copy.deepcopy(raw)
    broken["fixed"]["optimizer"] = "auto"
    broken["parameters"].pop("optimizer")
    broken["points_to_evaluate"] = []
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(SpaceValidationError, match=r"fixed\.optimizer"):
        validate_file(str(path))


def test_dataset_options_are_checked(trainer: YoloDetectionTrainer, tmp_path: Path) -> None:
    from hemotune.errors import DataError

    with pytest.raises(DataError, match=r"dataset\.classes"):
        trainer.prepare_data({"path": str(tmp_path), "classes": ["RBC", "rbc"]}, {}, tmp_path)
    with pytest.raises(
        DataError, match=r"dataset\.shuffle: unknown dataset option for trainer 'yolo_detection'"
    ):
        trainer.prepare_data({"path": str(tmp_path), "shuffle": True}, {}, tmp_path)


def test_dataset_problems_name_the_key_and_what_is_wrong(trainer: YoloDetectionTrainer) -> None:
    """The one check behind space validation and ``prepare_data``: format, unknown options, bad values."""
    problems = trainer.dataset_problems(
        {"path": "x", "format": "coco", "shuffle": True, "max_val_images": 0, "classes": None}
    )
    assert problems == [
        ("dataset.format", "'coco' is not allowed; allowed: auto, voc, yolo"),
        (
            "dataset.shuffle",
            "unknown dataset option for trainer 'yolo_detection'; allowed: path, format, classes, "
            "max_train_images, max_val_images, selection_seed, val_fraction",
        ),
        ("dataset.max_val_images", "must be >= 1, got 0"),
    ]
    assert trainer.dataset_problems({"path": "x", "format": "voc", "classes": BCCD_CLASSES}) == []


# ----------------------------------------------------------------------------- best epoch by the objective

#: Three epochs whose best differs by metric: mAP50-95 peaks at 2, mAP50 at 3, box loss is lowest at 1,
#: and so is the AP50 of WBC (the second class).
CURVES = {
    1: {"metrics/mAP50-95(B)": 0.10, "metrics/mAP50(B)": 0.20, "val/box_loss": 1.0, "ap50": [0.3, 0.6]},
    2: {"metrics/mAP50-95(B)": 0.30, "metrics/mAP50(B)": 0.25, "val/box_loss": 1.4, "ap50": [0.2, 0.5]},
    3: {"metrics/mAP50-95(B)": 0.20, "metrics/mAP50(B)": 0.40, "val/box_loss": 1.2, "ap50": [0.6, 0.2]},
}


def _epoch_end_trainer(epoch: int, folder: Path) -> SimpleNamespace:
    """What ``on_fit_epoch_end`` reads from an Ultralytics trainer after validating 1-based ``epoch``."""
    curve = CURVES[epoch]
    last = folder / f"last-{epoch}.pt"
    last.write_text(f"weights after epoch {epoch}")  # not a torch file: saved as is
    metrics = {k: v for k, v in curve.items() if k != "ap50"}
    metrics.update(
        {"metrics/precision(B)": 0.5, "metrics/recall(B)": 0.5, "val/cls_loss": 1.0, "val/dfl_loss": 1.0}
    )
    box = SimpleNamespace(ap_class_index=[0, 1], ap50=curve["ap50"])
    return SimpleNamespace(
        epoch=epoch - 1,
        metrics=metrics,
        tloss=None,
        label_loss_items=lambda loss, prefix: {f"{prefix}/box_loss": 1.0, f"{prefix}/cls_loss": 1.0},
        data={"names": {0: "RBC", 1: "WBC"}},
        validator=SimpleNamespace(metrics=SimpleNamespace(box=box)),
        optimizer=SimpleNamespace(param_groups=[{"lr": 0.01}]),
        accumulate=2,
        batch_size=4,
        epoch_time=1.0,
        last=last,
        csv=folder / "results.csv",
    )


def _run_epochs(
    trainer: YoloDetectionTrainer, workdir: Path, objective: str | None, mode: str
) -> tuple[UltralyticsRun, Recorder]:
    resolved = trainer.resolve({"imgsz": 64, "batch": 4, "accumulate_steps": 2, "epochs": 3, "data": "x"})
    report = Recorder()
    run = UltralyticsRun(resolved, report, TrialContext(workdir=workdir, objective=objective, mode=mode))
    workdir.mkdir(parents=True, exist_ok=True)
    for epoch in CURVES:
        run.pending_epoch = True  # as _on_train_epoch_end leaves it
        run._on_fit_epoch_end(_epoch_end_trainer(epoch, workdir))
    return run, report


@pytest.mark.parametrize(
    ("objective", "mode", "best_epoch", "best_value"),
    [
        (None, "max", 2, 0.30),  # the default: val/mAP50-95
        ("val/mAP50", "max", 3, 0.40),
        ("val/box_loss", "min", 1, 1.0),
        ("val/AP50/WBC", "max", 1, 0.6),
    ],
)
def test_best_epoch_and_weights_follow_the_search_objective(
    trainer: YoloDetectionTrainer,
    tmp_path: Path,
    objective: str | None,
    mode: str,
    best_epoch: int,
    best_value: float,
) -> None:
    run, report = _run_epochs(trainer, tmp_path / "trial", objective, mode)
    summary = run.summary()
    metric = objective or "val/mAP50-95"
    assert summary["best_epoch"] == best_epoch
    assert summary[f"best/{metric}"] == pytest.approx(best_value)
    best_metrics = report.calls[best_epoch - 1][0]
    assert summary["best/val/mAP50-95"] == best_metrics["val/mAP50-95"]
    assert summary["best/val/mAP50"] == best_metrics["val/mAP50"]
    exported = [
        epoch for epoch, (_, _, artifacts) in enumerate(report.calls, 1) if "weights/best.pt" in artifacts
    ]
    assert exported[0] == 1 and exported[-1] == best_epoch  # the first epoch is always a best
    best_pt = tmp_path / "trial" / "weights" / "best.pt"
    assert best_pt.read_text() == f"weights after epoch {best_epoch}"
    # a resumed run keeps the best epoch it was chosen by; another objective cannot resume it
    checkpoint = report.calls[-1][1]
    assert checkpoint is not None
    resumed = UltralyticsRun(
        run.resolved, _no_report, TrialContext(workdir=tmp_path / "again", objective=objective, mode=mode)
    )
    resumed._restore(checkpoint)
    assert resumed.summary()["best_epoch"] == best_epoch
    other = UltralyticsRun(
        run.resolved, _no_report, TrialContext(workdir=tmp_path / "other", objective="val/recall")
    )
    with pytest.raises(TrialConfigurationError, match="mix two objectives"):
        other._restore(checkpoint)


# ----------------------------------------------------------------------------- real training (slow)


class Recorder:
    """A ``report`` that keeps every call (and can stop the trial, like a scheduler would)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[dict[str, float], Path | None, dict[str, Path]]] = []
        self.stop_after = stop_after

    def __call__(
        self,
        metrics: Mapping[str, float],
        *,
        checkpoint: Path | None = None,
        artifacts: Mapping[str, Path] | None = None,
    ) -> None:
        self.calls.append((dict(metrics), checkpoint, dict(artifacts or {})))
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise StopTrial

    @property
    def epochs(self) -> list[int]:
        return [int(m["epoch"]) for m, _, _ in self.calls]


class StopTrial(Exception):
    pass


def _no_report(
    metrics: Mapping[str, float],
    *,
    checkpoint: Path | None = None,
    artifacts: Mapping[str, Path] | None = None,
) -> None:
    pass


def _context(workdir: Path, resume_from: Path | None = None) -> TrialContext:
    return TrialContext(workdir=workdir, resume_from=resume_from, device="cpu", seed=0)


@pytest.fixture(scope="module")
def tiny_bccd(bccd_dir: Path, cache_dir: Path) -> str:
    """12 train and 6 val BCCD images, converted once."""
    prepared = get_trainer("yolo_detection").prepare_data(
        {
            "path": str(bccd_dir),
            "format": "voc",
            "classes": BCCD_CLASSES,
            "max_train_images": 12,
            "max_val_images": 6,
        },
        {},
        cache_dir,
    )
    return str(prepared.path)


def _tiny_params(data: str, **overrides: Any) -> dict[str, Any]:
    return {"imgsz": 64, "batch": 4, "accumulate_steps": 2, "epochs": 2, "seed": 0, "data": data, **overrides}


def _assert_epoch_report(metrics: dict[str, float], checkpoint: Path | None, epoch: int) -> None:
    assert metrics["epoch"] == epoch
    missing = [k for k in EPOCH_METRICS if k not in metrics]
    assert not missing, f"epoch {epoch} lacks {missing}"
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert (
        checkpoint is not None
        and (checkpoint / "last.pt").is_file()
        and checkpoint_epoch(checkpoint) == epoch
    )


@pytest.mark.slow
def test_fit_reports_every_epoch_with_checkpoints(
    trainer: YoloDetectionTrainer, tiny_bccd: str, tmp_path: Path
) -> None:
    report = Recorder()
    summary = trainer.fit(_tiny_params(tiny_bccd), report, _context(tmp_path / "trial"))
    assert report.epochs == [1, 2]
    for i, (metrics, checkpoint, _) in enumerate(report.calls, 1):
        _assert_epoch_report(metrics, checkpoint, i)
    first, second = report.calls[0][0], report.calls[1][0]
    assert 1 <= first["accumulate_steps"] <= 2  # epoch 1 of 2 is warm-up: Ultralytics ramps 1 -> 2
    assert first["effective_batch"] == 4 * first["accumulate_steps"]
    assert second["accumulate_steps"] == 2 and second["effective_batch"] == 8
    best = report.calls[0][2]["weights/best.pt"]  # the first epoch is always a best
    from ultralytics import YOLO

    assert YOLO(str(best)).names == {0: "RBC", 1: "WBC", 2: "Platelets"}  # an inference model, no optimizer
    assert summary["best_epoch"] in (1.0, 2.0) and summary["epochs_completed"] == 2
    assert summary["best/val/mAP50-95"] == max(m["val/mAP50-95"] for m, _, _ in report.calls)
    args = yaml.safe_load((tmp_path / "trial" / "ultralytics" / "args.yaml").read_text())
    assert args["save_dir"] == str(tmp_path / "trial" / "ultralytics") and args["plots"] is False
    assert sorted(p.name for p in (tmp_path / "trial" / "checkpoints").iterdir()) == [
        "epoch-0001",
        "epoch-0002",
    ]


@pytest.mark.slow
def test_a_min_mode_objective_picks_the_best_epoch_of_a_real_run(
    trainer: YoloDetectionTrainer, tiny_bccd: str, tmp_path: Path
) -> None:
    """Trained for real: with ``val/box_loss`` (min) as the objective, best.pt is the lowest-loss epoch."""
    report = Recorder()
    context = TrialContext(workdir=tmp_path / "trial", seed=0, objective="val/box_loss", mode="min")
    summary = trainer.fit(_tiny_params(tiny_bccd, epochs=3), report, context)
    losses = [m["val/box_loss"] for m, _, _ in report.calls]
    assert len(losses) == 3 and summary["best/val/box_loss"] == min(losses)
    assert summary["best_epoch"] == losses.index(min(losses)) + 1
    exported = [
        epoch for epoch, (_, _, artifacts) in enumerate(report.calls, 1) if "weights/best.pt" in artifacts
    ]
    assert exported[-1] == summary["best_epoch"]


@pytest.mark.slow
def test_a_run_too_short_for_its_accumulation_fails_the_trial(
    trainer: YoloDetectionTrainer, tiny_bccd: str, tmp_path: Path
) -> None:
    """12 images at batch 8 are 2 micro-batches per epoch, 4 in 2 epochs: fewer than accumulate_steps 8.

    Ultralytics would cap accumulation at 4 while lr0 stays scaled for 8 micro-batches per
    step; the trial fails before any training step, naming the cap and how to avoid it.
    """
    report = Recorder()
    message = (
        r"12 train images at batch 8: accumulate_steps 8 needs 8 micro-batches per optimizer step, "
        r"but the run has only 4 in all \(2 per epoch x 2 epochs\): Ultralytics would cap accumulation "
        r"at 4 .*use accumulate_steps <= 4, or more train images or epochs"
    )
    with pytest.raises(TrialConfigurationError, match=message):
        trainer.fit(
            _tiny_params(tiny_bccd, batch=8, accumulate_steps=8), report, _context(tmp_path / "trial")
        )
    assert report.epochs == []
    assert not (tmp_path / "trial" / "checkpoints").exists()


@pytest.fixture(scope="module")
def interrupted(tiny_bccd: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recorder]:
    """A 2-epoch trial stopped after its first report; its checkpoint moved away from the trial folder."""
    trainer = get_trainer("yolo_detection")
    workdir = tmp_path_factory.mktemp("first-node")
    report = Recorder(stop_after=1)
    with pytest.raises(StopTrial):
        trainer.fit(_tiny_params(tiny_bccd), report, _context(workdir))
    assert report.epochs == [1]
    moved = tmp_path_factory.mktemp("checkpoint-copy") / "ckpt"
    shutil.copytree(report.calls[0][1], moved)  # type: ignore[arg-type]
    shutil.rmtree(workdir)  # another machine: nothing of the first trial folder is left
    return moved, report


@pytest.mark.slow
def test_resume_in_a_new_workdir_continues_to_the_same_total(
    trainer: YoloDetectionTrainer, tiny_bccd: str, interrupted: tuple[Path, Recorder], tmp_path: Path
) -> None:
    checkpoint, _ = interrupted
    report = Recorder()
    summary = trainer.fit(_tiny_params(tiny_bccd), report, _context(tmp_path / "second-node", checkpoint))
    assert report.epochs == [2]  # continues the numbering, ends at epochs=2 like an uninterrupted run
    _assert_epoch_report(report.calls[0][0], report.calls[0][1], 2)
    assert summary["epochs_completed"] == 2
    with (tmp_path / "second-node" / "ultralytics" / "results.csv").open() as fh:
        assert [int(float(row["epoch"])) for row in csv.DictReader(fh)] == [1, 2]
    args = yaml.safe_load((tmp_path / "second-node" / "ultralytics" / "args.yaml").read_text())
    assert args["save_dir"] == str(tmp_path / "second-node" / "ultralytics")
    assert args["data"] == str(tmp_path / "second-node" / "data.yaml") and args["epochs"] == 2
    # resuming from the final checkpoint trains nothing more
    done = Recorder()
    again = trainer.fit(_tiny_params(tiny_bccd), done, _context(tmp_path / "third", report.calls[0][1]))
    assert done.calls == [] and again["epochs_completed"] == 2


@pytest.mark.slow
def test_resume_with_other_parameters_fails(
    trainer: YoloDetectionTrainer, tiny_bccd: str, interrupted: tuple[Path, Recorder], tmp_path: Path
) -> None:
    checkpoint, _ = interrupted
    assert (checkpoint / STATE_FILE).is_file()
    with pytest.raises(TrialConfigurationError, match=r"box: 7\.5 -> 9\.0"):
        trainer.fit(_tiny_params(tiny_bccd, box=9.0), _no_report, _context(tmp_path, checkpoint))
