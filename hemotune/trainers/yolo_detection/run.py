"""YOLO detection with Ultralytics: one trial = one ``YOLO(model).train(...)`` running exactly its params.

How a parameter reaches Ultralytics (say the box-loss gain): the search-space
file's ``box`` -> the trial's ``params["box"]`` -> ``resolve`` (defaults filled in,
derived values added) -> ``ultralytics_train_args`` (``box=...``) ->
``YOLO(...).train(**args)`` -> ``v8DetectionLoss`` multiplies the box loss by it.

Gradient accumulation is not an Ultralytics argument: it runs
``accumulate = max(round(nbs / batch), 1)`` micro-batches per optimizer step. So
``accumulate_steps`` K at micro-batch ``batch`` b is passed as ``nbs = b*K``
(Ultralytics then rescales weight decay by ``b*K/nbs = 1``: unchanged). The
learning rate follows the study's recipe, linear scaling from a reference batch::

    lr0 = base_lr * (batch * accumulate_steps / reference_batch) ** p    # p = 1 (linear), 0.5, 0

Guards (``TrialConfigurationError``, checked from Ultralytics callbacks): the
micro-batch, the optimizer class, ``lr0``, ``imgsz`` and ``nbs`` are what was
asked (no AutoBatch, no OOM batch halving, no ``optimizer=auto``), and outside
warm-up ``accumulate`` is ``expected_accumulate(...)``: K, or the number of
micro-batches in the whole run if that is smaller (Ultralytics' own cap: with
fewer micro-batches than K not a single optimizer step could happen).

Offline and quiet: ``configure_ultralytics()`` runs before Ultralytics is
imported, Ultralytics' integration callbacks (hub/platform, events, MLflow, ...)
are removed from each trainer, plots are off, its logger is raised to WARNING,
and on CUDA its AMP check (which downloads yolo26n.pt) is replaced by an offline
one. Ultralytics is imported inside ``fit`` only: the registry stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from hemotune.errors import DataError, TrialConfigurationError, UsageError
from hemotune.trainers.base import Metrics, ParamSpec, PreparedData, Report, Trainer, TrialContext

#: hemotune's optimizer names -> the torch class Ultralytics builds (it matches names case-insensitively).
OPTIMIZERS: dict[str, str] = {
    "SGD": "SGD",
    "Adam": "Adam",
    "AdamW": "AdamW",
    "NAdam": "NAdam",
    "RAdam": "RAdam",
    "RMSProp": "RMSprop",
}
#: lr_scaling -> exponent p of (effective_batch / reference_batch) ** p.
LR_SCALING = {"linear": 1.0, "sqrt": 0.5, "none": 0.0}
#: Ultralytics' grid size: imgsz must be a multiple of it or Ultralytics changes it.
IMGSZ_STRIDE = 32
STATE_FILE = "hemotune_state.json"
STATE_VERSION = 1
#: Parameters whose change between a checkpoint and its resumption does not change the run.
RESUME_MAY_DIFFER = frozenset({"data", "workers"})
_METRIC_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ :]")

#: Values used for parameters a trial does not set: Ultralytics' defaults, except
#: ``optimizer`` (SGD, never ``auto``) and ``patience`` (0: no early stop; ASHA decides).
DEFAULTS: dict[str, Any] = {
    "model": "yolo11n.yaml",
    "imgsz": 640,
    "batch": 16,
    "accumulate_steps": 4,
    "base_lr": 0.01,
    "reference_batch": 64,
    "lr_scaling": "linear",
    "lrf": 0.01,
    "optimizer": "SGD",
    "momentum": 0.937,
    "weight_decay": 0.0005,
    "warmup_epochs": 3.0,
    "warmup_momentum": 0.8,
    "warmup_bias_lr": 0.1,
    "box": 7.5,
    "cls": 0.5,
    "dfl": 1.5,
    "cos_lr": False,
    "close_mosaic": 10,
    "mosaic": 1.0,
    "mixup": 0.0,
    "fliplr": 0.5,
    "flipud": 0.0,
    "hsv_h": 0.015,
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "scale": 0.5,
    "translate": 0.1,
    "degrees": 0.0,
    "amp": True,
    "patience": 0,
    "deterministic": True,
    "epochs": 100,
    "seed": 0,
}
#: Augmentation parameters passed to Ultralytics under the same name.
AUGMENTATIONS = (
    "mosaic",
    "mixup",
    "fliplr",
    "flipud",
    "hsv_h",
    "hsv_s",
    "hsv_v",
    "scale",
    "translate",
    "degrees",
)


@dataclass(frozen=True)
class _ClassListSpec(ParamSpec):
    """A dataset option holding a list of class names (``[RBC, WBC, Platelets]``)."""

    def problems(self, value: Any) -> list[str]:
        example = "a non-empty list of class names, e.g. [RBC, WBC, Platelets]"
        if not isinstance(value, (list, tuple)) or not value:
            return [f"must be {example}, got {value!r}"]
        if not all(isinstance(v, str) and v.strip() for v in value):
            return [f"must be {example}; every name a non-empty string, got {value!r}"]
        keys = ["".join(v.split()).casefold() for v in value]
        if len(set(keys)) != len(keys):
            return [f"has duplicate names (ignoring case): {list(value)!r}"]
        return []


def _unit(help_text: str) -> ParamSpec:
    return ParamSpec("float", help_text, low=0.0, high=1.0)


def _gain(help_text: str) -> ParamSpec:
    return ParamSpec("float", help_text, low=0.0, low_exclusive=True)


# ----------------------------------------------------------------------------- pure helpers


def learning_rate(
    base_lr: float, effective_batch: int, reference_batch: int, scaling: str = "linear"
) -> float:
    """``lr0`` for ``effective_batch`` images per step; ``base_lr`` is defined at ``reference_batch``."""
    return float(base_lr) * (effective_batch / reference_batch) ** LR_SCALING[scaling]


def expected_accumulate(accumulate_steps: int, batches_per_epoch: int, epochs: int) -> int:
    """Micro-batches per optimizer step Ultralytics runs after warm-up for ``nbs = batch * accumulate_steps``.

    Ultralytics computes ``max(round(nbs / batch), 1)`` (= ``accumulate_steps``)
    and caps it at the number of micro-batches in the whole run.
    """
    return max(1, min(int(accumulate_steps), int(batches_per_epoch) * int(epochs)))


def effective_warmup_epochs(warmup_epochs: float, epochs: int) -> float:
    """Ultralytics leaves at least the last epoch out of warm-up: ``min(warmup_epochs, epochs - 1)``."""
    return min(float(warmup_epochs), float(max(epochs - 1, 0)))


def metric_name(name: str) -> str:
    """``name`` with characters MLflow rejects (anything but alphanumerics and ``_-./ :``) made ``_``."""
    return _METRIC_UNSAFE.sub("_", name)


def model_problem(model: str) -> str | None:
    """Why ``model`` cannot be used without a download (``None`` when it can).

    Allowed: a ``.pt`` file on disk (fine-tuning), a model ``.yaml`` on disk, or a
    model ``.yaml`` shipped with Ultralytics (built from scratch, e.g. ``yolo11n.yaml``).
    """
    path = Path(model).expanduser()
    suffix = path.suffix.lower()
    if "://" in model:
        return (
            f"model {model!r}: URLs are not allowed (hemotune never downloads weights); give a file on disk"
        )
    if suffix == ".pt":
        if not path.is_file():
            return (
                f"model {model!r}: weights file not found on disk ({path.resolve()}); hemotune never "
                "downloads weights: give the path of a .pt file, or a model .yaml (e.g. yolo11n.yaml) "
                "to train from scratch"
            )
        return None
    if suffix not in (".yaml", ".yml"):
        return f"model {model!r}: must be a model .yaml (e.g. yolo11n.yaml) or a .pt weights file on disk"
    if path.is_file() or _packaged_model_config(path.name) is not None:
        return None
    return f"model {model!r}: no such model config on disk or in the installed Ultralytics package"


def _packaged_model_config(name: str) -> Path | None:
    """The installed Ultralytics config of a model yaml name (``yolo11n.yaml`` -> ``yolo11.yaml``)."""
    import importlib.util

    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "cfg" / "models"
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(name).stem) + Path(name).suffix
    for candidate in (name, unified):
        found = sorted(models.rglob(candidate))
        if found:
            return found[0]
    return None


def ultralytics_train_args(
    resolved: Mapping[str, Any], *, data_yaml: Path, save_dir: Path, device: str, workers: int
) -> dict[str, Any]:
    """The keyword arguments of ``YOLO.train`` for a resolved parameter set (a new run, not a resume)."""
    args: dict[str, Any] = {
        "data": str(data_yaml),
        "epochs": int(resolved["epochs"]),
        "imgsz": int(resolved["imgsz"]),
        "batch": int(resolved["batch"]),
        "nbs": int(resolved["nbs"]),
        "optimizer": resolved["ultralytics_optimizer"],
        "lr0": float(resolved["lr0"]),
        "lrf": float(resolved["lrf"]),
        "momentum": float(resolved["momentum"]),
        "weight_decay": float(resolved["weight_decay"]),
        "warmup_epochs": float(resolved["warmup_epochs"]),
        "warmup_momentum": float(resolved["warmup_momentum"]),
        "warmup_bias_lr": float(resolved["warmup_bias_lr"]),
        "box": float(resolved["box"]),
        "cls": float(resolved["cls"]),
        "dfl": float(resolved["dfl"]),
        "cos_lr": bool(resolved["cos_lr"]),
        "close_mosaic": int(resolved["close_mosaic"]),
        **{k: float(resolved[k]) for k in AUGMENTATIONS},
        "amp": bool(resolved["amp"]),
        "patience": int(resolved["patience"]),
        "seed": int(resolved["seed"]),
        "deterministic": bool(resolved["deterministic"]),
        "device": device,
        "workers": int(workers),
        "pretrained": str(resolved["model"]).lower().endswith(".pt"),
        # Fixed so that a trial runs what it reports and nothing leaves the trial folder:
        "save_dir": str(save_dir),
        "project": None,
        "name": None,
        "exist_ok": True,
        "save": True,
        "save_period": -1,
        "val": True,
        "plots": False,
        "verbose": False,
        "cache": False,
        "rect": False,
        "multi_scale": 0.0,
        "fraction": 1.0,
        "time": None,
        "single_cls": False,
        "compile": False,
        "resume": False,
    }
    return args


def trial_data_yaml(data: str | Path, workdir: Path) -> Path:
    """A data.yaml in ``workdir`` whose ``path`` is the prepared folder where this trial sees it.

    The cache's own data.yaml names the folder where it was built; a trial may see
    it elsewhere (another node, a copied cache), so each trial writes its own.
    """
    location = Path(data).expanduser().resolve()
    source = location if location.is_file() else location / "data.yaml"
    if not source.is_file():
        raise DataError(f"prepared dataset not found: {source} (expected a folder with data.yaml)")
    cfg = yaml.safe_load(source.read_text())
    if not isinstance(cfg, dict):
        raise DataError(f"{source}: must hold a mapping with train, val and names")
    root = Path(str(cfg.get("path") or source.parent))
    cfg["path"] = str(location if location.is_dir() else (source.parent / root).resolve())
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "data.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


# ----------------------------------------------------------------------------- the trainer


class YoloDetectionTrainer(Trainer):
    name = "yolo_detection"
    task = "detect"
    description = "Ultralytics YOLO object detection (YOLO11n from scratch by default) on VOC or YOLO data."
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "model": ParamSpec(
            "str", "model .yaml (built from scratch) or a .pt weights file on disk; never downloaded"
        ),
        "imgsz": ParamSpec(
            "int", f"square training and validation image size, a multiple of {IMGSZ_STRIDE}", low=32
        ),
        "batch": ParamSpec("int", "micro-batch: images per forward/backward pass", low=1),
        "accumulate_steps": ParamSpec(
            "int", "micro-batches whose gradients are summed per optimizer step", low=1
        ),
        "base_lr": ParamSpec(
            "float",
            "learning rate at reference_batch images per step (lr0 is scaled from it)",
            low=0.0,
            low_exclusive=True,
        ),
        "reference_batch": ParamSpec(
            "int",
            "the images per optimizer step base_lr is defined at (Ultralytics' nbs, 64)",
            low=1,
            searchable=False,
        ),
        "lr_scaling": ParamSpec(
            "str",
            "how lr0 follows batch*accumulate_steps/reference_batch: linear (the study), sqrt or none",
            choices=tuple(LR_SCALING),
        ),
        "lrf": ParamSpec("float", "final learning rate as a fraction of lr0", low=0.0, high=1.0),
        "optimizer": ParamSpec("str", "optimizer (never auto)", choices=tuple(OPTIMIZERS)),
        "momentum": ParamSpec("float", "SGD momentum / Adam beta1", low=0.0, high=1.0),
        "weight_decay": ParamSpec(
            "float", "weight decay (not rescaled: nbs = batch*accumulate_steps)", low=0.0
        ),
        "warmup_epochs": ParamSpec(
            "float", "warm-up epochs (Ultralytics keeps the last epoch out of warm-up)", low=0.0
        ),
        "warmup_momentum": _unit("momentum at the start of warm-up"),
        "warmup_bias_lr": ParamSpec("float", "bias learning rate at the start of warm-up", low=0.0),
        "box": _gain("box (CIoU) loss gain; Ultralytics default 7.5"),
        "cls": _gain("classification loss gain; Ultralytics default 0.5"),
        "dfl": _gain("distribution focal loss gain; Ultralytics default 1.5"),
        "cos_lr": ParamSpec("bool", "cosine instead of linear learning-rate decay"),
        "close_mosaic": ParamSpec("int", "turn mosaic off for the last N epochs", low=0),
        "mosaic": _unit("mosaic augmentation probability"),
        "mixup": _unit("MixUp augmentation probability"),
        "fliplr": _unit("horizontal flip probability"),
        "flipud": _unit("vertical flip probability"),
        "hsv_h": _unit("hue augmentation (fraction)"),
        "hsv_s": _unit("saturation augmentation (fraction)"),
        "hsv_v": _unit("value (brightness) augmentation (fraction)"),
        "scale": ParamSpec("float", "scale augmentation gain (+/-)", low=0.0),
        "translate": _unit("translation augmentation (fraction, +/-)"),
        "degrees": ParamSpec("float", "rotation augmentation (degrees, +/-)", low=0.0, high=180.0),
        "amp": ParamSpec("bool", "mixed precision on CUDA (no effect on CPU)"),
        "workers": ParamSpec(
            "int",
            "dataloader workers (default: the trial's num_workers; Ultralytics uses 0 on CPU)",
            low=0,
            searchable=False,
        ),
        "patience": ParamSpec(
            "int", "Ultralytics early stop after N epochs without improvement (0: off)", low=0
        ),
        "deterministic": ParamSpec("bool", "deterministic torch algorithms", searchable=False),
        "epochs": ParamSpec("int", "number of epochs", low=1, searchable=False),
        "seed": ParamSpec("int", "random seed", searchable=False),
        "data": ParamSpec("str", "prepared dataset folder (holds data.yaml)", searchable=False),
    }
    dataset_options: ClassVar[Mapping[str, ParamSpec]] = {
        "classes": _ClassListSpec(
            "list",
            "class names in id order, e.g. [RBC, WBC, Platelets] (default: VOC sorted, YOLO data.yaml order)",
            searchable=False,
        ),
        "val_fraction": ParamSpec(
            "float",
            "val share of a seeded split, used when the source has no train/val split",
            low=0.0,
            high=1.0,
            low_exclusive=True,
            searchable=False,
        ),
        "selection_seed": ParamSpec(
            "int", "seed of the seeded split and of the max_*_images subsets", searchable=False
        ),
        "max_train_images": ParamSpec(
            "int", "keep a seeded subset of this many train images", low=1, searchable=False
        ),
        "max_val_images": ParamSpec(
            "int", "keep a seeded subset of this many val images", low=1, searchable=False
        ),
    }
    metrics = (
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
        "epoch_seconds",
    )
    metric_prefixes = ("val/AP50/",)
    dataset_formats = ("auto", "voc", "yolo")

    # ------------------------------------------------------------------ declared-parameter logic

    def validate(self, fixed: Mapping[str, Any], searched: Collection[str]) -> list[str]:
        problems = []
        model = fixed.get("model")
        if isinstance(model, str) and (problem := model_problem(model)):
            problems.append(problem)
        imgsz = fixed.get("imgsz")
        if isinstance(imgsz, int) and imgsz % IMGSZ_STRIDE:
            problems.append(
                f"imgsz {imgsz} is not a multiple of {IMGSZ_STRIDE} (Ultralytics would change it)"
            )
        return problems

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` with defaults filled in and the derived values a trial runs with.

        Adds ``effective_batch`` (= ``nbs``, images per optimizer step), ``lr0``,
        ``ultralytics_optimizer``, ``weight_decay_scale`` (Ultralytics' factor
        ``batch*accumulate/nbs``, always 1 here) and ``warmup_epochs_effective``.
        Raises ``TrialConfigurationError`` for unknown or invalid values.
        """
        values = {**DEFAULTS, **params}
        problems = [f"{k}: unknown parameter" for k in sorted(set(values) - set(self.params))]
        problems += [
            f"{k}: {p}" for k, v in values.items() if k in self.params for p in self.params[k].problems(v)
        ]
        if not problems and values["imgsz"] % IMGSZ_STRIDE:
            problems.append(f"imgsz: {values['imgsz']} is not a multiple of {IMGSZ_STRIDE}")
        if problems:
            raise TrialConfigurationError("invalid yolo_detection parameters: " + "; ".join(problems))
        effective_batch = int(values["batch"]) * int(values["accumulate_steps"])
        # Ultralytics' rule; equals accumulate_steps because nbs = batch * accumulate_steps.
        accumulate = max(round(effective_batch / int(values["batch"])), 1)
        return {
            **values,
            "effective_batch": effective_batch,
            "nbs": effective_batch,
            "lr0": learning_rate(
                values["base_lr"], effective_batch, int(values["reference_batch"]), str(values["lr_scaling"])
            ),
            "weight_decay_scale": int(values["batch"]) * accumulate / effective_batch,
            "warmup_epochs_effective": effective_warmup_epochs(
                values["warmup_epochs"], int(values["epochs"])
            ),
            "ultralytics_optimizer": OPTIMIZERS[str(values["optimizer"])],
        }

    # ------------------------------------------------------------------ data

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        """Validate and convert the VOC or YOLO set once into ``cache_dir`` (see ``hemotune.data.yolo``)."""
        from hemotune.data.yolo import prepare_detection_data

        options = {k: v for k, v in dataset.items() if k not in ("path", "format") and v is not None}
        problems = [f"dataset.{k}: unknown option" for k in options if k not in self.dataset_options]
        problems += [
            f"dataset.{k}: {p}"
            for k, v in options.items()
            if k in self.dataset_options
            for p in self.dataset_options[k].problems(v)
        ]
        if problems:
            raise DataError("; ".join(problems))
        if "path" not in dataset or not dataset["path"]:
            raise DataError("dataset.path is required")
        data_format = str(dataset.get("format") or "auto")
        if data_format not in self.dataset_formats:
            raise DataError(f"dataset.format {data_format!r}: allowed: {', '.join(self.dataset_formats)}")
        return prepare_detection_data(dataset["path"], Path(cache_dir), data_format=data_format, **options)

    # ------------------------------------------------------------------ training

    def fit(self, params: Mapping[str, Any], report: Report, context: TrialContext | None = None) -> Metrics:
        """Train one configuration with Ultralytics, reporting after every epoch (see the module doc)."""
        context = context or TrialContext.temporary()
        if "data" not in params:
            raise DataError("params['data'] is missing: the prepared dataset folder (from prepare_data)")
        seed = int(params["seed"]) if "seed" in params else context.seed
        resolved = self.resolve({**params, "seed": seed})
        problem = model_problem(str(resolved["model"]))
        if problem:
            raise UsageError(problem)
        return _UltralyticsRun(resolved, report, context).run()


# ----------------------------------------------------------------------------- one Ultralytics run


@dataclass
class _Best:
    value: float = -math.inf
    epoch: int = 0
    map50: float = 0.0


class _UltralyticsRun:
    """One trial: builds the model, attaches the guards and the reporter, trains or resumes."""

    def __init__(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> None:
        self.resolved = dict(resolved)
        self.report = report
        self.context = context
        self.workdir = Path(context.workdir).resolve()
        self.save_dir = self.workdir / "ultralytics"
        self.checkpoints = self.workdir / "checkpoints"
        self.best_weights = self.workdir / "weights" / "best.pt"
        self.best = _Best()
        self.epochs_done = 0
        self.pending_epoch = False
        self.accumulate_target = 0
        self.expected_data = ""
        self.started = time.monotonic()

    # -- entry point

    def run(self) -> Metrics:
        from hemotune.offline import configure_ultralytics

        configure_ultralytics()
        self.workdir.mkdir(parents=True, exist_ok=True)
        data_yaml = trial_data_yaml(self.resolved["data"], self.workdir)
        workers = int(self.resolved.get("workers", self.context.num_workers))
        resume_from = self.context.resume_from
        kwargs: dict[str, Any]
        if resume_from is not None:
            weights = self._restore(Path(resume_from))
            if self.epochs_done >= int(self.resolved["epochs"]):
                return self.summary()
            # Ultralytics resumes with the checkpoint's own arguments; these are the ones it lets a
            # resume change, and the ones that hold paths of the machine the checkpoint came from.
            kwargs = {
                "resume": str(weights),
                "data": str(data_yaml),
                "save_dir": str(self.save_dir),
                "device": self.context.device,
                "workers": workers,
            }
            source = str(weights)
        else:
            self._clear_outputs()
            kwargs = ultralytics_train_args(
                self.resolved,
                data_yaml=data_yaml,
                save_dir=self.save_dir,
                device=self.context.device,
                workers=workers,
            )
            source = str(self.resolved["model"])
        self.expected_data = str(data_yaml)
        with _ultralytics_session():
            from ultralytics import YOLO

            model = YOLO(source, task="detect")
            for event, callback in self._callbacks().items():
                model.add_callback(event, callback)
            model.train(**kwargs)
        return self.summary()

    def summary(self) -> Metrics:
        return {
            "best/val/mAP50-95": self.best.value if self.best.epoch else 0.0,
            "best/val/mAP50": self.best.map50,
            "best_epoch": float(self.best.epoch),
            "epochs_completed": float(self.epochs_done),
            "train_seconds": time.monotonic() - self.started,
            "effective_batch": float(self.resolved["effective_batch"]),
            "lr0": float(self.resolved["lr0"]),
        }

    # -- resume

    def _restore(self, checkpoint: Path) -> Path:
        """Check a reported checkpoint against this trial; copy what Ultralytics needs into the workdir."""
        state_path = checkpoint / STATE_FILE
        if not state_path.is_file() or not (checkpoint / "last.pt").is_file():
            raise TrialConfigurationError(
                f"{checkpoint}: not a yolo_detection checkpoint (no {STATE_FILE}/last.pt)"
            )
        state = json.loads(state_path.read_text())
        saved = {k: v for k, v in state["params"].items() if k not in RESUME_MAY_DIFFER}
        wanted = {k: v for k, v in self.resolved.items() if k not in RESUME_MAY_DIFFER}
        differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        if differ:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}" for k in differ)
            raise TrialConfigurationError(
                f"{checkpoint} was written with other parameters ({detail}); Ultralytics resumes the "
                "checkpoint's own, so resuming would not run this trial's configuration"
            )
        self.epochs_done = int(state["epoch"])
        self.best = _Best(**state["best"])
        local = self.workdir / "resume"
        if local.resolve() != checkpoint.resolve():
            if local.exists():
                shutil.rmtree(local)
            shutil.copytree(checkpoint, local)  # first: the checkpoint may lie in the folders cleared next
        self._clear_outputs()
        if (local / "results.csv").is_file():  # Ultralytics appends the resumed epochs to it
            self.save_dir.mkdir(parents=True)
            shutil.copyfile(local / "results.csv", self.save_dir / "results.csv")
        return local / "last.pt"

    def _clear_outputs(self) -> None:
        """Remove Ultralytics' run folder and checkpoints left by an earlier attempt of this trial."""
        for folder in (self.save_dir, self.checkpoints):
            if folder.exists():
                shutil.rmtree(folder)

    # -- callbacks

    def _callbacks(self) -> dict[str, Callable[[Any], None]]:
        return {
            "on_pretrain_routine_start": self._on_pretrain_routine_start,
            "on_pretrain_routine_end": self._on_pretrain_routine_end,
            "on_train_epoch_start": self._on_train_epoch_start,
            "on_train_epoch_end": self._on_train_epoch_end,
            "on_fit_epoch_end": self._on_fit_epoch_end,
        }

    def _on_pretrain_routine_start(self, trainer: Any) -> None:
        """In the trainer's __init__, right after Ultralytics added its integration callbacks: drop them."""
        for callbacks in trainer.callbacks.values():
            callbacks[:] = [cb for cb in callbacks if _is_allowed_callback(cb)]
        if Path(str(trainer.args.data)).resolve() != Path(self.expected_data).resolve():
            raise TrialConfigurationError(
                f"Ultralytics uses data {trainer.args.data}, not {self.expected_data}"
            )
        if Path(trainer.save_dir).resolve() != self.save_dir:
            raise TrialConfigurationError(f"Ultralytics writes to {trainer.save_dir}, not {self.save_dir}")

    def _on_pretrain_routine_end(self, trainer: Any) -> None:
        """After the optimizer, dataloaders and a resumed state exist: check they are what was asked."""
        r = self.resolved
        self._check_batch(trainer)
        self._check_optimizer(trainer)
        problems = []
        if int(trainer.args.imgsz) != int(r["imgsz"]):
            problems.append(f"imgsz is {trainer.args.imgsz}, asked {r['imgsz']}")
        if int(trainer.args.nbs) != int(r["nbs"]):
            problems.append(f"nbs is {trainer.args.nbs}, asked {r['nbs']}")
        for group in trainer.optimizer.param_groups:
            if not math.isclose(float(group.get("initial_lr", r["lr0"])), float(r["lr0"]), rel_tol=1e-9):
                problems.append(f"lr0 is {group.get('initial_lr')}, asked {r['lr0']}")
                break
        self.accumulate_target = expected_accumulate(
            r["accumulate_steps"], len(trainer.train_loader), trainer.epochs
        )
        if trainer.accumulate != self.accumulate_target:
            problems.append(f"accumulate is {trainer.accumulate}, expected {self.accumulate_target}")
        if problems:
            raise TrialConfigurationError("Ultralytics changed the configuration: " + "; ".join(problems))
        if self.accumulate_target != r["accumulate_steps"]:
            logging.getLogger(__name__).warning(
                "accumulate_steps %s capped at %s: the run has only %s micro-batches in all",
                r["accumulate_steps"],
                self.accumulate_target,
                len(trainer.train_loader) * trainer.epochs,
            )

    def _on_train_epoch_start(self, trainer: Any) -> None:
        """Also runs again when Ultralytics restarts an epoch after halving the batch on out-of-memory."""
        self._check_batch(trainer)
        self._check_optimizer(trainer)

    def _on_train_epoch_end(self, trainer: Any) -> None:
        self._check_batch(trainer)
        nb = len(trainer.train_loader)
        warmup = effective_warmup_epochs(trainer.args.warmup_epochs, trainer.epochs)
        warmup_iterations = round(warmup * nb) if warmup > 0 else 0
        last_iteration = nb * (trainer.epoch + 1) - 1
        in_warmup = bool(warmup_iterations) and last_iteration <= warmup_iterations
        ok = (
            (1 <= trainer.accumulate <= self.accumulate_target)
            if in_warmup
            else (trainer.accumulate == self.accumulate_target)
        )
        if not ok:
            raise TrialConfigurationError(
                f"epoch {trainer.epoch + 1}: Ultralytics accumulates {trainer.accumulate} micro-batches, "
                "expected "
                f"{'1..' if in_warmup else ''}{self.accumulate_target}"
            )
        self.pending_epoch = True

    def _check_batch(self, trainer: Any) -> None:
        batch = int(self.resolved["batch"])
        if trainer.batch_size != batch or trainer.args.batch != batch:
            raise TrialConfigurationError(
                f"Ultralytics changed the batch size to {trainer.batch_size} (asked {batch}): out-of-memory "
                "halving or AutoBatch; this trial fails instead of running another configuration"
            )

    def _check_optimizer(self, trainer: Any) -> None:
        wanted = str(self.resolved["ultralytics_optimizer"])
        got = type(trainer.optimizer).__name__ if trainer.optimizer is not None else "None"
        if got != wanted:
            raise TrialConfigurationError(f"Ultralytics built optimizer {got}, asked {wanted}")

    def _on_fit_epoch_end(self, trainer: Any) -> None:
        """After validation and saving. Ultralytics' final best.pt validation (no training) is skipped."""
        if not self.pending_epoch:
            return
        self.pending_epoch = False
        epoch = int(trainer.epoch) + 1
        metrics = self._epoch_metrics(trainer, epoch)
        artifacts: dict[str, Path] = {}
        value = metrics["val/mAP50-95"]
        if value > self.best.value or not self.best.epoch:
            self.best = _Best(value=value, epoch=epoch, map50=metrics["val/mAP50"])
            self.best_weights.parent.mkdir(parents=True, exist_ok=True)
            self._save_weights(trainer.last, self.best_weights)
            artifacts["weights/best.pt"] = self.best_weights
        self.epochs_done = epoch
        checkpoint = self._write_checkpoint(trainer, epoch)
        self.report(metrics, checkpoint=checkpoint, artifacts=artifacts)

    @staticmethod
    def _save_weights(last: Path, target: Path) -> None:
        """This epoch's model for inference: last.pt without the optimizer state (half its size)."""
        from ultralytics.utils.torch_utils import strip_optimizer

        if not strip_optimizer(last, str(target)):
            shutil.copyfile(last, target)

    def _epoch_metrics(self, trainer: Any, epoch: int) -> dict[str, float]:
        m = trainer.metrics
        out: dict[str, float] = {
            "epoch": float(epoch),
            "val/mAP50-95": float(m["metrics/mAP50-95(B)"]),
            "val/mAP50": float(m["metrics/mAP50(B)"]),
            "val/precision": float(m["metrics/precision(B)"]),
            "val/recall": float(m["metrics/recall(B)"]),
        }
        out.update({metric_name(k): float(v) for k, v in m.items() if k.startswith("val/")})
        out.update(
            {metric_name(k): float(v) for k, v in trainer.label_loss_items(trainer.tloss, "train").items()}
        )
        names = trainer.data["names"]
        box = trainer.validator.metrics.box
        for i, c in enumerate(box.ap_class_index):
            out[f"val/AP50/{metric_name(str(names[int(c)]))}"] = float(box.ap50[i])
        out["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
        out["accumulate_steps"] = float(trainer.accumulate)
        out["effective_batch"] = float(trainer.batch_size * trainer.accumulate)
        out["epoch_seconds"] = float(trainer.epoch_time or 0.0)
        return out

    def _write_checkpoint(self, trainer: Any, epoch: int) -> Path:
        """``checkpoints/epoch-NNNN``: Ultralytics' last.pt, results.csv, hemotune's state; prunes older."""
        folder = self.checkpoints / f"epoch-{epoch:04d}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        shutil.copyfile(trainer.last, folder / "last.pt")
        if Path(trainer.csv).is_file():
            shutil.copyfile(trainer.csv, folder / "results.csv")
        state = {
            "version": STATE_VERSION,
            "epoch": epoch,
            "params": {k: v for k, v in self.resolved.items() if k != "data"},
            "best": {"value": self.best.value, "epoch": self.best.epoch, "map50": self.best.map50},
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
        for old in self.checkpoints.glob("epoch-*"):
            if old.name < f"epoch-{epoch - 1:04d}":
                shutil.rmtree(old, ignore_errors=True)
        return folder


def _is_allowed_callback(callback: Any) -> bool:
    """Ultralytics' no-op defaults and hemotune's own; not its integrations (platform, events, loggers)."""
    module = getattr(callback, "__module__", "") or ""
    return module == "ultralytics.utils.callbacks.base" or module.startswith("hemotune.")


@contextlib.contextmanager
def _ultralytics_session() -> Iterator[None]:
    """Ultralytics logging at WARNING (no progress bars) and its AMP check made offline, for one run."""
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    original_check = trainer_module.check_amp
    LOGGER.setLevel(logging.WARNING)
    trainer_module.check_amp = offline_amp_check
    try:
        yield
    finally:
        trainer_module.check_amp = original_check
        LOGGER.setLevel(level)


#: GPUs Ultralytics' AMP check rejects without testing (its own list, ultralytics.utils.checks.check_amp).
_AMP_UNRELIABLE_GPUS = re.compile(
    r"(nvidia|geforce|quadro|tesla).*?(1660|1650|1630|t400|t550|t600|t1000|t1200|t2000|k40m)", re.IGNORECASE
)


def offline_amp_check(model: Any) -> bool:
    """Stand-in for Ultralytics' ``check_amp``, which downloads yolo26n.pt to compare FP32 and AMP outputs.

    Keeps its GPU blacklist but fails the trial instead of silently training
    without AMP (the trial asked for ``amp: true``). CPU and MPS: AMP off, as there.
    """
    device = next(model.parameters()).device
    if device.type in ("cpu", "mps"):
        return False
    if device.type == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(device)
        if _AMP_UNRELIABLE_GPUS.search(gpu):
            raise TrialConfigurationError(
                f"amp: true, but Ultralytics lists {gpu} as giving NaN losses or zero mAP with AMP; "
                "set amp: false"
            )
    return True


def checkpoint_epoch(checkpoint: Path) -> int:
    """The epoch a checkpoint folder written by this trainer was taken after."""
    return int(json.loads((Path(checkpoint) / STATE_FILE).read_text())["epoch"])


__all__: Sequence[str] = (
    "DEFAULTS",
    "OPTIMIZERS",
    "YoloDetectionTrainer",
    "checkpoint_epoch",
    "effective_warmup_epochs",
    "expected_accumulate",
    "learning_rate",
    "metric_name",
    "model_problem",
    "offline_amp_check",
    "trial_data_yaml",
    "ultralytics_train_args",
)
