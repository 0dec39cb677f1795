"""Rendering a local HTML file in real headless Chromium: its DOM, a screenshot, and its network requests.

Chromium (the system package; ``.ci/run`` installs it) is started by subprocess and
stopped by the PID of its process group. Its net log (``--log-net-log``) records
every URL request; the page's own requests are the ones whose network isolation
key is the ``file://`` page. Chromium's own background requests (Google services,
network time) have other keys and are not the page's doing; they fail offline anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """The Chromium binary; fails under CI (``.ci/run`` installs it), skips elsewhere when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass(frozen=True)
class Rendering:
    dom: str
    screenshot: Path
    page_requests: list[str]


def _run(args: list[str], timeout: float) -> str:
    """Run Chromium with ``args``; its whole process group is killed by PID if it overruns."""
    process = subprocess.Popen(
        [chromium(), *FLAGS, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, f"chromium exited with {process.returncode}"
    return out.decode("utf-8", "replace")


def page_requests(net_log: Path) -> list[str]:
    """URLs the page itself asked for: requests isolated under the ``file://`` page, other than file:/data:."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        url = str(params.get("url", ""))
        from_page = "file://" in params.get("network_isolation_key", "")
        if event["type"] == start and from_page and url and not url.startswith(("file:", "data:")):
            urls.append(url)
    return urls


def render(page: Path, work: Path, width: int = 1280, height: int = 4000, timeout: float = 90.0) -> Rendering:
    """The DOM after load (with the page's requests from the net log) and a full-width screenshot."""
    work.mkdir(parents=True, exist_ok=True)
    url = page.resolve().as_uri()
    net_log = work / "net-log.json"
    dom = _run(
        [f"--user-data-dir={work / 'profile-dom'}", f"--log-net-log={net_log}", "--dump-dom", url], timeout
    )
    shot = work / "screenshot.png"
    _run(
        [
            f"--user-data-dir={work / 'profile-shot'}",
            f"--screenshot={shot}",
            f"--window-size={width},{height}",
            url,
        ],
        timeout,
    )
    return Rendering(dom=dom, screenshot=shot, page_requests=page_requests(net_log))
