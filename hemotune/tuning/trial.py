"""One trial, in its Ray worker: resolve the sampled config once, log it, train it, report every epoch.

``run_trial`` is the Tune function trainable. The trainer resolves the trial's
parameters (defaults filled, derived values added) exactly once; those values are
what MLflow records (params and ``config/resolved.yaml``) and what the trainer
trains with, so a trial runs the configuration it reports.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hemotune import storage
from hemotune.config import ARM_KEY
from hemotune.offline import apply_offline_env
from hemotune.spaces.conditions import inactive_names
from hemotune.tracking import TrialRun, TrialRunInfo, use_credentials
from hemotune.tracking.runs import TAG_ERROR
from hemotune.trainers import Trainer, TrialContext
from hemotune.tuning.durable import EpochRecord, copy_to_trial_folder
from hemotune.tuning.workdirs import WORK_FOLDER, remove_work_folder

if TYPE_CHECKING:  # pragma: no cover - imported when an evaluation trial runs (it imports numpy)
    from hemotune.tuning.evaluate_trial import TestJob


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
    #: Data-loader worker processes per trial: the trial's CPUs minus the one that trains (Ultralytics'
    #: loader; the classification trainer keeps its decoded images in memory and starts none).
    num_workers: int = 0
    #: Searched parameters with a ``when:`` condition: absent from a trial's config, they are
    #: inactive there and not logged as MLflow params (the trainer's default applies).
    conditional: tuple[str, ...] = ()
    #: ``hemotune evaluate``'s trials: after training, evaluate the best weights on this test split.
    test: TestJob | None = None


def run_trial(config: dict[str, Any], job: TrialJob) -> None:
    """The Tune function trainable: one trial = one ``trainer.train`` call, logged to MLflow."""
    apply_offline_env()
    # An unreachable MLflow server must not block training: fail fast, buffer, retry later.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    use_credentials()  # from this node's environment or the credentials file the driver named
    from ray import tune

    context = tune.get_context()
    trial_id = context.get_trial_id()
    trainer = job.trainer_class()
    config = dict(config)
    arm = config.pop(ARM_KEY, None)  # a grid trial's point: a tag, not a trainer parameter
    params = {**job.fixed, **config, "data": _ensure_data(job, trainer)}
    trial_dir = Path(os.getcwd())  # Tune's working directory of this trial
    workdir = trial_dir / WORK_FOLDER
    workdir.mkdir(parents=True, exist_ok=True)
    run = TrialRun(
        job.tracking, trial_id=trial_id, trial_name=context.get_trial_name(), stash_dir=workdir / "pending"
    )
    resolved = trainer.resolve(params)
    inactive = inactive_names(job.conditional, config)
    restored = tune.get_checkpoint()
    tags = {**_placement_tags(), **({"hemotune.arm": arm} if arm is not None else {})}
    if restored is not None:  # known here even when the earlier process died before MLflow had its run
        tags["hemotune.restarted"] = "true"
    with run.held():  # queued, then sent together while training starts (tracking/trial.py)
        run.log_params({k: v for k, v in resolved.items() if k not in inactive})
        run.set_tags(tags)
        config_file = workdir / "resolved.yaml"
        config_file.write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))
        run.log_artifacts({"config/resolved.yaml": config_file})
    run.flush_in_background()
    try:
        with restored.as_directory() if restored else contextlib.nullcontext(None) as resume_dir:
            trial_context = TrialContext(
                workdir=workdir,
                resume_from=Path(resume_dir) if resume_dir else None,
                device=_trial_device(),
                seed=int(params.get("seed", 0)),
                trial_id=trial_id,
                num_workers=job.num_workers,
                objective=job.objective,
                mode=job.mode,
            )
            summary = trainer.train(resolved, _reporter(run), trial_context)
            if job.test is not None:  # `hemotune evaluate`: the best weights on the test split too
                from hemotune.tuning.evaluate_trial import evaluate_trained

                summary = {**summary, **evaluate_trained(trainer, job.test, resolved, trial_context, run)}
    except Exception as exc:
        run.set_tags({TAG_ERROR: f"{type(exc).__name__}: {exc}"})
        run.finish("FAILED", wait_s=10)
        remove_work_folder(trial_dir)  # what must outlive the trial is in storage and MLflow (workdirs.py)
        raise
    run.log_summary(summary)
    run.finish("FINISHED")
    remove_work_folder(trial_dir)


def _reporter(run: TrialRun) -> Any:
    """The trainer's ``report``: each epoch to MLflow (buffered) and to Tune (with its checkpoint).

    Its artifacts also go to the trial's Tune folder before Tune hears of the epoch. The first
    epoch trains while the trial's MLflow start-up is sent from a thread; every report, the
    first included, waits for what is left of it (``TrialRun.wait_for_background``) and sends
    its epoch before Tune hears of it: Tune may end the trial at any report (ASHA's first rung,
    the last epoch), and its process never runs again.
    """
    from ray import tune

    record = EpochRecord()  # a copy of Tune's result.json that a killed driver cannot cut (durable.py)

    def report(
        metrics: Mapping[str, float],
        *,
        checkpoint: Path | None = None,
        artifacts: Mapping[str, Path] | None = None,
    ) -> None:
        run.wait_for_background()
        run.log_epoch(metrics)
        if artifacts:
            run.log_artifacts(artifacts)
            copy_to_trial_folder(artifacts)  # outlives the head and its MLflow server (durable.py)
        record.append(metrics)
        tune_checkpoint = tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None
        tune.report(dict(metrics), checkpoint=tune_checkpoint)

    return report


def _trial_device() -> str:
    """``cuda:0`` when Ray gave this trial a GPU (it sees only its own), else ``cpu``."""
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


def _ensure_data(job: TrialJob, trainer: Trainer) -> str:
    """The prepared dataset on this node: the driver's copy, or the same one rebuilt here.

    An ``s3://`` dataset is always taken from this node's own cache
    (``$HEMOTUNE_CACHE_DIR`` of the node, else the driver's cache path), fetched
    once per node; the fingerprint check below proves it is the driver's data.
    """
    from hemotune.data import remote

    cache_dir = Path(os.environ.get("HEMOTUNE_CACHE_DIR") or job.cache_dir)
    dataset = dict(job.dataset)
    if storage.is_s3(dataset.get("path")):
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
