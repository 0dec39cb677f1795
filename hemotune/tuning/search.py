"""Running a search from start to end (or continuing one), and re-synchronising its MLflow tree.

Flow of one search: validate (already done) -> prepare the dataset once on the
driver -> open the MLflow parent run -> start or join Ray -> ``Tuner.fit()``
-> reconcile MLflow with Tune's results -> rank trials, export the best ->
close the parent run. Errors close the parent as FAILED; Ctrl-C leaves a
resumable experiment (``--resume``). A driver killed with SIGKILL closes nothing:
``hemotune sync`` closes its runs as interrupted once the driver is gone
(``hemotune.tuning.driver``), and ``--resume`` re-opens them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hemotune import storage
from hemotune.config import ARM_KEY, RunSettings, SearchSpace
from hemotune.data.prepared import PreparedData
from hemotune.data.report import problems_line
from hemotune.errors import UsageError
from hemotune.offline import apply_offline_env
from hemotune.reports import ranking_markdown, report_after_search, write_best_config
from hemotune.results import RankedTrial, TrialRecord, best_row, rank_trials, read_trials
from hemotune.spaces.conditions import inactive_names
from hemotune.tracking import (
    ReconcileReport,
    SearchTracking,
    TrialRunInfo,
    check_tracking_access,
    open_search_tracking,
    reconcile,
)
from hemotune.trainers import get_trainer
from hemotune.tuning import rebuild
from hemotune.tuning import state as search_state
from hemotune.tuning.ablation import summarize_ablation
from hemotune.tuning.driver import (
    describe,
    driver_record,
    refuse_resume_beside_live_driver,
    refuse_sync_unless_driver_gone,
)
from hemotune.tuning.pareto import summarize_pareto
from hemotune.tuning.samplers import (
    dashboard_command,
    describe_search,
    journal_path,
    retire_lost_trials,
    target_reached,
)
from hemotune.tuning.session import ray_session, refuse_unplaceable_local_trial
from hemotune.tuning.trial import TrialJob
from hemotune.tuning.tuner import DEFAULT_STATE_PERIOD_S, build_tuner, restore_tuner

log = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    """What a finished (or interrupted) search produced."""

    name: str
    tune_experiment: str
    experiment_path: str
    tracking_uri: str
    parent_run_id: str
    objective: str
    mode: str
    ranking: list[RankedTrial]
    best: RankedTrial | None
    best_dir: Path | None
    interrupted: bool
    param_names: list[str] = field(default_factory=list)

    @property
    def num_failed(self) -> int:
        """How many trials failed."""
        return sum(1 for r in self.ranking if r.outcome == "failed")


def run_search(
    space: SearchSpace, settings: RunSettings, announce: Callable[[str], None] | None = None
) -> SearchOutcome:
    """Run (or, with ``settings.resume``, continue) a search and return its ranked outcome.

    ``announce`` receives one-line progress messages (data prepared, MLflow run, Ray).
    """
    say = announce or (lambda message: log.info(message))
    apply_offline_env()
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", DEFAULT_STATE_PERIOD_S)
    # Tune's own console output (even at verbose=0 its new engine prints a header): hemotune
    # shows its own progress instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    storage_root = storage.normalize_storage(settings.results_dir)
    refuse_unplaceable_local_trial(space.resources, settings)  # a trial larger than this machine: exit 2 now
    tune_experiment, experiment_path, state = _experiment(space, settings, storage_root)
    check_tracking_access(settings.tracking_uri or (state or {}).get("tracking_uri"))  # 401 -> exit 2 now
    prepared = _prepare(space, settings)  # before Ray starts: bad data fails fast
    say(f"data: {prepared.path} (fingerprint {prepared.fingerprint[:12]}) {_summary_line(prepared)}")
    say(problems_line(prepared.report_path))  # the data report's gist (the full report goes to MLflow)
    if state is not None and state["dataset_hash"] != prepared.fingerprint:
        raise UsageError(
            f"the dataset changed since {tune_experiment} started "
            f"({state['dataset_hash'][:12]} -> {prepared.fingerprint[:12]}); resume needs the same data"
        )
    if state is not None:  # a new, empty MLflow server after head loss: a new parent (rebuild.py)
        rebuild.adopt_lost_tree(space, settings, state, experiment_path, prepared)
    tracking = open_search_tracking(space, settings, prepared, tune_experiment, experiment_path, state)
    if state is None:
        state = search_state.new_state(space, tune_experiment, prepared, tracking)
        state["mlflow_experiment"] = settings.mlflow_experiment  # a rebuilt tree goes to the same one
    state["status"] = "running"
    state["driver"] = driver_record()  # `hemotune sync` tells a killed driver from a live one by it
    search_state.write_state(experiment_path, state)
    say(f"mlflow: {tracking.tracking_uri} parent run {tracking.parent_run_id}")
    say(f"ray tune: {experiment_path}{' (resuming)' if settings.resume else ''}")
    journal = journal_path(experiment_path, settings.local_dir / Path(experiment_path).name)
    say(f"search: {describe_search(space)}")
    if space.parameters:
        say(f"live study: {dashboard_command(journal)}")
    info = _trial_run_info(space, tracking, tune_experiment, prepared.fingerprint)
    job = _trial_job(space, settings, prepared, info)
    status = "FAILED"
    try:
        # Ray Tune would copy AWS_* credentials from this environment into every trial's runtime_env.
        with storage.aws_credentials_out_of_environment(), ray_session(settings, space.resources, say):
            if settings.resume:
                tuner = restore_tuner(space, job, experiment_path)
            else:
                callbacks = _progress_callbacks(space, tracking, settings)
                tuner = build_tuner(space, job, storage_root, tune_experiment, callbacks, journal)
            tuner.fit()
        outcome = _finish(space, settings, tracking, info, experiment_path, tune_experiment)
        status = "KILLED" if outcome.interrupted else "FINISHED"
        state["status"] = "interrupted" if outcome.interrupted else "finished"
        return outcome
    except KeyboardInterrupt:
        status = "KILLED"
        state["status"] = "interrupted"
        raise
    except Exception:
        state["status"] = "failed"
        raise
    finally:
        with contextlib.suppress(Exception):
            search_state.write_state(experiment_path, state)
        tracking.finish(status, resume_hint=resume_command(space.name, settings.results_dir))


def _experiment(
    space: SearchSpace, settings: RunSettings, storage_root: str
) -> tuple[str, str, dict[str, Any] | None]:
    """``(Tune experiment, its path, stored state)``: the search to resume, or a new one (no state yet)."""
    if settings.resume:
        experiment_path = search_state.find_resumable(storage_root, space.name)
        state = search_state.read_state(experiment_path)
        refuse_resume_beside_live_driver(state or {}, experiment_path)
        return Path(experiment_path).name, experiment_path, state
    tune_experiment = settings.experiment_name or search_state.new_experiment_name(space)
    return tune_experiment, storage.join(storage_root, tune_experiment), None


def _prepare(space: SearchSpace, settings: RunSettings) -> PreparedData:
    """The space's dataset prepared once on the driver (an ``s3://`` one fetched to the local cache first)."""
    from hemotune.data.remote import localize_dataset

    trainer = get_trainer(space.trainer)
    dataset = localize_dataset(space.dataset.as_dict(), settings.cache_dir)  # s3:// -> local cache
    return trainer.prepare_data(dataset, space.fixed, settings.cache_dir)


def _summary_line(prepared: PreparedData) -> str:
    """Up to eight scalar entries of the data summary, for the ``data:`` announcement."""
    counts = {k: v for k, v in prepared.summary.items() if isinstance(v, (int, float, str))}
    return ", ".join(f"{k} {v}" for k, v in list(counts.items())[:8])


def _trial_run_info(
    space: SearchSpace, tracking: SearchTracking, tune_experiment: str, dataset_hash: str
) -> TrialRunInfo:
    """What every trial process needs to log into this search's MLflow tree."""
    return TrialRunInfo(
        tracking_uri=tracking.tracking_uri,
        experiment_id=tracking.experiment_id,
        parent_run_id=tracking.parent_run_id,
        search_name=space.name,
        tune_experiment=tune_experiment,
        dataset_hash=dataset_hash,
    )


def _trial_job(
    space: SearchSpace, settings: RunSettings, prepared: PreparedData, info: TrialRunInfo
) -> TrialJob:
    """The trial processes' job: trainer, fixed values, prepared data, tracking, objective."""
    return TrialJob(
        trainer=space.trainer,
        trainer_class=type(get_trainer(space.trainer)),
        fixed=space.trial_params({}),
        dataset=space.dataset.as_dict(),
        data_path=str(prepared.path),
        data_fingerprint=prepared.fingerprint,
        cache_dir=str(settings.cache_dir),
        tracking=info,
        objective=space.objective.metric,
        mode=space.objective.mode,
        num_workers=max(0, int(space.resources.cpu) - 1),
        conditional=tuple(p.name for p in space.parameters if p.when),
    )


def _progress_callbacks(space: SearchSpace, tracking: SearchTracking, settings: RunSettings) -> list[Any]:
    """Tune callbacks of a new search: prompt run closing, work-folder removal, live progress unless turned off."""
    from hemotune.tuning.callbacks import ProgressCallback, TrackingCallback, WorkFolderCallback

    callbacks: list[Any] = [
        TrackingCallback(tracking.tracking_uri, tracking.experiment_id, tracking.parent_run_id),
        WorkFolderCallback(),
    ]
    if settings.show_progress:
        callbacks.append(ProgressCallback(space))
    return callbacks


def _is_finished(records: list[TrialRecord], space: SearchSpace) -> bool:
    """Every trial ended and the budget is spent (all samples, or a time budget that ran out)."""
    if any(r.status not in ("TERMINATED", "ERROR") for r in records):
        return False
    if target_reached(space, [_best_value(r, space) for r in records]):
        return True  # budget.target ended it
    return space.budget.time_budget_s is not None or len(records) >= space.budget.num_samples


def _best_value(record: TrialRecord, space: SearchSpace) -> float | None:
    """A trial's best objective value (``None`` when it reported none)."""
    row = best_row(record.history, space.objective.metric, space.objective.mode)
    return None if row is None else float(row[space.objective.metric])


def resolve_trials(space: SearchSpace, records: list[TrialRecord]) -> dict[str, dict[str, Any]]:
    """trial id -> the values each trial ran with (``trainer.resolve`` of its full parameters).

    The driver's view of what each trial process resolved and logged: reconciliation
    logs these as the child run's params and the best trial's go to best_config.yaml.
    """
    trainer = get_trainer(space.trainer)
    return {r.trial_id: logged_params(space, trainer, r.config) for r in records}


def logged_params(space: SearchSpace, trainer: Any, config: Mapping[str, Any]) -> dict[str, Any]:
    """What a trial's child run holds as params: its resolved values, minus inactive conditionals and the arm."""
    sampled = {k: v for k, v in config.items() if k != ARM_KEY}
    inactive = inactive_names([p.name for p in space.parameters if p.when], sampled)
    return {k: v for k, v in trainer.resolve(space.trial_params(sampled)).items() if k not in inactive}


def _reconcile_experiment(
    space: SearchSpace, info: TrialRunInfo, experiment_path: str
) -> tuple[list[TrialRecord], bool, ReconcileReport, dict[str, dict[str, Any]]]:
    """Tune's trials, whether the search is finished, MLflow made to agree with them, resolved params."""
    records = read_trials(experiment_path, space)
    finished = _is_finished(records, space)
    resolved = resolve_trials(space, records)
    report = reconcile(
        info,
        records,
        objective=space.objective.metric,
        mode=space.objective.mode,
        search_finished=finished,
        resolved=resolved,
    )
    return records, finished, report, resolved


def _finish(
    space: SearchSpace,
    settings: RunSettings,
    tracking: SearchTracking,
    info: TrialRunInfo,
    experiment_path: str,
    tune_experiment: str,
) -> SearchOutcome:
    """Reconcile MLflow with Tune, rank, export the best trial and record it on the parent run."""
    records, finished, _, resolved = _reconcile_experiment(space, info, experiment_path)
    if finished and space.parameters:  # nothing runs now: a study trial still RUNNING was lost with a driver
        retire_lost_trials(journal_path(experiment_path, settings.local_dir / Path(experiment_path).name))
    ranking = rank_trials(records, space, tracking.child_run_ids())
    best = ranking[0] if ranking and ranking[0].best_value is not None else None
    local_dir = search_state.local_dir(experiment_path, settings.local_dir / Path(experiment_path).name)
    best_dir = None
    if best is not None:
        best_dir = local_dir / "best"
        _export_best(tracking, best, space, resolved[best.trial_id], best_dir)
        tracking.record_best(best, space.objective.metric)
    markdown = ranking_markdown(ranking, space)
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / "ranking.md").write_text(markdown)
    tracking.record_ranking(markdown, finished=finished)
    report_after_search(space, experiment_path, local_dir, tracking, search_state.read_state(experiment_path))
    summarize_ablation(space, records, local_dir, tracking)  # ablation.json/.md of an `ablation:` grid
    summarize_pareto(space, records, local_dir, tracking)  # pareto.json/.md of an `objectives:` search
    return SearchOutcome(
        name=space.name,
        tune_experiment=tune_experiment,
        experiment_path=experiment_path,
        tracking_uri=tracking.tracking_uri,
        parent_run_id=tracking.parent_run_id,
        objective=space.objective.metric,
        mode=space.objective.mode,
        ranking=ranking,
        best=best,
        best_dir=best_dir,
        interrupted=not finished,
        param_names=[p.name for p in space.parameters],
    )


def _export_best(
    tracking: SearchTracking,
    best: RankedTrial,
    space: SearchSpace,
    resolved: Mapping[str, Any],
    best_dir: Path,
) -> None:
    """The best trial's artifacts (weights, config) and ``best_config.yaml`` in ``best_dir``."""
    artifacts = tracking.download_artifacts(best.run_id, best_dir) if best.run_id else []
    write_best_config(best, space, resolved, best_dir, artifacts, tracking.tracking_uri)


def resume_command(name: str, results_dir: str) -> str:
    """The command that continues an interrupted search (printed, and tagged on its parent run)."""
    return f"hemotune search {name} --resume --results-dir {results_dir}"


def sync_search(name: str, settings: RunSettings, *, force: bool = False) -> dict[str, Any]:
    """Re-synchronise a search's MLflow tree from Ray Tune's stored results (``hemotune sync``).

    A search still marked running whose driver is gone (killed with SIGKILL) is closed
    as interrupted: its unfinished trials' runs and its parent run become KILLED, tagged
    ``hemotune.outcome=interrupted`` and, on the parent, ``hemotune.resume`` (the command
    to continue it). Its driver must be provably gone (same host) unless ``force``.
    """
    space, experiment_path = search_state.load_resumable_space(settings.results_dir, name)
    state = search_state.read_state(experiment_path) or {}
    check_tracking_access(settings.tracking_uri or state.get("tracking_uri"))
    driver_gone = state.get("status") == "running"
    if driver_gone and not force:
        refuse_sync_unless_driver_gone(state, experiment_path)
    # A parent run unknown to the server (a new one after head loss): a new tree, ids in the state file.
    tracking, rebuilding = rebuild.tracking_for_sync(
        space, settings, state, experiment_path, lambda: _prepare(space, settings)
    )
    info = _trial_run_info(space, tracking, state["tune_experiment"], state["dataset_hash"])
    records, finished, report, resolved = _reconcile_experiment(space, info, experiment_path)
    summary: dict[str, Any] = {"experiment_path": experiment_path, "trials": len(records)}
    summary["finished"] = finished
    resume = resume_command(space.name, settings.results_dir)
    if rebuilding:  # the parent's own records, as the end of `hemotune search` writes them
        summary["recovered"] = rebuild.recover_trial_artifacts(
            tracking, experiment_path, records, resolved, state["data_path"]
        )
        _finish(space, settings, tracking, info, experiment_path, state["tune_experiment"])
        rebuild.close_rebuilt(tracking, state, experiment_path, finished=finished, resume_hint=resume)
        summary["rebuilt"] = {"tracking_uri": tracking.tracking_uri, "parent_run_id": tracking.parent_run_id}
    if driver_gone:
        orphans = tracking.close_interrupted(resume)  # runs of trials Tune's saved state never knew
        summary.update(interrupted_runs=report.runs_closed.get("KILLED", 0) + orphans, resume=resume)
        summary["driver"] = describe(state.get("driver"))
        state["status"] = "interrupted"
        search_state.write_state(experiment_path, state)
    return {**summary, **asdict(report)}
