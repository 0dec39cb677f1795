"""``hemotune evaluate``: retrain the best configurations and the baseline with N seeds, on a test split.

A finished search's top K configurations and its baseline (the study's recipe) are
retrained at the full budget, with the same seeds each and no early stopping, as
one Ray Tune run of fixed configurations (``BasicVariantGenerator`` over the plan's
points, FIFO scheduler): parallel, fault tolerant and resumable like a search, with
the search's own trial function, which evaluates each trial's best weights on the
test split after training. Its Tune experiment lives inside the search's
(``<search experiment>/evaluation-<time>``); each trial is an MLflow child of the
search's parent run tagged ``hemotune.role=evaluation``. At the end,
``hemotune.evidence`` computes the statistics; ``evaluation.json``/``.md`` go to the
search's local folder and to the parent run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemotune import storage
from hemotune.config import ARM_KEY, RunSettings, SearchSpace
from hemotune.data.prepared import PreparedData
from hemotune.errors import UsageError
from hemotune.evidence import SeedResult, analyse_evaluation, evaluation_markdown
from hemotune.offline import apply_offline_env
from hemotune.results import TrialRecord, read_trials
from hemotune.tracking import SearchTracking, TrialRunInfo, reconcile
from hemotune.tracking.evidence import load_arrays_artifact, record_evidence
from hemotune.trainers import Trainer, get_trainer
from hemotune.tuning import state as search_state
from hemotune.tuning.ablation import summarize_test_ablation
from hemotune.tuning.evaluate_trial import PER_IMAGE_ARTIFACT, TestJob, image_scores
from hemotune.tuning.evaluation_plan import (
    EVALUATION_STATE,
    EXPERIMENT_PREFIX,
    EvaluationRequest,
    baseline_name,
    new_plan,
)
from hemotune.tuning.evaluation_plan import trial_configs as planned_configs
from hemotune.tuning.search import _prepare, _trial_job, resolve_trials
from hemotune.tuning.session import ray_session
from hemotune.tuning.tuner import DEFAULT_STATE_PERIOD_S, _run_config, _trial_name, restore_tuner, trainable

log = logging.getLogger(__name__)
ROLE = "evaluation"


@dataclass
class EvaluationOutcome:
    """What an evaluation produced: the document, its files, where its runs are."""

    document: dict[str, Any]
    markdown: str
    files: list[Path]
    experiment_path: str
    tracking_uri: str
    parent_run_id: str
    failed: int


def run_evaluation(
    request: EvaluationRequest, settings: RunSettings, announce: Callable[[str], None] | None = None
) -> EvaluationOutcome:
    """Plan (or, with ``settings.resume``, continue) the evaluation of a search, run it, analyse it."""
    say = announce or (lambda message: log.info(message))
    apply_offline_env()
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", DEFAULT_STATE_PERIOD_S)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    space, search_path = _find_search(settings.results_dir, request.search)
    state = search_state.read_state(search_path) or {}
    if settings.resume:
        eval_path, plan = _resumable(search_path)
    else:
        test_path = _test_path(request.test_path)
        plan = new_plan(space, read_trials(search_path, space), request, test_path)
        eval_path = storage.join(search_path, plan["experiment"])
    eval_space = _evaluation_space(space, plan)
    prepared = _prepare(eval_space, settings)
    if state.get("dataset_hash") and prepared.fingerprint != state["dataset_hash"]:
        raise UsageError(f"the dataset changed since search {space.name} ran: evaluation needs the same data")
    test = _test_job(eval_space, plan["test_path"], settings)
    say(f"test: {test.data.source} ({_describe(test.data)})")
    tracking = SearchTracking(
        settings.tracking_uri or state["tracking_uri"], state["experiment_id"], state["parent_run_id"]
    )
    info = TrialRunInfo(
        tracking_uri=tracking.tracking_uri,
        experiment_id=tracking.experiment_id,
        parent_run_id=tracking.parent_run_id,
        search_name=space.name,
        tune_experiment=plan["experiment"],
        dataset_hash=prepared.fingerprint,
        role=ROLE,
    )
    job = dataclasses.replace(_trial_job(eval_space, settings, prepared, info), test=test)
    arms, seeds = list(plan["arms"]), plan["seeds"]
    say(f"evaluating {', '.join(arms)} x seeds {seeds}, {plan['epochs']} epochs each: {eval_path}")
    storage.write_json(storage.join(eval_path, EVALUATION_STATE), {**plan, "status": "running"})
    with storage.aws_credentials_out_of_environment(), ray_session(settings):
        if settings.resume:
            tuner = restore_tuner(eval_space, job, eval_path)
        else:
            configs = _same_keys(eval_space, planned_configs(plan))
            tuner = _fixed_tuner(eval_space, job, configs, search_path, plan["experiment"], tracking)
        tuner.fit()
    records = read_trials(eval_path, eval_space)
    finished = all(r.status in ("TERMINATED", "ERROR") for r in records) and len(records) == len(arms) * len(
        seeds
    )
    objective, mode = space.objective.metric, space.objective.mode
    resolved = resolve_trials(eval_space, records)  # the params each run logged (its arm left out)
    reconcile(info, records, objective=objective, mode=mode, search_finished=finished, resolved=resolved)
    storage.write_json(
        storage.join(eval_path, EVALUATION_STATE),
        {**plan, "status": "finished" if finished else "interrupted"},
    )
    results = _seed_results(records, tracking, get_trainer(space.trainer), plan["objective"])
    document = analyse_evaluation(
        results, plan["arms"], baseline=baseline_name(plan), objective=plan["objective"], mode=plan["mode"]
    )
    document.update(
        search=space.name,
        experiment=plan["experiment"],
        epochs=plan["epochs"],
        test=str(test.data.source),
        finished=finished,
    )
    markdown = evaluation_markdown(document)
    local = search_state.local_dir(search_path, settings.local_dir / Path(search_path).name)
    files = _write_files(local, document, markdown)
    record_evidence(tracking, files, {"hemotune.evaluation": plan["experiment"]})
    files += summarize_test_ablation(space, results, plan, local, tracking)  # ablation.json's test section
    failed = sum(1 for r in records if r.status == "ERROR")
    return EvaluationOutcome(
        document, markdown, files, eval_path, tracking.tracking_uri, tracking.parent_run_id, failed
    )


def _find_search(results_dir: str, name: str) -> tuple[SearchSpace, str]:
    """The search's stored space and experiment path; a search that does not exist is a usage error."""
    try:
        return search_state.load_resumable_space(results_dir, name)
    except UsageError:
        raise UsageError(
            f"no search named {name!r} under {storage.normalize_storage(results_dir)} "
            "(run `hemotune search` first, or pass --results-dir)"
        ) from None


def _resumable(search_path: str) -> tuple[str, dict[str, Any]]:
    """The search's most recent evaluation (its path and plan), to continue."""
    for name in reversed(
        sorted(d for d in storage.list_dirs(search_path) if d.startswith(EXPERIMENT_PREFIX))
    ):
        path = storage.join(search_path, name)
        plan = storage.read_json(storage.join(path, EVALUATION_STATE))
        if isinstance(plan, dict):
            return path, plan
    raise UsageError(f"nothing to resume: no evaluation under {search_path}")


def _test_path(test_path: str | None) -> str | None:
    """``--test`` as an absolute path; one that does not exist is a usage error naming it."""
    if test_path is None:
        return None
    path = Path(test_path).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"--test {test_path}: the test set {path} does not exist")
    return str(path)


def _evaluation_space(space: SearchSpace, plan: Mapping[str, Any]) -> SearchSpace:
    """The search's space at the evaluation's budget: its epochs, every trial run in parallel as allowed."""
    epochs = int(plan["epochs"])
    runs = len(plan["arms"]) * len(plan["seeds"])
    budget = dataclasses.replace(
        space.budget, epochs=epochs, num_samples=runs, grace_period=min(space.budget.grace_period, epochs)
    )
    return dataclasses.replace(space, budget=budget)


def _test_job(space: SearchSpace, test_path: str | None, settings: RunSettings) -> TestJob:
    """The test split prepared once on the driver; none at all is a usage error."""
    trainer = get_trainer(space.trainer)
    dataset = space.dataset.as_dict()
    data = trainer.prepare_test_data(dataset, test_path, space.fixed, settings.cache_dir)
    if data is None:
        raise UsageError(
            f"dataset {space.dataset.path} declares no test split; pass --test PATH (an independent test set)"
        )
    return TestJob(
        data=data,
        test_path=test_path,
        dataset=dataset,
        params=dict(space.fixed),
        cache_dir=str(settings.cache_dir),
    )


def _describe(data: PreparedData) -> str:
    scalars = {k: v for k, v in data.summary.items() if isinstance(v, (int, float, str))}
    missing = data.summary.get("missing_classes")
    text = ", ".join(f"{k} {v}" for k, v in list(scalars.items())[:6])
    return f"{text}; classes missing from the test set: {missing}" if missing else text


def _same_keys(space: SearchSpace, configs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``configs`` with every key any of them has: a missing one gets the value the trainer resolves.

    Tune takes a point only for the keys of its ``param_space``, and a key a point lacks keeps the
    ``param_space`` value; a conditional parameter inactive in one configuration (``when:``) is set
    here to its default, which its condition leaves unused (and unlogged).
    """
    trainer = get_trainer(space.trainer)
    keys = list(dict.fromkeys(key for config in configs for key in config))
    completed = []
    for config in configs:
        missing = [key for key in keys if key not in config]
        values = {k: v for k, v in config.items() if k != ARM_KEY}
        resolved = trainer.resolve(space.trial_params(values)) if missing else {}
        completed.append({**dict(config), **{key: resolved.get(key) for key in missing}})
    return completed


def _fixed_tuner(
    space: SearchSpace,
    job: Any,
    configs: Sequence[Mapping[str, Any]],
    storage_path: str,
    experiment: str,
    tracking: SearchTracking,
) -> Any:
    """A ``Tuner`` that runs exactly ``configs``, FIFO (no early stopping), as many at a time as allowed."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    from hemotune.tuning.callbacks import TrackingCallback, WorkFolderCallback

    tune_config = tune.TuneConfig(
        search_alg=BasicVariantGenerator(
            points_to_evaluate=[dict(c) for c in configs], max_concurrent=space.budget.max_concurrent
        ),
        num_samples=len(configs),
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    callbacks = [
        TrackingCallback(tracking.tracking_uri, tracking.experiment_id, tracking.parent_run_id),
        WorkFolderCallback(),
    ]
    return tune.Tuner(
        trainable(space, job),
        # Tune accepts a point only for keys its param_space has: each key, to be set by the points.
        param_space={key: None for config in configs for key in config},
        tune_config=tune_config,
        run_config=_run_config(space, storage_path, experiment, callbacks),
    )


def _seed_results(
    records: Sequence[TrialRecord], tracking: SearchTracking, trainer: Trainer, objective: str
) -> list[SeedResult]:
    """One ``SeedResult`` per finished evaluation trial: its arm, seed, test metrics, per-image objective."""
    run_ids = tracking.child_run_ids()
    results = []
    for record in records:
        rows = [row for row in record.history if any(str(k).startswith("test/") for k in row)]
        if record.status != "TERMINATED" or not rows:
            continue
        config = record.config  # read_trials keeps each trial's seed and arm
        metrics = {
            k: float(v)
            for k, v in rows[-1].items()
            if str(k).startswith("test/") and isinstance(v, (int, float))
        }
        run_id = run_ids.get(record.trial_id)
        arrays = load_arrays_artifact(tracking, run_id, PER_IMAGE_ARTIFACT) if run_id else None
        per_image = image_scores(trainer, arrays, objective)
        results.append(
            SeedResult(str(config.get(ARM_KEY)), int(config.get("seed", 0)), metrics, per_image, run_id)
        )
    return results


def _write_files(local: Path, document: Mapping[str, Any], markdown: str) -> list[Path]:
    """``evaluation.json`` and ``evaluation.md`` in the search's local folder."""
    local.mkdir(parents=True, exist_ok=True)
    json_path, md_path = local / "evaluation.json", local / "evaluation.md"
    json_path.write_text(json.dumps(document, indent=2, default=str))
    md_path.write_text(markdown)
    return [json_path, md_path]
