"""The negative control of tests/test_offline.py: a trainer that plants downloads, and a driver for it.

``PlantedDownloadTrainer`` is the synthetic trainer plus what a careless trainer might do:
fetch weights over HTTP (by address and by name) and swallow the error, so the search
still succeeds and only the network audit can tell. Inside a network namespace (only
``lo`` exists) it also connects from a program that is not Python (bash's ``/dev/tcp``),
which the audit hook cannot see and the system-call trace must. The addresses are in
TEST-NET-3 (203.0.113.0/24, never routed); under the audit hook the Python attempts are
refused before any system call, and the bash one runs only where no route exists.

``python planted.py [--unrouted] search ...`` registers the trainer and runs the hemotune
CLI; ``--unrouted`` replaces hemotune's ``local_ray_env`` by one that routes nothing,
to show that the audit notices when Ray's own processes are not kept off the network.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hemotune.testing.synthetic import SyntheticCurvesTrainer
from hemotune.trainers import Metrics, Report, TrialContext

PLANTED_URLS = ("http://203.0.113.1/weights.pt", "http://weights.hemotune-planted.example/weights.pt")
PLANTED_SHELL_ADDRESS = "203.0.113.2"


def only_loopback_here() -> bool:
    """True inside a network namespace whose only interface is ``lo`` (per-process view)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return {line.split(":", 1)[0].strip() for line in lines} == {"lo"}


class PlantedDownloadTrainer(SyntheticCurvesTrainer):
    name = "planted_download"

    def train(self, resolved: Mapping[str, Any], report: Report, context: TrialContext) -> Metrics:
        for url in PLANTED_URLS:
            # a direct opener, like a trainer run with the caller's (here: no) proxies
            with contextlib.suppress(OSError):
                urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2)
        if only_loopback_here():
            subprocess.run(
                ["bash", "-c", f"exec 3<>/dev/tcp/{PLANTED_SHELL_ADDRESS}/80"], timeout=10, check=False
            )
        return super().train(resolved, report, context)


@contextlib.contextmanager
def _unrouted_ray_env() -> Iterator[dict[str, str]]:
    yield {}


def main(argv: list[str]) -> int:
    from hemotune.cli import main as cli_main
    from hemotune.trainers import register_trainer

    register_trainer("planted_download", "planted:PlantedDownloadTrainer")
    if argv[:1] == ["--unrouted"]:
        import hemotune.tuning.session as session

        session.local_ray_env = _unrouted_ray_env  # type: ignore[assignment]
        argv = argv[1:]
    return cli_main(argv)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
