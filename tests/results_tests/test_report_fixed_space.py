"""The report of a fixed space (one trial, nothing searched) draws no empty parameter plots."""

from __future__ import annotations

import optuna

from hemotune.reports import figures


def test_fixed_space_parameter_plots_are_notes_not_figures() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    drawn = figures.by_title(figures.study_figures(study, "val/mAP50-95", seed=0))
    assert drawn["history"].png  # the one trial's value is still plotted
    for title in ("importances", "parallel-coordinates", "slices"):
        assert drawn[title].png is None
        assert drawn[title].note == "not drawn: the space has no searched parameter"
