"""A resumed search whose saved search state is older or newer than its trial list follows the trial list.

Ray Tune's snapshot in S3 can pair a trial list with a search-generator state from another
save (docs/distributed.md). These are Ray's own SearchGenerator and ConcurrencyLimiter around
hemotune's searcher, in the state such a snapshot restores them to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hemotune.tuning.realign import align_search_with_trials, install


def _search() -> tuple[Any, Any, Any]:
    import optuna
    from optuna.distributions import FloatDistribution
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    from hemotune.tuning.searcher import ResumableOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = ResumableOptunaSearch(
        space={"lr": FloatDistribution(1e-5, 1.0, log=True)}, metric="val/score", mode="max"
    )
    limiter = ConcurrencyLimiter(searcher, max_concurrent=2)
    return SearchGenerator(limiter), limiter, searcher


def _trials(statuses: dict[str, str]) -> list[Any]:
    from ray.tune.experiment import Trial

    trials = []
    for trial_id, status in statuses.items():
        trial = Trial("synthetic", trial_id=trial_id, stub=True)
        trial.set_status(status)
        trials.append(trial)
    return trials


def test_a_search_state_newer_than_the_trial_list_frees_its_slots_and_counts_what_runs() -> None:
    generator, limiter, searcher = _search()
    generator._counter, limiter.live_trials = 5, {"lost_1", "lost_2"}  # trials the trial list never got
    trials = _trials({"done": "TERMINATED", "running": "PENDING"})
    changed = align_search_with_trials(generator, trials)
    assert generator._counter == 2 and limiter.live_trials == {"running"}
    assert changed["created"] == (5, 2)
    # the restored trial's completion now reaches the searcher and the study
    generator.on_trial_complete("running", result={"val/score": 0.5, "config/lr": 0.01})
    assert [(t.state.name, t.value) for t in searcher._ot_study.trials] == [("COMPLETE", 0.5)]
    trials[1].set_status("TERMINATED")
    assert align_search_with_trials(generator, trials) == {}  # a consistent state is left alone


def test_without_aligning_a_restored_trial_unknown_to_the_limiter_is_never_told() -> None:
    """Why the alignment exists: Ray's limiter drops the completion of a trial not in its live set."""
    generator, limiter, searcher = _search()
    limiter.live_trials = set()  # saved before the trial started
    generator.on_trial_complete("running", result={"val/score": 0.5, "config/lr": 0.01})
    assert searcher._ot_study.trials == []


def test_install_hooks_tune_controller_resume_once() -> None:
    from ray.tune.execution.tune_controller import TuneController

    install()
    hooked = TuneController.resume
    install()
    assert TuneController.resume is hooked and hooked._hemotune_realigned  # type: ignore[attr-defined]


def test_a_restored_trial_whose_checkpoint_was_deleted_restarts_from_one_that_exists(tmp_path: Path) -> None:
    """The saved trial list names checkpoints the trial deleted since (num_to_keep): restart from what is left."""
    import shutil

    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    from hemotune.tuning.realign import drop_lost_checkpoints

    older, newer, finished = _trials({"older": "PENDING", "newer": "PENDING", "done": "TERMINATED"})
    folders = {}
    for trial in (older, newer, finished):
        for step in (0, 1):
            folder = tmp_path / trial.trial_id / f"checkpoint_00000{step}"
            folder.mkdir(parents=True)
            folders[trial.trial_id, step] = folder
            result = _TrainingResult(checkpoint=Checkpoint(str(folder)), metrics={"epoch": step + 1})
            trial.run_metadata.checkpoint_manager.register_checkpoint(result)
    shutil.rmtree(folders["older", 1])  # its latest gone: back to checkpoint_000000
    shutil.rmtree(folders["newer", 0])  # both gone: from its first epoch
    shutil.rmtree(folders["newer", 1])
    shutil.rmtree(folders["done", 1])  # finished: never restored, left alone
    changed = drop_lost_checkpoints([older, newer, finished])
    assert changed == {"older": str(folders["older", 0]), "newer": "its first epoch"}
    assert older.checkpoint.path == str(folders["older", 0]) and newer.checkpoint is None
    assert finished.checkpoint.path == str(folders["done", 1])
    assert drop_lost_checkpoints([older, newer, finished]) == {}


def test_the_reset_recovery_hooks_tune_controller_once() -> None:
    from ray.tune.execution.tune_controller import TuneController

    from hemotune.tuning import recovery

    recovery.install()
    hooked = TuneController._process_trial_failure
    recovery.install()
    assert TuneController._process_trial_failure is hooked and hooked._hemotune_reset_recovery  # type: ignore[attr-defined]
