"""Register your own trainer: declare its parameters, prepare data once, report every epoch.

    python examples/custom_trainer.py

The trainer below fits a one-parameter model by gradient descent; a search space can
then name ``trainer: quadratic_example`` (see the inline space at the bottom). A trainer
implements ``train(resolved, report, context)``: the tuning layer resolves each trial's
parameters once (``Trainer.resolve``, here the default: as given), logs them, then
trains them. ``context.best_epoch(...)`` keeps the best epoch by the search objective.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hemotune import RunSettings, run_search
from hemotune.data.fingerprint import fingerprint_tree
from hemotune.metrics import best_key
from hemotune.spaces import validate_space
from hemotune.trainers import (
    COMMON_PARAMS,
    Metrics,
    ParamSpec,
    PreparedData,
    Report,
    Trainer,
    TrialContext,
    register_trainer,
)


class QuadraticTrainer(Trainer):
    name = "quadratic_example"
    task = "example"
    description = "Minimise (w - 3)^2 by gradient descent."
    params = {
        "lr": ParamSpec("float", "step size", low=0.0, low_exclusive=True),
        **COMMON_PARAMS,  # epochs, seed, data
    }
    metrics = ("val/loss",)

    def prepare_data(
        self, dataset: Mapping[str, Any], params: Mapping[str, Any], cache_dir: Path
    ) -> PreparedData:
        path = Path(str(dataset["path"]))
        return PreparedData(path=path, fingerprint=fingerprint_tree(path), source=str(path))

    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        best = context.best_epoch("val/loss", "min")  # the search objective, else this default
        w, start = 0.0, 0
        if context.resume_from is not None:
            state = json.loads((context.resume_from / "state.json").read_text())
            w, start = state["w"], state["epoch"]
            best.restore(state["best"])
        for epoch in range(start + 1, int(resolved["epochs"]) + 1):
            w -= float(resolved["lr"]) * 2 * (w - 3.0)
            metrics = {"epoch": epoch, "val/loss": (w - 3.0) ** 2}
            best.update(epoch, metrics)
            ckpt = context.workdir / "ckpt"
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / "state.json").write_text(json.dumps({"w": w, "epoch": epoch, "best": best.state()}))
            report(metrics, checkpoint=ckpt)
        return {best_key(best.metric): best.value, "best_epoch": float(best.epoch)}


def main() -> None:
    register_trainer("quadratic_example", f"{__name__}:QuadraticTrainer")
    data = Path(tempfile.mkdtemp())
    (data / "README").write_text("no data needed\n")
    space = validate_space(
        {
            "name": "quadratic",
            "trainer": "quadratic_example",
            "dataset": {"path": str(data)},
            "objective": {"metric": "val/loss", "mode": "min"},
            "parameters": {"lr": {"type": "float", "low": 0.001, "high": 0.9, "log": True}},
            "budget": {"num_samples": 4, "max_concurrent": 2, "epochs": 6, "grace_period": 2},
        },
        "inline",
    )
    outcome = run_search(space, RunSettings(results_dir=str(data / "results"), local_dir=data / "results"))
    print("best lr:", outcome.best.params if outcome.best else None)


if __name__ == "__main__":
    main()
