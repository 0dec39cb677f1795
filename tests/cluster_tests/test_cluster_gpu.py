"""Fractional GPUs: four trials share one GPU, each sees the GPU Ray assigned it.

There is no GPU on the machines these tests run on, so Ray is started with one
*logical* GPU (``num_gpus=1``): Ray's scheduler, its GPU-id assignment
(``ray.get_gpu_ids()``, ``CUDA_VISIBLE_DEVICES``) and hemotune's device choice
(``run_trial`` -> ``TrialContext.device``) are the same code paths as on a GPU
node; only the kernels are missing, which the synthetic trainer does not run.
Throughput of real GPU sharing is measured by ``benchmarks/gpu_sharing``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import epoch_steps, search_tree, synthetic_space_file

from hemotune.config import RunSettings
from hemotune.offline import local_ray_env, offline_env
from hemotune.spaces import load_space
from hemotune.tuning import SearchOutcome, run_search

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

TRIALS, EPOCHS = 4, 4


@pytest.fixture(scope="module")
def shared_gpu_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SearchOutcome]:
    import ray

    tmp = tmp_path_factory.mktemp("gpu")
    path = synthetic_space_file(
        tmp,
        name="gpu_sharing",
        fixed={"seconds_per_epoch": 1.0},
        budget={
            "num_samples": TRIALS,
            "max_concurrent": TRIALS,
            "epochs": EPOCHS,
            "grace_period": EPOCHS,
            "reduction_factor": 2,
        },
        resources={"cpu": 0.5, "gpu": 0.25},
    )
    space = load_space(str(path))
    settings = RunSettings(results_dir=str(tmp / "results"), local_dir=tmp / "results", show_progress=False)
    with local_ray_env() as proxies:
        ray.init(
            num_cpus=2,
            num_gpus=1,
            include_dashboard=False,
            runtime_env={"env_vars": {**offline_env(), **proxies}},
        )
    try:
        yield run_search(space, settings)  # joins the Ray started here
    finally:
        ray.shutdown()  # started here, so shut down here (run_search leaves a Ray it joined running)


def test_four_trials_ran_at_the_same_time_on_the_one_gpu(shared_gpu_search: SearchOutcome) -> None:
    outcome = shared_gpu_search
    _, children = search_tree(outcome.tracking_uri, "gpu_sharing")
    assert len(children) == TRIALS
    assert all(r.info.status == "FINISHED" for r in children)
    starts = [r.info.start_time for r in children]
    ends = [r.info.end_time for r in children]
    assert max(starts) < min(ends), "some trial finished before another started: they did not share the GPU"
    for run in children:
        assert epoch_steps(outcome.tracking_uri, run.info.run_id) == list(range(1, EPOCHS + 1))


def test_each_trial_saw_the_gpu_ray_assigned_and_used_it_as_its_device(
    shared_gpu_search: SearchOutcome,
) -> None:
    _, children = search_tree(shared_gpu_search.tracking_uri, "gpu_sharing")
    assert {r.data.tags["hemotune.gpu_ids"] for r in children} == {"0"}
    assert {r.data.tags["hemotune.device"] for r in children} == {"cuda:0"}
    parent, _ = search_tree(shared_gpu_search.tracking_uri, "gpu_sharing")
    assert parent.data.params["resources.gpu"] == "0.25"
