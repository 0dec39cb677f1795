"""Builds and runs (or restores) the Ray Tune search.

Three configuration roles, as in Ray Tune: *what* to search (the Optuna space
from ``SearchSpace``), *how* to search (``TuneConfig``: seeded multivariate TPE
through ``OptunaSearch``, ASHA on the objective, samples, concurrency) and *how
to run* (``RunConfig``: experiment name, storage, checkpoints, retries).

OptunaSearch builds its study with no pruner, so only the ASHA scheduler stops
trials, and only because every trainer reports after every epoch.

Flow of one search: validate (already done) -> prepare the dataset once on the
driver -> open the MLflow parent run -> start or join Ray -> ``Tuner.fit()``
-> reconcile MLflow with Tune's results -> rank trials, export the best ->
close the parent run. Errors close the parent as FAILED; Ctrl-C leaves a
resumable experiment (``--resume``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hemotune import storage
from hemotune.config import RunSettings, SearchSpace
from hemotune.errors import UsageError
from hemotune.offline import apply_offline_env, local_ray_env, offline_env
from hemotune.reports import RankedTrial, rank_trials, ranking_markdown, write_best_config
from hemotune.tracking import (
    ReconcileReport,
    SearchTracking,
    TrialRecord,
    TrialRun,
    TrialRunInfo,
    best_key,
    reconcile,
)
from hemotune.trainers import PreparedData, Trainer, TrialContext, get_trainer

log = logging.getLogger(__name__)

STATE_FILE = "hemotune_search.json"
#: How often Ray Tune saves experiment state (seconds); short so a killed driver loses little.
DEFAULT_STATE_PERIOD_S = "5"


@dataclass(frozen=True)
class TrialJob:
    """Everything a trial process needs besides its sampled config (picklable, Ray-free data).

    ``trainer_class`` travels with the job (cloudpickle sends classes defined in a
    script by value), so trainers registered at run time work in Ray workers too.
    """

    trainer: str
    trainer_class: type[Trainer]
    fixed: Mapping[str, Any]
    dataset: Mapping[str, Any]
    data_path: str
    data_fingerprint: str
    cache_dir: str
    tracking: TrialRunInfo
    objective: str
    mode: str
    #: Data-loader worker processes per trial: the trial's CPUs minus the one that trains.
    num_workers: int = 0


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
        return sum(1 for r in self.ranking if r.outcome == "failed")


# ----------------------------------------------------------------------------- trial process


def _trial_device() -> str:
    import ray

    return "cuda:0" if ray.get_gpu_ids() else "cpu"


def _placement_tags() -> dict[str, str]:
    """Where this trial runs: Ray node id and IP (hostnames can repeat), and the GPU ids Ray assigned."""
    import ray

    return {
        "hemotune.node": os.uname().nodename,
        "hemotune.node_id": ray.get_runtime_context().get_node_id(),
        "hemotune.node_ip": ray.util.get_node_ip_address(),
        "hemotune.gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids()) or "none",
        "hemotune.device": _trial_device(),
    }


def run_trial(config: dict[str, Any], job: TrialJob) -> None:
    """The Tune function trainable: one trial = one ``trainer.fit`` call, logged to MLflow."""
    apply_offline_env()
    # An unreachable MLflow server must not block training: fail fast, buffer, retry later.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from ray import tune

    context = tune.get_context()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    trainer = job.trainer_class()
    data_path = _ensure_data(job, trainer)
    params = {**job.fixed, **config, "data": data_path}
    run = TrialRun(job.tracking, trial_id=trial_id, trial_name=trial_name)
    resolved = trainer.resolve(params)
    run.log_params(resolved)
    run.set_tags(_placement_tags())

    def report(
        metrics: Mapping[str, float],
        *,
        checkpoint: Path | None = None,
        artifacts: Mapping[str, Path] | None = None,
    ) -> None:
        run.log_epoch(metrics)
        if artifacts:
            run.log_artifacts(artifacts)
        tune_checkpoint = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        tune.report(dict(metrics), checkpoint=tune_checkpoint)

    workdir = Path(os.getcwd()) / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "resolved.yaml"
    config_file.write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))
    run.log_artifacts({"config/resolved.yaml": config_file})
    restored = tune.get_checkpoint()
    try:
        with restored.as_directory() if restored else contextlib.nullcontext(None) as resume_dir:
            trial_context = TrialContext(
                workdir=workdir,
                resume_from=Path(resume_dir) if resume_dir else None,
                device=_trial_device(),
                seed=int(params.get("seed", 0)),
                trial_id=trial_id,
                num_workers=job.num_workers,
            )
            summary = trainer.fit(params, report, trial_context)
    except Exception as exc:
        run.set_tags({"hemotune.error": f"{type(exc).__name__}: {exc}"})
        run.finish("FAILED", wait_s=10)
        raise
    run.log_summary(summary)
    run.finish("FINISHED")


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML-safe copy: numbers, strings, bools, None and lists of them stay; the rest becomes str."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, float, str)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = [v if isinstance(v, (bool, int, float, str)) else str(v) for v in value]
        else:
            out[key] = str(value)
    return out


def _ensure_data(job: TrialJob, trainer: Any) -> str:
    """The prepared dataset on this node: the driver's copy, or the same one rebuilt here.

    An ``s3://`` dataset is always taken from this node's own cache
    (``$HEMOTUNE_CACHE_DIR`` of the node, else the driver's cache path), fetched
    once per node; the fingerprint check below proves it is the driver's data.
    """
    from hemotune.data import remote

    cache_dir = Path(os.environ.get("HEMOTUNE_CACHE_DIR") or job.cache_dir)
    dataset = dict(job.dataset)
    if remote.is_remote(dataset.get("path")):
        dataset = remote.localize_dataset(dataset, cache_dir)
    elif Path(job.data_path).exists():
        return job.data_path
    prepared = trainer.prepare_data(dataset, dict(job.fixed), cache_dir)
    if prepared.fingerprint != job.data_fingerprint:
        raise RuntimeError(
            f"the dataset prepared on {os.uname().nodename} ({prepared.fingerprint[:12]}) differs from "
            f"the driver's ({job.data_fingerprint[:12]}): every trial must see the same data"
        )
    return str(prepared.path)


# ----------------------------------------------------------------------------- driver


def space_document(space: SearchSpace) -> dict[str, Any]:
    """The validated space as a search-space document (stored for ``--resume``)."""
    doc = space.as_dict()
    for key in ("source", "source_hash", "preset", "overrides"):
        doc.pop(key)
    return doc


def find_resumable(results_dir: str, name: str) -> str:
    """The experiment path of the most recent search called ``name`` under ``results_dir``."""
    root = storage.normalize_storage(results_dir)
    candidates = [d for d in storage.list_dirs(root) if d.startswith(f"{name}-")]
    for candidate in reversed(candidates):
        path = storage.join(root, candidate)
        if storage.read_json(storage.join(path, STATE_FILE)) is not None:
            return path
    raise UsageError(f"nothing to resume: no search named {name!r} under {root}")


def load_resumable_space(results_dir: str, name: str) -> tuple[SearchSpace, str]:
    """The space a search was started with (its stored document, re-validated) and its path."""
    from hemotune.spaces import validate_space

    path = find_resumable(results_dir, name)
    state = storage.read_json(storage.join(path, STATE_FILE))
    space = validate_space(
        state["space"],
        state["space_source"],
        source_hash=state["space_hash"],
        preset=state.get("preset"),
        overrides=state.get("overrides", ()),
    )
    return space, path


def _new_experiment_name(space: SearchSpace) -> str:
    return f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"


@contextlib.contextmanager
def _ray_session(settings: RunSettings) -> Iterator[None]:
    """Join ``settings.address`` (or ``RAY_ADDRESS``) or start a local Ray; only what we started is shut down."""
    import ray

    if ray.is_initialized():
        yield
        return
    env_vars = offline_env()
    address = settings.address or os.environ.get("RAY_ADDRESS")
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": settings.show_trial_logs}
    if address:
        ray.init(address=address, runtime_env={"env_vars": env_vars}, **common)
    else:
        with local_ray_env() as proxies:
            ray.init(
                num_cpus=settings.num_cpus,
                include_dashboard=False,
                runtime_env={"env_vars": {**env_vars, **proxies}},
                **common,
            )
    try:
        yield
    finally:
        ray.shutdown()


def _build_tuner(
    space: SearchSpace, job: TrialJob, storage_path: str, experiment: str, callbacks: list[Any]
) -> Any:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from hemotune.searcher import ResumableOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=space.seed, multivariate=True)
    searcher = ResumableOptunaSearch(  # OptunaSearch that survives resuming from an S3 snapshot
        space=space.optuna_space(),
        metric=space.objective.metric,
        mode=space.objective.mode,
        points_to_evaluate=[dict(p) for p in space.points_to_evaluate] or None,
        sampler=sampler,
    )
    scheduler = ASHAScheduler(
        time_attr="epoch",
        max_t=space.budget.epochs,
        grace_period=space.budget.grace_period,
        reduction_factor=space.budget.reduction_factor,
    )
    tune_config = tune.TuneConfig(
        metric=space.objective.metric,
        mode=space.objective.mode,
        search_alg=searcher,
        scheduler=scheduler,
        num_samples=space.budget.num_samples,
        max_concurrent_trials=space.budget.max_concurrent,
        time_budget_s=space.budget.time_budget_s,
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    return tune.Tuner(
        _trainable(space, job),
        tune_config=tune_config,
        run_config=_run_config(space, storage_path, experiment, callbacks),
    )


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _trainable(space: SearchSpace, job: TrialJob) -> Any:
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(run_trial, job=job),
        {"cpu": space.resources.cpu, "gpu": space.resources.gpu},
    )


def _run_config(space: SearchSpace, storage_path: str, experiment: str, callbacks: list[Any]) -> Any:
    from ray import tune

    tune_path, filesystem = storage.tune_storage(storage_path)
    return tune.RunConfig(
        name=experiment,
        storage_path=tune_path,
        storage_filesystem=filesystem,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        failure_config=tune.FailureConfig(max_failures=space.budget.max_failures),
        # Sync experiment state and results to storage as often as Tune snapshots them
        # (default 300 s): a driver killed with SIGKILL then loses seconds, not minutes.
        sync_config=tune.SyncConfig(
            sync_period=int(os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", DEFAULT_STATE_PERIOD_S))
        ),
        callbacks=callbacks,
        verbose=0,
    )


def trial_records(experiment_path: str, space: SearchSpace) -> list[TrialRecord]:
    """Every trial of an experiment as plain data (status, sampled config, per-epoch history)."""
    from ray.tune import ExperimentAnalysis

    fs, path = storage.filesystem(experiment_path)
    analysis = ExperimentAnalysis(path, storage_filesystem=fs)
    frames = analysis.trial_dataframes
    names = {p.name for p in space.parameters}
    records = []
    for trial in analysis.trials:
        frame = frames.get(trial.trial_id)
        rows = [] if frame is None or frame.empty else frame.to_dict("records")
        history = [{str(k): v for k, v in row.items() if not str(k).startswith("config/")} for row in rows]
        epochs = [
            int(r["epoch"])
            for r in history
            if isinstance(r.get("epoch"), (int, float)) and r["epoch"] == r["epoch"]
        ]
        last_epoch = max(epochs, default=0)
        error = None
        if trial.status == "ERROR":
            err = trial.get_error()
            error = str(err).strip().splitlines()[-1] if err else "trial failed"
        records.append(
            TrialRecord(
                trial_id=trial.trial_id,
                trial_name=str(trial),
                status=trial.status,
                config={k: v for k, v in trial.config.items() if k in names},
                history=history,
                error=error,
                stopped_early=trial.status == "TERMINATED" and last_epoch < space.budget.epochs,
            )
        )
    return records


def _is_finished(records: list[TrialRecord], space: SearchSpace) -> bool:
    if any(r.status not in ("TERMINATED", "ERROR") for r in records):
        return False
    return space.budget.time_budget_s is not None or len(records) >= space.budget.num_samples


def _local_dir(settings: RunSettings, experiment_path: str) -> Path:
    if storage.is_uri(experiment_path):
        return settings.local_dir / Path(experiment_path).name
    return Path(experiment_path)


def _progress_callbacks(space: SearchSpace, tracking: SearchTracking, settings: RunSettings) -> list[Any]:
    from hemotune.progress import ProgressCallback, TrackingCallback

    callbacks: list[Any] = [
        TrackingCallback(tracking.tracking_uri, tracking.experiment_id, tracking.parent_run_id)
    ]
    if settings.show_progress:
        callbacks.append(ProgressCallback(space))
    return callbacks


def _prepare(space: SearchSpace, settings: RunSettings) -> PreparedData:
    from hemotune.data.remote import localize_dataset

    trainer = get_trainer(space.trainer)
    dataset = localize_dataset(space.dataset.as_dict(), settings.cache_dir)  # s3:// -> local cache
    return trainer.prepare_data(dataset, space.fixed, settings.cache_dir)


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
    state: dict[str, Any] | None = None
    if settings.resume:
        experiment_path = find_resumable(storage_root, space.name)
        state = storage.read_json(storage.join(experiment_path, STATE_FILE))
        tune_experiment = Path(experiment_path).name
    else:
        tune_experiment = settings.experiment_name or _new_experiment_name(space)
        experiment_path = storage.join(storage_root, tune_experiment)

    prepared = _prepare(space, settings)  # before Ray starts: bad data fails fast
    say(f"data: {prepared.path} (fingerprint {prepared.fingerprint[:12]}) {_summary_line(prepared)}")
    if state is not None and state["dataset_hash"] != prepared.fingerprint:
        raise UsageError(
            f"the dataset changed since {tune_experiment} started "
            f"({state['dataset_hash'][:12]} -> {prepared.fingerprint[:12]}); resume needs the same data"
        )
    tracking = _open_tracking(space, settings, prepared, tune_experiment, experiment_path, state)
    if state is None:
        state = {
            "name": space.name,
            "tune_experiment": tune_experiment,
            "space": space_document(space),
            "space_source": space.source,
            "space_hash": space.source_hash,
            "preset": space.preset,
            "overrides": list(space.overrides),
            "dataset_hash": prepared.fingerprint,
            "data_path": str(prepared.path),
            "tracking_uri": tracking.tracking_uri,
            "experiment_id": tracking.experiment_id,
            "parent_run_id": tracking.parent_run_id,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    state["status"] = "running"
    storage.write_json(storage.join(experiment_path, STATE_FILE), state)
    say(f"mlflow: {tracking.tracking_uri} parent run {tracking.parent_run_id}")
    say(f"ray tune: {experiment_path}{' (resuming)' if settings.resume else ''}")

    info = TrialRunInfo(
        tracking_uri=tracking.tracking_uri,
        experiment_id=tracking.experiment_id,
        parent_run_id=tracking.parent_run_id,
        search_name=space.name,
        tune_experiment=tune_experiment,
        dataset_hash=prepared.fingerprint,
    )
    job = TrialJob(
        trainer=space.trainer,
        trainer_class=type(get_trainer(space.trainer)),
        fixed={k: v for k, v in space.trial_params({}).items()},
        dataset=space.dataset.as_dict(),
        data_path=str(prepared.path),
        data_fingerprint=prepared.fingerprint,
        cache_dir=str(settings.cache_dir),
        tracking=info,
        objective=space.objective.metric,
        mode=space.objective.mode,
        num_workers=max(0, int(space.resources.cpu) - 1),
    )
    status = "FAILED"
    try:
        # Ray Tune would copy AWS_* credentials from this environment into every trial's runtime_env.
        with storage.aws_credentials_out_of_environment(), _ray_session(settings):
            from ray import tune

            if settings.resume:
                restore_path, fs = storage.tune_storage(experiment_path)
                tuner = tune.Tuner.restore(
                    restore_path,
                    trainable=_trainable(space, job),
                    resume_unfinished=True,
                    resume_errored=False,
                    restart_errored=False,
                    storage_filesystem=fs,
                )
                # The RunConfig (and its callbacks) is restored from the experiment.
            else:
                callbacks = _progress_callbacks(space, tracking, settings)
                tuner = _build_tuner(space, job, storage_root, tune_experiment, callbacks)
            tuner.fit()
        outcome = _finish(space, settings, tracking, info, experiment_path, tune_experiment)
        status = "KILLED" if outcome.interrupted else "FINISHED"
        state["status"] = "interrupted" if outcome.interrupted else "finished"
        return outcome
    except KeyboardInterrupt:
        status = "KILLED"
        state["status"] = "interrupted"
        raise
    finally:
        with contextlib.suppress(Exception):
            storage.write_json(storage.join(experiment_path, STATE_FILE), state)
        tracking.finish(status)


def _summary_line(prepared: PreparedData) -> str:
    counts = {k: v for k, v in prepared.summary.items() if isinstance(v, (int, float, str))}
    return ", ".join(f"{k} {v}" for k, v in list(counts.items())[:8])


def _open_tracking(
    space: SearchSpace,
    settings: RunSettings,
    prepared: PreparedData,
    tune_experiment: str,
    experiment_path: str,
    state: Mapping[str, Any] | None,
) -> SearchTracking:
    from hemotune.tracking import resolve_tracking_uri

    if state is not None:
        return SearchTracking.reopen(
            tracking_uri=settings.tracking_uri or state["tracking_uri"],
            experiment_id=state["experiment_id"],
            parent_run_id=state["parent_run_id"],
        )
    uri, artifact_location = resolve_tracking_uri(settings.tracking_uri, settings.local_dir)
    from hemotune import __version__

    tracking = SearchTracking.start(
        tracking_uri=uri,
        artifact_location=artifact_location,
        experiment_name=settings.mlflow_experiment or space.name,
        run_name=tune_experiment,
        tags={
            "hemotune.search": space.name,
            "hemotune.space_file": space.source,
            "hemotune.space_hash": space.source_hash,
            "hemotune.dataset_hash": prepared.fingerprint,
            "hemotune.dataset": prepared.source,
            "hemotune.version": __version__,
            "hemotune.trainer": space.trainer,
            "hemotune.objective": f"{space.objective.metric} ({space.objective.mode})",
            "hemotune.tune_experiment": tune_experiment,
            "hemotune.storage": experiment_path,
            "hemotune.preset": space.preset or "",
        },
        params={
            "search": space.name,
            "trainer": space.trainer,
            "objective": space.objective.metric,
            "mode": space.objective.mode,
            "seed": space.seed,
            **{f"budget.{k}": v for k, v in asdict(space.budget).items()},
            **{f"resources.{k}": v for k, v in asdict(space.resources).items()},
            **{f"fixed.{k}": v for k, v in space.fixed.items()},
            **{f"space.{p.name}": p.as_dict() for p in space.parameters},
        },
    )

    tracking.log_text(yaml.safe_dump(space.as_dict(), sort_keys=False), "config/search_space.yaml")
    if prepared.report_path is not None and prepared.report_path.exists():
        tracking.log_artifact(prepared.report_path, "data")
        markdown = prepared.report_path.with_suffix(".md")
        if markdown.exists():
            tracking.log_artifact(markdown, "data")
    if prepared.summary:
        tracking.log_text(yaml.safe_dump(dict(prepared.summary), sort_keys=False), "data/summary.yaml")
    return tracking


def _reconcile_experiment(
    space: SearchSpace, info: TrialRunInfo, experiment_path: str
) -> tuple[list[TrialRecord], bool, ReconcileReport]:
    """Tune's trials, whether the search is finished, and MLflow made to agree with them."""
    records = trial_records(experiment_path, space)
    finished = _is_finished(records, space)
    trainer = get_trainer(space.trainer)
    report = reconcile(
        info,
        records,
        objective=space.objective.metric,
        mode=space.objective.mode,
        search_finished=finished,
        param_view=lambda config: trainer.resolve(space.trial_params(config)),
    )
    return records, finished, report


def _finish(
    space: SearchSpace,
    settings: RunSettings,
    tracking: SearchTracking,
    info: TrialRunInfo,
    experiment_path: str,
    tune_experiment: str,
) -> SearchOutcome:
    """Reconcile MLflow with Tune, rank, export the best trial and record it on the parent run."""
    records, finished, _ = _reconcile_experiment(space, info, experiment_path)
    trainer = get_trainer(space.trainer)
    ranking = rank_trials(records, space, tracking.child_run_ids())
    best = ranking[0] if ranking and ranking[0].best_value is not None else None
    local_dir = _local_dir(settings, experiment_path)
    best_dir = None
    if best is not None:
        best_dir = local_dir / "best"
        artifacts = tracking.download_artifacts(best.run_id, best_dir) if best.run_id else []
        write_best_config(
            best,
            space,
            trainer.resolve(space.trial_params(best.params)),
            best_dir,
            artifacts,
            tracking.tracking_uri,
        )
        tracking.set_tags(
            {"hemotune.best_trial_id": best.trial_id, "hemotune.best_run_id": best.run_id or ""}
        )
        tracking.log_metrics({best_key(space.objective.metric): best.best_value, **best.best_metrics})
    markdown = ranking_markdown(ranking, space)
    local_dir.mkdir(parents=True, exist_ok=True)
    (local_dir / "ranking.md").write_text(markdown)
    tracking.log_text(markdown, "ranking.md")
    tracking.set_tags({"hemotune.outcome": "finished" if finished else "interrupted"})
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


def sync_search(name: str, settings: RunSettings) -> dict[str, Any]:
    """Re-synchronise a search's MLflow tree from Ray Tune's stored results (``hemotune sync``)."""
    space, experiment_path = load_resumable_space(settings.results_dir, name)
    state = storage.read_json(storage.join(experiment_path, STATE_FILE))
    info = TrialRunInfo(
        tracking_uri=settings.tracking_uri or state["tracking_uri"],
        experiment_id=state["experiment_id"],
        parent_run_id=state["parent_run_id"],
        search_name=space.name,
        tune_experiment=state["tune_experiment"],
        dataset_hash=state["dataset_hash"],
    )
    records, finished, report = _reconcile_experiment(space, info, experiment_path)
    return {
        "experiment_path": experiment_path,
        "trials": len(records),
        "finished": finished,
        **asdict(report),
    }
