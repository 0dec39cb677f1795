"""Run a search from Python instead of the CLI (synthetic trainer: 4 trials, about 20 s on a 2-core laptop).

python examples/python_api.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hemotune import RunSettings, load_space, run_search

HERE = Path(__file__).resolve().parent


def main() -> None:
    results = Path(tempfile.mkdtemp(prefix="hemotune-example-"))
    space = load_space(
        str(HERE.parent / "tests" / "spaces" / "synthetic.yaml"),
        data=str(HERE),  # the synthetic trainer only checks that the folder exists
        sets=["budget.num_samples=4", "budget.epochs=4"],
    )
    outcome = run_search(space, RunSettings(results_dir=str(results), local_dir=results))
    for trial in outcome.ranking:
        print(trial.rank, trial.trial_id, trial.outcome, trial.best_value, dict(trial.params))
    print("best config:", outcome.best_dir)
    print("mlflow ui --backend-store-uri", outcome.tracking_uri)


if __name__ == "__main__":
    main()
