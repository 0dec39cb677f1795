"""The searcher's study in a journal file: restored searchers continue it, and adopt trials asked after their save."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hemotune.tuning.searcher import JOURNAL_SNAPSHOT, ResumableOptunaSearch


def _searcher(journal: Path, snapshot: bool = False) -> ResumableOptunaSearch:
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ResumableOptunaSearch(
        space={"lr": FloatDistribution(1e-5, 1.0, log=True)},
        metric="val/score",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        study_name="hemotune",
        storage=JournalStorage(JournalFileBackend(str(journal))),
        snapshot_journal=journal if snapshot else None,
    )


def _restored(checkpoint: Path) -> ResumableOptunaSearch:
    """A searcher as Tune restores it: the object it pickled at the start, then ``restore``."""
    import pickle

    fresh = pickle.loads((checkpoint.parent / "tuner-searcher.pkl").read_bytes())
    fresh.restore(str(checkpoint))
    return fresh


def test_a_trial_asked_after_the_save_is_told_not_duplicated(tmp_path: Path) -> None:
    import pickle

    import optuna

    journal = tmp_path / "optuna_journal.log"
    searcher = _searcher(journal)
    (tmp_path / "tuner-searcher.pkl").write_bytes(pickle.dumps(searcher))
    done = searcher.suggest("done")
    searcher.on_trial_complete("done", result={"val/score": 0.3, "config/lr": done["lr"]})
    checkpoint = tmp_path / "searcher-state.pkl"
    searcher.save(str(checkpoint))
    late = searcher.suggest("late")  # asked after the save: the journal has it, the saved state not
    restored = _restored(checkpoint)
    restored.on_trial_complete("late", result={"val/score": 0.8, "config/lr": late["lr"]})
    study = optuna.load_study(
        study_name="hemotune",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert [(t.state.name, t.value) for t in study.trials] == [("COMPLETE", 0.3), ("COMPLETE", 0.8)]
    assert study.trials[1].params["lr"] == pytest.approx(late["lr"])
    nxt = restored.suggest("next")  # the restored searcher goes on in the same study
    assert nxt is not None and len(study.trials) == 3


def test_a_remote_experiment_brings_its_journal_back_from_the_snapshot(tmp_path: Path) -> None:
    import pickle

    journal = tmp_path / "local" / "optuna_journal.log"
    journal.parent.mkdir()
    searcher = _searcher(journal, snapshot=True)
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "tuner-searcher.pkl").write_bytes(pickle.dumps(searcher))
    done = searcher.suggest("done")
    searcher.on_trial_complete("done", result={"val/score": 0.5, "config/lr": done["lr"]})
    checkpoint = staging / "searcher-state.pkl"
    searcher.save(str(checkpoint))
    # Ray Tune brings back only the .json and .pkl files of the experiment folder to a new driver
    assert JOURNAL_SNAPSHOT.endswith((".json", ".pkl"))
    assert json.loads((staging / JOURNAL_SNAPSHOT).read_text())["optuna_journal"] == journal.read_text()
    journal.unlink()  # another machine: no local journal
    restored = _restored(checkpoint)
    assert journal.exists()
    assert [t.value for t in restored._ot_study.trials] == [0.5]  # type: ignore[union-attr]


def test_a_trial_finished_after_the_save_is_not_told_twice(tmp_path: Path) -> None:
    """A driver killed after a trial finished but before the next save: the resumed trial reruns its last epochs.

    The journal already holds the trial COMPLETE; the restored searcher's record says running.
    Its results and completion are then skipped (Optuna refuses to update a finished trial, and
    that refusal used to abort the resumed search from inside Tune's loop).
    """
    import pickle

    journal = tmp_path / "optuna_journal.log"
    searcher = _searcher(journal)
    (tmp_path / "tuner-searcher.pkl").write_bytes(pickle.dumps(searcher))
    config = searcher.suggest("t")
    checkpoint = tmp_path / "searcher-state.pkl"
    searcher.save(str(checkpoint))  # the trial is running in the saved state
    searcher.on_trial_result("t", {"val/score": 0.4, "training_iteration": 1})
    searcher.on_trial_complete(
        "t", result={"val/score": 0.6, "config/lr": config["lr"], "training_iteration": 2}
    )
    restored = _restored(checkpoint)
    restored.on_trial_result("t", {"val/score": 0.6, "training_iteration": 2})  # the redone epoch: no error
    restored.on_trial_complete(
        "t", result={"val/score": 0.6, "config/lr": config["lr"], "training_iteration": 2}
    )
    trials = restored._ot_study.get_trials()  # type: ignore[union-attr]
    assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.6)]


def test_a_finished_search_retires_the_study_trials_a_killed_driver_lost(tmp_path: Path) -> None:
    """A trial asked after the last save of a killed driver never runs: at the end it becomes FAIL, not RUNNING for ever."""
    import optuna

    from hemotune.tuning.samplers import retire_lost_trials

    journal = tmp_path / "optuna_journal.log"
    searcher = _searcher(journal)
    done = searcher.suggest("done")
    searcher.on_trial_complete("done", result={"val/score": 0.3, "config/lr": done["lr"]})
    searcher.suggest("lost")  # its Tune trial died with the driver, before any saved state named it
    assert retire_lost_trials(journal) == 1
    assert retire_lost_trials(journal) == 0
    assert retire_lost_trials(tmp_path / "none.log") == 0
    study = optuna.load_study(
        study_name="hemotune",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL"]
