"""cluster/cluster.yaml passes Ray's own cluster-config validation, and the submit script builds the right command.

No AWS call is made: ``prepare_config`` only merges Ray's AWS defaults file, and
``validate_config`` checks the result against ``ray/autoscaler/ray-schema.json``
(what ``ray up`` does before it bootstraps the provider).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(dict(raw))
    validate_config(config)  # raises jsonschema.ValidationError / ValueError on a bad config
    return config


@pytest.fixture(scope="module")
def submit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hemotune_submit", REPO / "cluster" / "hemotune_submit.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cluster_yaml_passes_rays_validation(prepared: dict[str, Any]) -> None:
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}, "trials must never be scheduled on the head"
    instances = {name: t["node_config"]["InstanceType"] for name, t in types.items()}
    assert instances["gpu_a10g"] == "g5.xlarge" and instances["gpu_v100"] == "p3.2xlarge"
    for name in ("gpu_a10g", "gpu_v100"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"] <= prepared["max_workers"]


def test_a_broken_config_is_rejected_by_the_same_validation(raw: dict[str, Any]) -> None:
    """The validation really bites: an unknown key in a node type fails it."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = yaml.safe_load(yaml.safe_dump(raw))
    broken["available_node_types"]["gpu_a10g"]["gpus_per_trial"] = 0.25
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_nodes_install_the_drivers_ray_version(prepared: dict[str, Any]) -> None:
    import ray

    pins = set(re.findall(r"ray\[[a-z,]+\]==([0-9.]+)", " ".join(prepared["setup_commands"])))
    assert pins == {ray.__version__}, f"cluster.yaml pins Ray {pins}, this driver has {ray.__version__}"
    assert any("pip install" in c and "hemotune[all]" in c for c in prepared["setup_commands"])


def test_head_starts_ray_and_an_mlflow_server_with_s3_artifacts(prepared: dict[str, Any]) -> None:
    head = " ".join(prepared["head_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=127.0.0.1" in head
    mlflow = next(c for c in prepared["head_start_ray_commands"] if "mlflow server" in c)
    for option in ("--app-name basic-auth", "--artifacts-destination", "--workers 1", "--port 5000"):
        assert option in mlflow
    # the store's URI (a database password, maybe) is read from the environment, on no command line
    assert "--backend-store-uri" not in mlflow and ". ~/mlflow/server.env" in mlflow
    worker = " ".join(prepared["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for command in [
        *prepared["setup_commands"],
        *prepared["head_setup_commands"],
        *prepared["head_start_ray_commands"],
        *prepared["worker_start_ray_commands"],
    ]:
        subprocess.run(["bash", "-n", "-c", command], check=True)  # every command is valid shell


def test_the_config_holds_no_credentials() -> None:
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(aws_secret_access_key|aws_access_key_id|aws_session_token)\s*[:=]", text)


def test_the_env_file_written_on_the_nodes_is_what_the_submit_script_reads(
    prepared: dict[str, Any], submit: ModuleType, tmp_path: Path
) -> None:
    command = next(c for c in prepared["setup_commands"] if "hemotune-cluster.env" in c)
    subprocess.run(["bash", "-c", command], check=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    env = submit.read_env_file(tmp_path / "hemotune-cluster.env")
    assert env["HEMOTUNE_RESULTS_DIR"].startswith("s3://")
    assert env["HEMOTUNE_MLFLOW_ARTIFACTS"].startswith("s3://")
    mlflow = next(c for c in prepared["head_start_ray_commands"] if "mlflow server" in c)
    assert "$HEMOTUNE_MLFLOW_ARTIFACTS" in mlflow


def test_submit_script_fills_in_cluster_defaults(submit: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit, "head_ip", lambda: "10.0.1.23")
    env = {"HEMOTUNE_RESULTS_DIR": "s3://b/results"}
    argv = submit.build_argv(["bcd_loss_weights", "--data", "s3://b/datasets/bccd"], env)
    assert argv[:4] == ["search", "bcd_loss_weights", "--data", "s3://b/datasets/bccd"]
    options = dict(zip(argv[4:-1:2], argv[5::2], strict=True))  # the last one: --no-progress
    assert options["--results-dir"] == "s3://b/results"
    assert (
        options["--tracking-uri"] == "http://10.0.1.23:5000"
    )  # the head's private IP: workers log there too
    assert options["--address"] == "auto"
    explicit = submit.build_argv(
        ["x", "--results-dir=s3://other", "--tracking-uri", "http://m:1", "--address", "1.2.3.4:6379"], env
    )
    assert explicit.count("--results-dir=s3://other") == 1 and "s3://b/results" not in explicit
    assert explicit.count("--tracking-uri") == 1 and explicit.count("--address") == 1
    sync = submit.build_argv(["sync", "bcd_loss_weights"], {**env, "HEMOTUNE_TRACKING_URI": "http://h:5000"})
    assert sync == [
        "sync",
        "bcd_loss_weights",
        "--results-dir",
        "s3://b/results",
        "--tracking-uri",
        "http://h:5000",
    ]
    with pytest.raises(SystemExit, match="HEMOTUNE_RESULTS_DIR"):
        submit.build_argv(["bcd_loss_weights"], {})


def test_the_head_setup_writes_the_mlflow_servers_secrets_into_0600_files(
    prepared: dict[str, Any], tmp_path: Path
) -> None:
    """cluster/mlflow_server_env.py (the head setup pipes the secret into it): the env the server command sources."""
    assert any("cluster/mlflow_server_env.py ~/mlflow" in c for c in prepared["head_setup_commands"])
    script, folder = REPO / "cluster" / "mlflow_server_env.py", tmp_path / "mlflow"

    def run(secret: dict[str, str]) -> dict[str, str]:
        subprocess.run(
            [sys.executable, str(script), str(folder)], input=json.dumps(secret), text=True, check=True
        )
        dump = "set -a; . ./server.env; set +a; env -0"
        out = subprocess.run(
            ["bash", "-c", dump], cwd=folder, env={}, capture_output=True, text=True, check=True
        )
        return dict(line.split("=", 1) for line in out.stdout.split("\0") if line.startswith("MLFLOW_"))

    first = run({"username": "hemotune", "password": "p'w $x"})
    assert (
        first["MLFLOW_AUTH_ADMIN_USERNAME"] == "hemotune" and first["MLFLOW_AUTH_ADMIN_PASSWORD"] == "p'w $x"
    )
    assert first["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{folder / 'mlflow.db'}"  # the zero-setup default
    ini = (folder / "basic_auth.ini").read_text()
    assert f"database_uri = sqlite:///{folder / 'basic_auth.db'}" in ini and "p'w" not in ini
    assert "auth_cache_ttl_seconds = 60" in ini  # no scrypt per request (1.23 s against 0.15 s measured)
    for name in ("server.env", "basic_auth.ini"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name
    production = {
        "backend_store_uri": "postgresql://h:s@db:5432/mlflow",
        "auth_db_uri": "postgresql://h:s@db/auth",
    }
    second = run({"username": "hemotune", "password": "new", **production})
    assert second["MLFLOW_BACKEND_STORE_URI"] == production["backend_store_uri"]
    assert "database_uri = postgresql://h:s@db/auth" in (folder / "basic_auth.ini").read_text()
    assert second["MLFLOW_FLASK_SERVER_SECRET_KEY"] == first["MLFLOW_FLASK_SERVER_SECRET_KEY"]  # made once
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, str(script), str(folder)], input="{}", text=True, check=True)


def test_every_node_gets_a_credentials_file_hemotune_accepts(
    prepared: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node setup's conversion of the secret (after the `aws` call) writes what hemotune reads."""
    from hemotune.tracking.credentials import load_credentials

    command = next(c for c in prepared["setup_commands"] if "secretsmanager" in c)
    converter = command.split(" | ", 1)[1]  # python3 -c '...' > file && mv ...
    secret = json.dumps({"username": "hemotune", "password": "s3cret-FAKE"})
    subprocess.run(["bash", "-c", f"umask 077; mkdir -p ~/.hemotune; {converter}"], input=secret, text=True,
                   check=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})  # fmt: skip
    env_file = next(c for c in prepared["setup_commands"] if "hemotune-cluster.env" in c)
    subprocess.run(["bash", "-c", env_file], check=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    path = [
        line for line in (tmp_path / "hemotune-cluster.env").read_text().splitlines() if "CREDENTIALS" in line
    ]
    assert path == ["HEMOTUNE_MLFLOW_CREDENTIALS=~/.hemotune/mlflow-credentials"]
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HEMOTUNE_MLFLOW_CREDENTIALS", path[0].split("=", 1)[1])
    credentials = load_credentials()
    assert credentials is not None and (credentials.username, credentials.password) == (
        "hemotune",
        "s3cret-FAKE",
    )
