"""The classification model registry: every listed model builds from scratch and runs forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hemotune.errors import UsageError
from hemotune.trainers.image_classification.models import MODEL_NAMES, MODELS, build_model, get_spec

REQUIRED = [
    "densenet121",
    "resnet18",
    "resnet50",
    "tf_efficientnetv2_b0",
    "efficientnetv2_rw_t",
    "mobilenetv2_100",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "mnasnet_100",
    "inception_resnet_v2",
    "mobilevit_xxs",
    "yolo11n-cls",
    "yolo11s-cls",
    "yolov8s-cls",
]


def test_registry_lists_the_required_models() -> None:
    assert set(REQUIRED) <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_builds_and_runs_forward(name: str) -> None:
    size = max(64, get_spec(name).min_imgsz + 21)  # 64 px; inception_resnet_v2 needs >= 75 (96 here)
    torch.manual_seed(0)
    built = build_model(name, num_classes=5)
    x = torch.randn(2, 3, size, size)
    built.module.train()
    out = built.module(x)
    assert out.shape == (2, 5)
    built.module.eval()
    with torch.no_grad():
        logits = built.module(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    if MODELS[name].family == "ultralytics":
        # The wrapper returns logits (not Ultralytics' eval-mode softmax).
        assert not torch.allclose(logits.sum(dim=1), torch.ones(2))
    assert len(built.mean) == 3 and len(built.std) == 3


def test_unknown_model_lists_the_valid_ones() -> None:
    with pytest.raises(UsageError, match=r"unknown classification model 'resnet19'; available: resnet18, "):
        get_spec("resnet19")


def test_pretrained_must_be_a_file_on_disk(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"pretrained weights file not found: 'imagenet'.*never downloads"):
        build_model("resnet18", 3, pretrained="imagenet")


def test_pretrained_loads_matching_tensors_and_keeps_a_new_head(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = build_model("resnet18", 10).module
    weights = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), weights)
    built = build_model("resnet18", 3, pretrained=str(weights))
    assert torch.equal(built.module.conv1.weight, source.conv1.weight)
    assert built.module.fc.out_features == 3
    assert built.pretrained_info["skipped"] == 2  # fc.weight and fc.bias have another shape
    yolo = build_model("yolo11n-cls", 3).module
    wrong = tmp_path / "yolo.pt"
    torch.save(yolo.state_dict(), wrong)
    with pytest.raises(UsageError, match="no tensor matches model 'resnet18'"):
        build_model("resnet18", 3, pretrained=str(wrong))
    again = build_model("yolo11n-cls", 3, pretrained=str(wrong))  # hemotune's own "net."-prefixed keys
    assert again.pretrained_info["left_random"] == 0
