"""The classification model registry: name -> how to build it from scratch (or from a file on disk).

Two families share one training loop:

* ``timm``: ``timm.create_model(name, pretrained=False, num_classes=K)``;
  inputs normalised with the model's ``pretrained_cfg`` mean and std;
* ``ultralytics``: ``ClassificationModel("<name>.yaml", nc=K)`` (the scale letter
  in the name picks the width/depth), wrapped so it always returns logits;
  inputs scaled to [0, 1] as Ultralytics does.

Nothing is ever downloaded: ``pretrained`` is a path to a weights file on disk
(a state dict, a timm ``.safetensors``/``.pth``, an Ultralytics ``.pt`` or a
hemotune ``best.pt``); a missing file is a ``UsageError``. Only torch-free data
lives at module level; torch, timm and ultralytics are imported when building.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemotune.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    source: str
    min_imgsz: int = 32
    note: str = ""


_SPECS = (
    ModelSpec("resnet18", "timm", "resnet18", note="11.7 M parameters"),
    ModelSpec("resnet50", "timm", "resnet50", note="25.6 M"),
    ModelSpec("densenet121", "timm", "densenet121", note="8.0 M; the PBC study's model"),
    ModelSpec("tf_efficientnetv2_b0", "timm", "tf_efficientnetv2_b0", note="7.1 M, EfficientNetV2-B0"),
    ModelSpec("efficientnetv2_rw_t", "timm", "efficientnetv2_rw_t", note="13.6 M, EfficientNetV2 tiny"),
    ModelSpec("mobilenetv2_100", "timm", "mobilenetv2_100", note="3.5 M"),
    ModelSpec("mobilenetv3_small_100", "timm", "mobilenetv3_small_100", note="2.5 M"),
    ModelSpec("mobilenetv3_large_100", "timm", "mobilenetv3_large_100", note="5.5 M"),
    ModelSpec("mnasnet_100", "timm", "mnasnet_100", note="4.4 M"),
    ModelSpec("inception_resnet_v2", "timm", "inception_resnet_v2", min_imgsz=75, note="55.8 M"),
    ModelSpec("mobilevit_xxs", "timm", "mobilevit_xxs", note="1.3 M, MobileViT"),
    ModelSpec("yolo11n-cls", "ultralytics", "yolo11n-cls.yaml", note="1.5 M; the leukemia study's model"),
    ModelSpec("yolo11s-cls", "ultralytics", "yolo11s-cls.yaml", note="5.5 M"),
    ModelSpec("yolov8n-cls", "ultralytics", "yolov8n-cls.yaml", note="1.4 M"),
    ModelSpec("yolov8s-cls", "ultralytics", "yolov8s-cls.yaml", note="5.1 M"),
)
MODELS: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name lists the valid ones."""
    if name not in MODELS:
        raise UsageError(f"unknown classification model {name!r}; available: {', '.join(MODEL_NAMES)}")
    return MODELS[name]


@dataclass
class BuiltModel:
    """A model ready to train, with the input normalisation it expects."""

    module: torch.nn.Module
    spec: ModelSpec
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_info: Mapping[str, Any]


def build_model(name: str, num_classes: int, pretrained: str = "") -> BuiltModel:
    """Build ``name`` from scratch with ``num_classes`` outputs, then load ``pretrained`` if given."""
    spec = get_spec(name)
    if pretrained:
        weights = pretrained_path(pretrained)  # fail before building anything
    if spec.family == "timm":
        import timm

        module = timm.create_model(spec.source, pretrained=False, num_classes=num_classes)
        cfg = getattr(module, "pretrained_cfg", {}) or {}
        mean, std = _triple(cfg.get("mean", IMAGENET_MEAN)), _triple(cfg.get("std", IMAGENET_STD))
    else:
        module = _build_ultralytics(spec.source, num_classes)
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    info: Mapping[str, Any] = {}
    if pretrained:
        target = module.get_submodule("net") if spec.family == "ultralytics" else module
        info = load_weights(target, weights, name)
    return BuiltModel(module, spec, mean, std, info)


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


@contextlib.contextmanager
def _quiet_ultralytics() -> Iterator[None]:
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _build_ultralytics(yaml_name: str, num_classes: int) -> torch.nn.Module:
    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    import torch
    from ultralytics.nn.tasks import ClassificationModel

    class UltralyticsLogits(torch.nn.Module):
        """An Ultralytics classifier that returns logits in train and eval mode alike."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            return out[1] if isinstance(out, tuple) else out  # eval mode gives (softmax, logits)

    class QuietClassificationModel(ClassificationModel):
        def info(self, *args: Any, **kwargs: Any) -> None:
            """Skipped: Ultralytics profiles FLOPs at 640 px here (about 4 s on a CPU)."""

    with _quiet_ultralytics():
        net = QuietClassificationModel(yaml_name, nc=num_classes, verbose=False)
    return UltralyticsLogits(net)


def pretrained_path(value: str) -> Path:
    """The weights file ``value`` names; anything else is a clear ``UsageError`` (never a download)."""
    path = Path(value).expanduser()
    if not path.is_file():
        raise UsageError(
            f"pretrained weights file not found: {value!r}. hemotune never downloads weights: put the file "
            f"on disk (on every node) and pass its path, or leave pretrained empty to train from scratch"
        )
    return path.resolve()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # Ultralytics .pt files pickle whole modules; this is a local file the user named.
        from hemotune.offline import configure_ultralytics

        configure_ultralytics()
        obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict", "model_state"):
            inner = obj.get(key)
            if inner is not None and isinstance(inner, (torch.nn.Module, dict)):
                obj = inner
                break
    if isinstance(obj, torch.nn.Module):
        obj = obj.float().state_dict()
    if not isinstance(obj, dict):
        raise UsageError(f"{path}: not a weights file (expected a state dict or a checkpoint holding one)")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_weights(module: torch.nn.Module, path: Path, name: str) -> dict[str, Any]:
    """Load the tensors of ``path`` whose names and shapes match (a new head stays random)."""
    state = _read_state_dict(path)
    own = module.state_dict()
    if not any(k in own for k in state) and all(k.startswith("net.") for k in state):
        state = {k.removeprefix("net."): v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not usable:
        raise UsageError(f"{path}: no tensor matches model {name!r} (weights of another architecture?)")
    module.load_state_dict(usable, strict=False)
    return {
        "file": str(path),
        "loaded": len(usable),
        "skipped": len(state) - len(usable),
        "left_random": len(own) - len(usable),
    }
