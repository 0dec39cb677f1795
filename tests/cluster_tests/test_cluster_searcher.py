"""ResumableOptunaSearch: a resumed search survives trials its restored searcher never suggested.

Ray Tune can restore an experiment state a few seconds newer than the searcher state
it saved beside it (docs/distributed.md, "The driver dies"). Stock OptunaSearch then
raises ``KeyError`` on such a trial's first result, which aborts the whole search.
"""

from __future__ import annotations

import pytest

from hemotune.tuning.searcher import ResumableOptunaSearch


@pytest.fixture
def searcher() -> ResumableOptunaSearch:
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ResumableOptunaSearch(
        space={"lr": FloatDistribution(1e-5, 1.0, log=True)},
        metric="val/score",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0),
    )


def test_stock_optuna_search_fails_on_a_trial_it_never_suggested() -> None:
    from optuna.distributions import FloatDistribution
    from ray.tune.search.optuna import OptunaSearch

    stock = OptunaSearch(space={"lr": FloatDistribution(1e-5, 1.0, log=True)}, metric="val/score", mode="max")
    with pytest.raises(KeyError):
        stock.on_trial_result("restored", {"val/score": 0.5, "training_iteration": 1})


def test_results_of_an_unknown_trial_are_accepted_and_its_outcome_reaches_tpe(
    searcher: ResumableOptunaSearch,
) -> None:
    known = searcher.suggest("known")
    assert known is not None and "lr" in known
    searcher.on_trial_result("known", {"val/score": 0.4, "training_iteration": 1})
    searcher.on_trial_result("restored", {"val/score": 0.5, "training_iteration": 1})  # no KeyError
    searcher.on_trial_complete(
        "restored", result={"val/score": 0.7, "config/lr": 0.01, "training_iteration": 3}
    )
    searcher.on_trial_complete(
        "known", result={"val/score": 0.6, "config/lr": known["lr"], "training_iteration": 3}
    )
    finished = [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert sorted((round(t.params["lr"], 6), t.value) for t in finished) == sorted(
        [(0.01, 0.7), (round(known["lr"], 6), 0.6)]
    )


def test_an_unknown_trial_without_its_config_is_skipped(searcher: ResumableOptunaSearch) -> None:
    searcher.on_trial_complete("restored", result={"val/score": 0.7})
    searcher.on_trial_complete("errored", result=None, error=True)
    assert not [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
