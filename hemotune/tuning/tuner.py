"""The Ray Tune ``Tuner`` of a search, new or restored.

Three configuration roles, as in Ray Tune: *what* to search (the Optuna space
from ``hemotune.spaces.optuna_space``), *how* to search (``TuneConfig``: seeded
multivariate TPE through ``OptunaSearch``, ASHA on the objective, samples,
concurrency; the ``search:`` section picks others, ``hemotune.tuning.samplers`` and
``hemotune.tuning.schedulers``) and *how to run* (``RunConfig``: experiment name, storage,
checkpoints, retries, callbacks).

OptunaSearch builds its study with no pruner, so only the ASHA scheduler stops
trials, and only because every trainer reports after every epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hemotune import storage
from hemotune.config import SearchSpace, env_flag
from hemotune.tuning.trial import TrialJob, run_trial

#: How often Ray Tune saves experiment state (seconds); short so a killed driver loses little.
DEFAULT_STATE_PERIOD_S = "5"
#: Epoch checkpoints kept per trial. Tune also saves its state as soon as a trial has
#: checkpointed this many times since the last save (else the saved state could name a
#: checkpoint already deleted), so a killed driver loses at most this many epochs per trial
#: plus the one being reported.
CHECKPOINTS_KEPT = 2
#: ``HEMOTUNE_REUSE_ACTORS=0`` gives every trial a new Ray worker process (Tune's default) instead
#: of handing a finished trial's process to the next one (``reuse_actors``). Reuse is measured in
#: benchmarks/scheduling: a new process costs a trial 2.8-3.8 s on a 2-core machine (importing
#: ``ray.tune`` and MLflow, opening its store) against 0.05 s reused; switch it off for a trainer
#: that leaves state behind in its process.
REUSE_ACTORS_VAR = "HEMOTUNE_REUSE_ACTORS"


def build_tuner(
    space: SearchSpace,
    job: TrialJob,
    storage_path: str,
    experiment: str,
    callbacks: list[Any],
    journal: Path | None = None,
) -> Any:
    """A new ``Tuner`` for ``space``: experiment ``experiment`` under ``storage_path``.

    ``journal``: the file holding the searcher's Optuna study (``None``: in memory).
    """
    from ray import tune

    from hemotune.tuning import recovery
    from hemotune.tuning.schedulers import build_scheduler

    recovery.install()  # a reused worker lost while handed to a trial: retried, not the trial's end
    scheduler = build_scheduler(space)
    tune_config = tune.TuneConfig(
        metric=space.objective.metric,
        mode=space.objective.mode,
        # No searched parameter (a space with every value fixed, e.g. `hemotune best --export`): nothing
        # for Optuna to sample (OptunaSearch refuses an empty space); Tune's default runs the fixed config.
        search_alg=_searcher(space, journal, remote=storage.is_uri(storage_path))
        if space.parameters
        else None,
        scheduler=scheduler,
        num_samples=space.budget.num_samples,
        max_concurrent_trials=space.budget.max_concurrent,
        time_budget_s=space.budget.time_budget_s,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
        reuse_actors=reuse_actors(),
    )
    return tune.Tuner(
        trainable(space, job),
        tune_config=tune_config,
        run_config=_run_config(space, storage_path, experiment, callbacks),
    )


def restore_tuner(space: SearchSpace, job: TrialJob, experiment_path: str) -> Any:
    """The stored experiment at ``experiment_path``, to continue its unfinished trials.

    Its ``RunConfig`` (and the callbacks in it) and searcher state are restored from
    the experiment, the run-closing callback re-pointed at this execution's MLflow
    parent run; errored trials stay errored.
    """
    from ray import tune

    from hemotune.tuning import realign, recovery

    realign.install()  # a snapshot mixing two saves: trial count and live set follow the trial list
    recovery.install()
    restore_path, fs = storage.tune_storage(experiment_path)
    tuner = tune.Tuner.restore(
        restore_path,
        trainable=trainable(space, job),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
        storage_filesystem=fs,
    )
    _retarget_tracking(tuner, job)
    return tuner


def _retarget_tracking(tuner: Any, job: TrialJob) -> None:
    """Point the restored run-closing callback at the MLflow tree this execution logs to.

    The callback was pickled with the experiment and names the tree it started with; after
    head loss that tree's server is gone and a new parent run took its place
    (``hemotune.tuning.rebuild``). Left alone, each trial end would cost the driver's event
    loop a request to a dead host, and runs would be closed only by the final reconciliation.
    """
    from hemotune.tuning.callbacks import TrackingCallback

    local = getattr(tuner, "_local_tuner", None)  # Ray 2.60 keeps the restored RunConfig there
    run_config = local.get_run_config() if local is not None else None
    for callback in getattr(run_config, "callbacks", None) or []:
        if isinstance(callback, TrackingCallback):
            info = job.tracking
            callback.tracking_uri, callback.experiment_id = info.tracking_uri, info.experiment_id
            callback.parent_run_id = info.parent_run_id


def reuse_actors() -> bool:
    """Whether a finished trial's Ray worker runs the next trial (default on; ``HEMOTUNE_REUSE_ACTORS=0``: off).

    Tune resets the reused function trainable (new config, trial folder, working directory,
    checkpoint); ``run_trial`` keeps no state between trials. A trial still running when it is
    stopped, or a process that died, is never reused (Tune then starts a new one).
    """
    return env_flag(REUSE_ACTORS_VAR, default=True)


def _searcher(space: SearchSpace, journal: Path | None, *, remote: bool) -> Any:
    """The space's seeded sampler in an OptunaSearch that survives resuming, known points first."""
    from hemotune.tuning.samplers import build_searcher

    return build_searcher(space, journal, remote=remote)


def _trial_name(trial: Any) -> str:
    """``trial_<id>``: the trial's name and folder (MLflow's child run has the same name)."""
    return f"trial_{trial.trial_id}"


def trainable(space: SearchSpace, job: TrialJob) -> Any:
    """``run_trial`` bound to ``job``, with the space's resources per trial."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(run_trial, job=job),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )


def _run_config(space: SearchSpace, storage_path: str, experiment: str, callbacks: list[Any]) -> Any:
    """How to run: name and storage, checkpoints kept, retries, state syncing, callbacks, target."""
    from ray import tune

    from hemotune.tuning.schedulers import target_stopper

    tune_path, filesystem = storage.tune_storage(storage_path)
    return tune.RunConfig(
        name=experiment,
        storage_path=tune_path,
        storage_filesystem=filesystem,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
        failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
        # Sync experiment state and results to storage as often as Tune snapshots them
        # (default 300 s): a driver killed with SIGKILL then loses seconds, not minutes.
        sync_config=tune.SyncConfig(
            sync_period=int(os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", DEFAULT_STATE_PERIOD_S))
        ),
        callbacks=callbacks,
        stop=target_stopper(space),
        verbose=0,
    )
