"""What a hemotune classification trial does per epoch that a plain loop does not, timed (no Ray, no MLflow).

    python benchmarks/overhead/classification_parts.py [--smoke] [--out benchmarks/results]

Runs the ``image_classification`` trainer directly (``trainer.train`` with a ``report`` that only
counts) on the overhead benchmark's classification settings (resnet18, pbc8 96 images per class at
64 px, batch 16, 6 epochs, 2 threads) under ``cProfile`` and reports the cumulative seconds of each
part: training passes, val inference, the full metric set (scikit-learn), the per-epoch checkpoint
(model, optimizer, RNG state, ``torch.save``), the best weights and confusion-matrix figure of an
improved epoch; an import paid inside the trial (timm, scikit-learn, matplotlib) counts in the part
that first needs it. Profiling
slows Python-heavy code, so the parts are shares of a profiled run, not exact seconds; what the
Tune and MLflow side adds (Tune persisting each checkpoint, MLflow uploads) is the rest of the gap
measured by ``run.py``. Writes ``benchmarks/results/overhead_classification_parts.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks import common
from benchmarks.overhead.run import SIZES, prepare, space_document

#: (part, file suffix, function name) of the cumulative profile entries reported.
PARTS = (
    ("train passes (forward, backward, optimizer)", "image_classification/loop.py", "train_one_epoch"),
    ("val inference", "image_classification/loop.py", "evaluate"),
    ("metric set (scikit-learn)", "image_classification/metrics.py", "classification_metrics"),
    ("per-epoch checkpoint (torch.save)", "image_classification/checkpoint.py", "save_checkpoint"),
    ("best weights + confusion matrix (improved epochs)", "image_classification/checkpoint.py", "write_best"),
    ("confusion-matrix figure and JSON", "image_classification/metrics.py", "write_confusion_artifacts"),
    ("publish best.pt", "image_classification/checkpoint.py", "publish_best"),
    ("model build (incl. import timm)", "image_classification/models.py", "build_model"),
)


def profile_trial(size: dict[str, Any], data_root: Path, work: Path) -> dict[str, Any]:
    import torch

    from hemotune.trainers import get_trainer
    from hemotune.trainers.base import TrialContext

    torch.set_num_threads(2)
    doc = space_document("classification", size, 2)
    prepared, resolved = prepare("classification", doc, data_root / "pbc8", work / "cache")
    resolved["data"] = str(prepared.path)
    epochs: list[float] = []
    began = time.perf_counter()

    def report(metrics: Any, checkpoint: Any = None, artifacts: Any = None) -> None:
        epochs.append(time.perf_counter() - began)

    context = TrialContext(workdir=work / "trial", objective="val/macro_f1", mode="max")
    profiler = cProfile.Profile()
    profiler.enable()
    get_trainer("image_classification").train(resolved, report, context)
    profiler.disable()
    total = time.perf_counter() - began
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts = {}
    for label, suffix, function in PARTS:
        parts[label] = round(
            sum(v[3] for (file, _, name), v in stats.items() if file.endswith(suffix) and name == function), 3
        )
    return {"profiled_total_s": round(total, 2), "epochs": len(epochs), "parts_s": parts}


def main(argv: list[str] | None = None) -> int:
    parser = common.add_data_root_arg(common.add_common_args(argparse.ArgumentParser(description=__doc__)))
    args = parser.parse_args(argv)
    size = SIZES["classification"]["smoke" if args.smoke else "real"]
    with tempfile.TemporaryDirectory(prefix="hemotune-cls-parts-") as tmp:
        figures = profile_trial(size, args.data_root, Path(tmp))
    total = figures["profiled_total_s"]
    print(f"profiled trial: {total} s, {figures['epochs']} epochs")
    for label, seconds in figures["parts_s"].items():
        print(f"  {label}: {seconds} s ({seconds / total:.0%})")
    common.publish(
        "overhead_classification_parts", figures, out=args.out, smoke=args.smoke, settings=dict(size)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
