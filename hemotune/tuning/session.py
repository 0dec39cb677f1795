"""The Ray session of a search: join a cluster or start a private local Ray, offline either way."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from hemotune.config import RunSettings
from hemotune.offline import local_ray_env, offline_env


@contextlib.contextmanager
def ray_session(settings: RunSettings) -> Iterator[None]:
    """Join ``settings.address`` (or ``RAY_ADDRESS``) or start a private local Ray; only what we started is shut down.

    A Ray the caller already initialised is used as it is and left running. Every
    trial process gets the offline environment (no telemetry, no downloads); a local
    Ray's own processes start with HTTP routed to a closed loopback port, which stops
    them probing cloud metadata addresses, while trials keep the caller's proxies
    (see ``hemotune.offline.local_ray_env``).
    """
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
                # "local": always a private Ray. With no address Ray joins whatever cluster the last
                # `ray start` on this machine recorded (/tmp/ray/ray_current_cluster), and hangs
                # retrying when that cluster has died.
                address="local",
                num_cpus=settings.num_cpus,
                include_dashboard=False,
                runtime_env={"env_vars": {**env_vars, **proxies}},
                **common,
            )
    try:
        yield
    finally:
        ray.shutdown()
