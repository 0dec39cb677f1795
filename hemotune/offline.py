"""Keep the libraries hemotune drives offline, quiet and out of hemotune's MLflow runs.

* MLflow: telemetry off.
* Ultralytics: a hemotune-owned config folder (``YOLO_CONFIG_DIR``) whose settings
  switch every integration off (its MLflow callback would attach to and end
  hemotune's runs), hub sync off, offline mode on, and a local TTF font in place
  of the ``Arial.ttf`` it would otherwise download during dataset checks.
* timm / Hugging Face hub: offline (models are built from scratch or from files).
* Ray: usage statistics off; ``local_ray_env`` routes HTTP of the Ray processes
  hemotune starts to a closed loopback port, which stops the dashboard's probes of
  the cloud metadata address 169.254.169.254.

Everything here is explicit configuration of the current process; nothing is
written to the user's global settings files. tests/test_offline.py checks that this
is enough on its own: real searches with none of these variables (nor any proxy) set
beforehand, every connect of every process recorded, nothing but loopback reached.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from hemotune.config import default_cache_dir

#: Ultralytics settings hemotune needs off inside its trainers.
ULTRALYTICS_INTEGRATIONS_OFF = {
    "sync": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "mlflow": False,
    "raytune": False,
    "tensorboard": False,
    "wandb": False,
    "vscode_msg": False,
    "openvino_msg": False,
}
#: A closed loopback port: HTTP sent through this "proxy" fails at once, locally.
CLOSED_LOOPBACK_PROXY = "http://127.0.0.1:9"
LOOPBACK_HOSTS = "localhost,127.0.0.1,::1"
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


def ultralytics_config_dir() -> Path:
    return default_cache_dir() / "ultralytics"


def offline_env() -> dict[str, str]:
    """Environment variables every hemotune process (driver and trial workers) runs with."""
    return {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(ultralytics_config_dir()),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    }


def apply_offline_env() -> None:
    """Set ``offline_env()`` in this process (before any of those libraries is imported)."""
    os.environ.update(offline_env())


def _install_font(config_dir: Path) -> None:
    """Give Ultralytics a local TTF so it never downloads Arial.ttf (matplotlib ships DejaVuSans)."""
    targets = [config_dir / "Arial.ttf", config_dir / "Arial.Unicode.ttf"]
    if all(t.exists() for t in targets):
        return
    try:
        import matplotlib

        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    except ImportError:  # pragma: no cover - matplotlib comes with ultralytics
        return
    config_dir.mkdir(parents=True, exist_ok=True)
    for target in targets:
        if not target.exists() and source.exists():
            shutil.copyfile(source, target)


def configure_ultralytics() -> None:
    """Import-time configuration of Ultralytics; call before ``import ultralytics``.

    Safe to call repeatedly. If Ultralytics was already imported with another
    config folder, its integration callbacks are still switched off for this
    process (and in that folder's settings file, which only ever turns loggers off).
    """
    apply_offline_env()
    config_dir = ultralytics_config_dir() / "Ultralytics"
    _install_font(config_dir)
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if Path(USER_CONFIG_DIR) != config_dir:
        _install_font(Path(USER_CONFIG_DIR))
    changed = {k: v for k, v in ULTRALYTICS_INTEGRATIONS_OFF.items() if SETTINGS.get(k) != v}
    if changed:
        SETTINGS.update(changed)


@contextlib.contextmanager
def temporary_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for ``None``, unset) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def local_ray_env() -> Iterator[dict[str, str]]:
    """Environment for starting a local Ray: its processes cannot reach non-loopback HTTP.

    Yields the proxy values the *trials* should run with (the caller's originals,
    empty when unset), to be passed as ``runtime_env={"env_vars": ...}`` so that
    trial code reaching a remote MLflow server or S3 is not affected.
    """
    trial_env = {k: os.environ.get(k) or "" for k in _PROXY_VARS}
    no_proxy = ",".join(filter(None, [os.environ.get("no_proxy") or "", LOOPBACK_HOSTS]))
    with temporary_env(
        {**{k: CLOSED_LOOPBACK_PROXY for k in _PROXY_VARS}, "no_proxy": no_proxy, "NO_PROXY": no_proxy}
    ):
        yield trial_env
