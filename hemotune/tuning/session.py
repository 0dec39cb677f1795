"""The Ray session of a search: join a cluster or start a private local Ray, offline either way.

A local Ray is private and loopback-only. ``address="local"`` always starts a new one
(with no address Ray joins whatever cluster the last ``ray start`` on the machine
recorded, ``/tmp/ray/ray_current_cluster``, and hangs retrying when it has died). Its
node address is ``127.0.0.1``: Ray's GCS, raylet, workers and agents then bind their
ports to loopback (with any other node address they bind every interface, and one agent
the machine's LAN address). Ray itself only keeps a loopback node address on macOS and
Windows; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is its switch for that behaviour
everywhere, read once when Ray is imported (docs/distributed.md, "What a local search
listens on").
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

from hemotune.config import Resources, RunSettings
from hemotune.errors import UsageError
from hemotune.offline import local_ray_env, offline_env, temporary_env
from hemotune.tracking import credentials_env
from hemotune.tuning import capacity

log = logging.getLogger(__name__)
#: The node address of a local Ray: every port it opens is then bound to loopback.
LOOPBACK = "127.0.0.1"
#: Ray's switch for a loopback node address (its default on macOS and Windows).
_LOOPBACK_NODE_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: Ray warns at every local start that token authentication is on (it is, and stays on).
_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def is_local(settings: RunSettings) -> bool:
    """Whether the search starts its own Ray (no ``--address`` and no ``RAY_ADDRESS``)."""
    return not (settings.address or os.environ.get("RAY_ADDRESS"))


def refuse_unplaceable_local_trial(resources: Resources, settings: RunSettings) -> None:
    """Before anything starts: a local search whose trial is larger than this machine is a usage error."""
    if not is_local(settings):
        return
    import ray

    if ray.is_initialized():
        return  # the caller's Ray: checked by ray_session once the search starts
    how = (
        f"--num-cpus {settings.num_cpus}"
        if settings.num_cpus
        else "this machine's CPUs and GPUs as Ray counts them"
    )
    error = capacity.local_node_error(resources, capacity.planned_local_node(settings.num_cpus), how)
    if error is not None:
        raise error


@contextlib.contextmanager
def ray_session(
    settings: RunSettings,
    resources: Resources | None = None,
    announce: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Join ``settings.address`` (or ``RAY_ADDRESS``) or start a private local Ray; only what we started is shut down.

    A Ray the caller already initialised is used as it is and left running. Every
    trial process gets the offline environment (no telemetry, no downloads); a local
    Ray's own processes start with HTTP routed to a closed loopback port, which stops
    them probing cloud metadata addresses, while trials keep the caller's proxies
    (see ``hemotune.offline.local_ray_env``). With ``resources``, a trial that no node
    could ever hold is a ``UsageError`` (a cluster may first be waited for, see
    ``hemotune.tuning.capacity``).
    """
    import ray

    logging.getLogger(_TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)
    say = announce or log.info
    if ray.is_initialized():
        _check_fit(resources, settings, say, local=False)
        yield
        return
    local = is_local(settings)
    _init(settings, local)
    try:
        _check_fit(resources, settings, say, local=local)
        yield
    finally:
        ray.shutdown()


def _init(settings: RunSettings, local: bool) -> None:
    """``ray.init``: the given cluster, or a private local Ray bound to loopback."""
    import ray

    env_vars = {**offline_env(), **credentials_env()}  # a credentials file's path, never a password
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": settings.show_trial_logs}
    if not local:
        address = settings.address or os.environ.get("RAY_ADDRESS")
        refuse_unreachable_address(str(address))
        ray.init(address=address, runtime_env={"env_vars": env_vars}, **common)
        return
    with local_ray_env() as proxies, _loopback_node():
        ray.init(
            address="local",  # always a private Ray, never the machine's last recorded cluster
            _node_ip_address=LOOPBACK,
            num_cpus=settings.num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": {**env_vars, **proxies}},
            **common,
        )


def refuse_unreachable_address(address: str, timeout_s: float = 5.0) -> None:
    """A ``HOST:PORT`` nobody listens on is a ``UsageError`` now: ``ray.init`` would retry it for minutes.

    ``auto`` and ``ray://`` addresses are left to Ray (it fails fast on those by itself).
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): start it "
            "(`ray start --head`) or fix --address / RAY_ADDRESS"
        ) from None


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """Ray keeps ``127.0.0.1`` as the node address instead of swapping in the LAN address.

    The switch is an environment variable that Ray reads into a constant when it is
    imported: set for the Ray processes started here (they inherit it), and applied to
    this process's already imported constant while ``ray.init`` runs.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with temporary_env({_LOOPBACK_NODE_SWITCH: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def _check_fit(
    resources: Resources | None, settings: RunSettings, say: Callable[[str], None], *, local: bool
) -> None:
    """A trial no node can hold fails here instead of waiting forever in Tune's queue."""
    if resources is None:
        return
    if local:
        error = capacity.local_node_error(resources, capacity.started_local_node(), "as started")
        if error is not None:
            raise error
        return
    capacity.wait_for_cluster_node(
        resources,
        timeout_s=settings.resource_timeout_s,
        announce=say,
        node_types=capacity.declared_node_types(),
    )
