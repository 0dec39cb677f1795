"""Can a trial ever be placed? Turning Ray's endless "insufficient resources" wait into an answer.

Ray Tune queues a trial whose ``resources`` no node can ever hold and warns about it
every minute, forever. hemotune asks the question itself, before the search starts:

* a **local Ray** is one node whose size is known before it starts (Ray's own reckoning
  of this machine, or ``--num-cpus``): a trial larger than it is a usage error at once,
  and the node Ray actually started is checked again after ``ray.init``;
* on a **cluster** (``--address``), a trial that fits one of the live nodes goes ahead
  (whether that node is busy is Tune's business). Otherwise the node types the
  autoscaler may launch decide: when none could hold the trial it is a usage error,
  when one could, the search waits for such a node (announcing it) at most
  ``--resource-timeout`` seconds. The node types are read from the autoscaling config
  that ``ray up`` leaves on the head node (``~/ray_bootstrap_config.yaml``, with the
  CPUs and GPUs of each instance type filled in); without it the live nodes are all
  that is known.

Only CPUs and GPUs are checked: they are what a search space's ``resources`` asks for.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hemotune.config import Resources
from hemotune.errors import UsageError

#: Where ``ray up`` puts the autoscaling config on the head node (the monitor reads it there).
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
#: How long a search waits for a node that could hold a trial, unless ``--resource-timeout`` says.
DEFAULT_RESOURCE_TIMEOUT_S = 900.0
#: Seconds between two looks at the cluster's nodes while waiting, and between two announcements.
POLL_S = 2.0
ANNOUNCE_S = 60.0


@dataclass(frozen=True)
class NodeShape:
    """The CPUs and GPUs of one node or node type; ``None`` where unknown (assumed big enough)."""

    name: str
    cpu: float | None
    gpu: float | None

    def holds(self, need: Resources) -> bool:
        """Whether one trial asking ``need`` fits on this node when it is idle."""
        return all(
            have is None or have + 1e-9 >= want for have, want in ((self.cpu, need.cpu), (self.gpu, need.gpu))
        )

    def describe(self) -> str:
        def count(value: float | None) -> str:
            return "?" if value is None else f"{value:g}"

        return f"{self.name} ({count(self.cpu)} CPU, {count(self.gpu)} GPU)"


def _short_keys(need: Resources, shapes: Sequence[NodeShape]) -> list[str]:
    """The ``resources.*`` keys that no shape has enough of (each on its own), for the message."""
    keys = []
    if not any(s.cpu is None or s.cpu + 1e-9 >= need.cpu for s in shapes) or not shapes:
        keys.append("resources.cpu")
    if need.gpu and not any(s.gpu is None or s.gpu + 1e-9 >= need.gpu for s in shapes):
        keys.append("resources.gpu")
    return keys or ["resources.cpu", "resources.gpu"]  # each fits somewhere, but never both together


def _request(need: Resources) -> str:
    return f"{need.cpu:g} CPU + {need.gpu:g} GPU per trial"


def local_node_error(need: Resources, node: NodeShape, how: str) -> UsageError | None:
    """The error for a trial that can never fit the local Ray node ``node`` (``None`` if it fits)."""
    if node.holds(need):
        return None
    keys = _short_keys(need, [node])
    fix = []
    if "resources.cpu" in keys:
        fix.append(f"--set resources.cpu={max(node.cpu or 1, 1):g}")
    if "resources.gpu" in keys:
        fix.append(f"--set resources.gpu={node.gpu or 0:g}")
    return UsageError(
        f"{' and '.join(keys)}: a trial asks for {_request(need)}, but the local Ray has "
        f"{node.cpu:g} CPU and {node.gpu:g} GPU ({how}), so no trial could ever start. "
        f"Ask for less ({' '.join(fix)}) or run on a cluster that has it (--address)."
    )


def planned_local_node(num_cpus: int | None) -> NodeShape:
    """The node a local ``ray.init(num_cpus=...)`` would start: Ray's own count of this machine.

    Ray's resource resolution is internal API; if it moves, the machine's CPU count stands in
    (GPUs are then checked once Ray has started).
    """
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec

        spec = ResourceAndLabelSpec(num_cpus=num_cpus).resolve(is_head=True, node_ip_address="127.0.0.1")
        return NodeShape("this machine", float(spec.num_cpus or 0), float(spec.num_gpus or 0))
    except Exception:  # pragma: no cover - depends on Ray internals
        return NodeShape("this machine", float(num_cpus or os.cpu_count() or 1), None)


def started_local_node() -> NodeShape:
    """The local Ray node as started (after ``ray.init``): its total CPUs and GPUs."""
    import ray

    total = ray.cluster_resources()
    return NodeShape("the local Ray", float(total.get("CPU", 0)), float(total.get("GPU", 0)))


def live_nodes() -> list[NodeShape]:
    """The cluster's live nodes and their total resources (``ray.nodes()``)."""
    import ray

    return [
        NodeShape(
            str(n.get("NodeManagerAddress", "?")),
            float(n["Resources"].get("CPU", 0)),
            float(n["Resources"].get("GPU", 0)),
        )
        for n in ray.nodes()
        if n.get("Alive")
    ]


def declared_node_types(config_path: Path | None = None) -> list[NodeShape] | None:
    """The node types the autoscaler may launch (``None`` where no autoscaling config is readable).

    A type whose ``resources`` leave CPU or GPU out counts as unknown there (Ray detects them
    when the node starts); a worker type with ``max_workers: 0`` is never launched.
    """
    path = config_path or Path(BOOTSTRAP_CONFIG).expanduser()
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    types = config.get("available_node_types") if isinstance(config, Mapping) else None
    if not isinstance(types, Mapping):
        return None
    head = config.get("head_node_type")
    shapes = []
    for name, spec in types.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name != head and spec.get("max_workers", 1) == 0:
            continue
        res = spec.get("resources")
        res = res if isinstance(res, Mapping) else {}
        shapes.append(NodeShape(f"node type {name}", _number(res.get("CPU")), _number(res.get("GPU"))))
    return shapes


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _list(shapes: Iterable[NodeShape]) -> str:
    return ", ".join(s.describe() for s in shapes) or "none"


def wait_for_cluster_node(
    need: Resources,
    *,
    timeout_s: float | None,
    announce: Callable[[str], None],
    node_types: list[NodeShape] | None,
) -> None:
    """Return once a live node could hold one trial; a usage error where none ever could or time runs out.

    ``timeout_s`` is ``--resource-timeout``: ``None`` means the default wait, and it is also what
    makes a search wait when the autoscaler's node types are unknown (the user says nodes will come).
    """
    current = live_nodes()
    if any(n.holds(need) for n in current):
        return
    declared = node_types
    if declared is not None:
        candidates = [t for t in declared if t.holds(need)]
        if not candidates:
            keys = _short_keys(need, [*current, *declared])
            raise UsageError(
                f"{' and '.join(keys)}: a trial asks for {_request(need)}, and no node of the cluster "
                f"could ever hold it: live nodes {_list(current)}; node types the autoscaler may launch "
                f"{_list(declared)}. Ask for less (--set ...) or add a node type that has it."
            )
        why = f"the autoscaler may start {_list(candidates)}"
    elif timeout_s is None:
        keys = _short_keys(need, current)
        raise UsageError(
            f"{' and '.join(keys)}: a trial asks for {_request(need)}, and no live node of the cluster "
            f"has it: {_list(current)}; no autoscaling config is readable here ({BOOTSTRAP_CONFIG} "
            "exists on the head node of a `ray up` cluster). Ask for less, run the search on the head "
            "node, or pass --resource-timeout SECONDS to wait for a node to join."
        )
    else:
        why = "--resource-timeout was given"
    limit = DEFAULT_RESOURCE_TIMEOUT_S if timeout_s is None else timeout_s
    _wait(need, limit, why, current, announce)


def _wait(
    need: Resources, limit: float, why: str, current: list[NodeShape], announce: Callable[[str], None]
) -> None:
    """Poll the live nodes until one holds ``need``, announcing the wait now and then."""
    began = time.monotonic()
    deadline = began + limit
    next_note = began
    while True:
        now = time.monotonic()
        if now >= next_note:
            left = max(0.0, deadline - now)
            announce(
                f"waiting for a node with {_request(need)} ({why}; live nodes: {_list(current)}); "
                f"giving up in {left:.0f} s (--resource-timeout)"
            )
            next_note = now + ANNOUNCE_S
        if now >= deadline:
            break
        time.sleep(min(POLL_S, max(0.0, deadline - now)))
        current = live_nodes()
        if any(n.holds(need) for n in current):
            announce(f"a node with {_request(need)} joined after {time.monotonic() - began:.0f} s")
            return
    keys = _short_keys(need, current)
    raise UsageError(
        f"{' and '.join(keys)}: no node with {_request(need)} joined the cluster within "
        f"{limit:g} s (--resource-timeout); live nodes: {_list(current)}"
    )
