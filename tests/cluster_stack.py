"""A real distributed stack on one machine, for tests: S3 (moto_server), an MLflow server, a multi-node Ray.

Everything listens on and talks to loopback addresses only. Ray turns ``127.0.0.1``
into the machine's network address (it wants an address other hosts can reach),
so the Ray nodes use other loopback addresses: Ray leaves those alone and Linux
routes all of 127.0.0.0/8 over the loopback interface. Each stack claims a block
``127.A.B.0/24`` that no socket on the machine uses (never ``127.0.x.x``, where
``127.0.0.1``, ``127.0.0.53`` and ``127.0.1.1`` live) and holds a socket bound in it
while it runs, so two stacks (or anything else) never share a node address.
Giving every node its own address also makes a trial's node visible in Tune's
``node_ip`` and in the ``hemotune.node_ip`` tag.

Ports are bound by the OS: ``moto_server -p 0``, ``mlflow server --port 0`` and
``ray start --head --port 0`` each bind a free port themselves, and the port is
read back from the server's own log (no pick-then-bind race). Only a restarted
MLflow server binds a known port, its previous one: its clients already hold the
URI, as they would with a real server restarted on its host.

Each service is one ``Popen`` (``ray start --block`` keeps a node's raylet, agents
and workers as its descendants instead of daemonising them) and is ended by
killing exactly that process tree, by PID.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from mlflow_services import BasicAuth, Postgres

BIN = Path(sys.executable).parent
#: Ray notices a dead node after about 3 s instead of about 30 s (set on the head: the GCS reads it).
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def claim_loopback_block() -> tuple[str, socket.socket]:
    """``(prefix "127.A.B", socket bound at 127.A.B.1)``: a /24 of loopback no socket on the machine uses.

    The bound socket is the claim: a later stack sees it and takes another block. Close it to release.
    """
    used = {
        address.ip
        for conn in psutil.net_connections(kind="inet4")
        for address in (conn.laddr, conn.raddr)
        if address
    }
    rng = random.SystemRandom()
    for _ in range(100):
        prefix = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}"
        if any(ip.startswith(prefix + ".") for ip in used):
            continue
        claim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            claim.bind((f"{prefix}.1", 0))
        except OSError:
            claim.close()
            continue
        return prefix, claim
    raise RuntimeError("no free 127.A.B.0/24 block of loopback addresses")


def port_from_log(service: Service, pattern: str, timeout: float, what: str) -> int:
    """The port a server bound itself (it was started with port 0), read from its log line ``pattern``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        match = re.search(pattern, service.own_output())
        if match:
            return int(match.group(1))
        if not service.alive():
            raise RuntimeError(f"{what} exited before it logged its port:\n{service.output()[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} to log its port")


class Service:
    """A started process and every descendant it ever had, ended together by PID."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str], cwd: Path | None = None
    ) -> None:
        self.name = name
        self.args = args
        self.log = log_dir / f"{name}.log"
        self._fh = self.log.open("a")
        self.log_start = self._fh.tell()  # where this process's output begins in the (appended) log
        self.started = time.time()
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        self.seen: dict[int, psutil.Process] = {self.proc.pid: psutil.Process(self.proc.pid)}

    def snapshot(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.setdefault(child.pid, child)
        return [p for p in self.seen.values() if _alive(p)]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def own_output(self) -> str:
        """The output of this process only, not of an earlier one that logged to the same file."""
        self._fh.flush()
        with self.log.open("rb") as fh:
            fh.seek(self.log_start)
            return fh.read().decode(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> list[int]:
        """Signal the whole tree (snapshot first, so nothing escapes by reparenting); returns the PIDs."""
        procs = self.snapshot()
        # Our own child is signalled and reaped through Popen, so its return code stays true.
        others = [p for p in procs if p.pid != self.proc.pid]
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        for proc in others:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.send_signal(sig)
        psutil.wait_procs(others, timeout=15)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        self._fh.flush()
        return [p.pid for p in procs]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def as_mlflow_user(stack: Stack) -> Iterator[Stack]:
    """This process reads MLflow as the stack's hemotune user (drivers and nodes get none of it:
    ``stack.env``); the caller's MLflow credentials come back, and the stack is stopped and removed."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    os.environ.update(stack.auth.user_env() if stack.auth else {})
    try:
        yield stack
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stack.stop()
        stack.remove()


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    with opener.open(url, timeout=timeout) as response:
        return 200 <= int(response.status) < 500


# ----------------------------------------------------------------------------- services


class S3Server:
    """``moto_server`` on a loopback port: a real S3 HTTP endpoint."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.service = Service("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", "0"], root, env)
        self.port = port_from_log(self.service, r"Running on http://127\.0\.0\.1:(\d+)", 30, "moto_server")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        wait_for(lambda: http_ok(f"{self.endpoint}/moto-api/"), 30, "moto_server")


class MlflowServer:
    """``mlflow server`` (one worker) with a SQLite backend, proxying artifacts to S3; restartable on its port.

    The first start binds port 0 (the OS picks); a restart binds the port the first one got.
    """

    #: uvicorn (MLflow 3's default server) or gunicorn announcing the address it bound.
    LISTENING = r"(?:Uvicorn running on|Listening at:) http://127\.0\.0\.1:(\d+)"

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        artifacts_destination: str,
        backend: str | None = None,
        auth: BasicAuth | None = None,
    ) -> None:
        self.root = root
        self.auth = auth  # MLflow's basic-auth app (tests/mlflow_services.py), None: no authentication
        self.env = {**env, **(auth.server_env() if auth else {})}
        self.port = 0  # known once the first start has bound one
        self.backend = backend or f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts_destination = artifacts_destination
        self.service: Service | None = None
        self.starts: list[float] = []  # seconds each start took to become healthy
        self.start(wait=False)

    def start(self, wait: bool = True) -> float:
        self._began = time.time()
        args = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            self.artifacts_destination,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            *(["--app-name", "basic-auth"] if self.auth else []),
        ]
        self.service = Service(f"mlflow-{len(self.starts)}", args, self.root, self.env, cwd=self.root)
        return self.wait_healthy() if wait else 0.0

    @property
    def uri(self) -> str:
        assert self.port, "the MLflow server has not bound a port yet (call wait_healthy)"
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self) -> float:
        service = self.service
        assert service is not None
        began = time.time()
        bound = port_from_log(service, self.LISTENING, 120, "the MLflow server")
        assert self.port in (0, bound), f"restarted on port {bound}, not on its port {self.port}"
        self.port = bound

        wait_for(
            lambda: not service.alive() or http_ok(f"{self.uri}/health"),
            120 - (time.time() - began),
            "the MLflow server",
            interval=0.5,
        )
        assert service.alive(), f"the MLflow server exited:\n{service.output()[-3000:]}"
        if self.auth:
            self.auth.create_user(self.uri)
        self.starts.append(time.time() - self._began)
        return self.starts[-1]

    def stop(self) -> None:
        if self.service is not None:
            self.service.kill()
            self.service = None


class RayCluster:
    """A head node and worker nodes, each a ``ray start --block`` with its own address and temp dir.

    The nodes take addresses in a loopback block claimed for this cluster (head ``.2``, workers
    ``.3`` on); the head's GCS binds port 0 and its port is read from the head's log.
    """

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.prefix, self._claim = claim_loopback_block()
        self.port = 0  # the GCS port, known once the head started
        self.address = ""  # "head-ip:port", known once the head started
        self.nodes: dict[str, Service] = {}
        self.ip: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # name -> Ray node id, kept after the node is killed
        self._next_ip = 3

    def _start(self, name: str, ip: str, args: list[str], env: dict[str, str]) -> Service:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(BIN / "ray"),
            "start",
            "--block",
            "--node-ip-address",
            ip,
            "--temp-dir",
            str(temp_dir),
            "--disable-usage-stats",
            "--object-store-memory",
            str(100 * 1024 * 1024),
            *args,
        ]
        service = Service(name, cmd, self.root, {**self.env, **env})
        self.nodes[name] = service
        self.ip[name] = ip
        return service

    def _wait_started(self, name: str) -> None:
        service = self.nodes[name]
        wait_for(
            lambda: "Ray runtime started" in service.output() or not service.alive(), 120, f"Ray node {name}"
        )
        assert service.alive(), service.output()
        wait_for(lambda: self.node_id(name), 30, f"the raylet of {name}")
        self.ids[name] = str(self.node_id(name))

    def start_head(self) -> None:
        ip = f"{self.prefix}.2"
        args = ["--head", "--port", "0", "--num-cpus", "0", "--include-dashboard=false"]
        head = self._start("head", ip, args, dict(FAST_NODE_DEATH))
        # "To add another node to this Ray cluster, run  ray start --address='IP:PORT'"
        self.port = port_from_log(head, rf"--address='{re.escape(ip)}:(\d+)'", 120, "the Ray head")
        self.address = f"{ip}:{self.port}"
        self._wait_started("head")

    def add_workers(self, workers: dict[str, dict[str, str]], num_cpus: int = 1) -> None:
        """Start worker nodes (name -> extra environment) in parallel; each gets a custom resource ``name``."""
        assert self.address, "start the head first"
        for name, env in workers.items():
            assert name not in self.nodes, f"there already is a node {name}"
            ip = f"{self.prefix}.{self._next_ip}"
            self._next_ip += 1
            args = [
                "--address",
                self.address,
                "--num-cpus",
                str(num_cpus),
                "--resources",
                json.dumps({name: 1}),
            ]
            self._start(name, ip, args, dict(env))
        for name in workers:
            self._wait_started(name)

    def node_id(self, name: str) -> str | None:
        """The Ray node id of node ``name``, read from its raylet's command line."""
        for proc in self.nodes[name].snapshot():
            with contextlib.suppress(psutil.Error):
                if proc.name() == "raylet":
                    match = re.search(r"--node_id=([0-9a-f]+)", " ".join(proc.cmdline()))
                    if match:
                        return match.group(1)
        return None

    def live_workers(self) -> list[str]:
        """The worker nodes (not the head) whose ``ray start`` still runs."""
        return [name for name, service in self.nodes.items() if name != "head" and service.alive()]

    def name_of(self, node_id: str) -> str | None:
        return next((n for n, i in self.ids.items() if i == node_id), None)

    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of node ``name`` (the node is lost, as when a machine dies)."""
        return self.nodes[name].kill()

    def stop(self) -> None:
        for name in reversed(list(self.nodes)):
            self.nodes[name].kill()
        self._claim.close()


class ConnectionWatch(threading.Thread):
    """Samples the sockets of every process of the stack; records any remote address off loopback.

    A sampler can miss a connection that opens and closes between two samples, so this
    is evidence, not proof; the closed loopback proxy every process of the stack gets
    (``Stack.env``) is the actual guard. ``sampled`` holds every PID it looked at.
    """

    def __init__(self, processes: Any, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.processes = processes  # () -> the psutil processes to sample now
        self.interval = interval
        self.outside: set[str] = set()
        self.samples = 0
        self.sampled: set[int] = set()
        self.began = time.monotonic()
        self.longest_gap_s = 0.0  # the longest time between the starts of two samples
        self.halt = threading.Event()

    def run(self) -> None:
        last = self.began
        while not self.halt.wait(self.interval):
            now = time.monotonic()
            self.longest_gap_s, last = max(self.longest_gap_s, now - last), now
            procs = {proc.pid: proc for proc in self.processes()}
            # The machine's socket tables read once per sample, each socket's owner found through
            # /proc/PID/fd: the sockets that one read per process would give (all of the stack's
            # processes share one network namespace), at about a tenth of the CPU (a round of
            # per-process reads took about 0.4 s of a core for 50 processes).
            with contextlib.suppress(psutil.Error):
                for conn in psutil.net_connections(kind="inet"):
                    proc = procs.get(conn.pid) if conn.pid is not None else None
                    if proc is not None and conn.raddr and not _is_loopback(conn.raddr.ip):
                        remote = f"{conn.raddr.ip}:{conn.raddr.port}"
                        self.outside.add(f"{conn.pid} {_proc_name(proc)} -> {remote}")
                self.sampled.update(pid for pid, proc in procs.items() if _alive(proc))
            self.samples += 1


def _proc_name(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return proc.name()
    return "?"


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1
    return ip.is_loopback


# ----------------------------------------------------------------------------- the whole stack


#: HTTP(S) to a closed loopback port: what Ray's start-up probes of cloud metadata addresses meet
#: (STACK-NOTES). The stack sets it for its own processes instead of relying on the test harness.
CLOSED_PROXY = {
    **{var: "http://127.0.0.1:9" for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
    "no_proxy": "localhost,127.0.0.1,::1",
    "NO_PROXY": "localhost,127.0.0.1,::1",
}


class Stack:
    """S3 + MLflow server + Ray cluster with two worker nodes; every credential a recognisable fake.

    ``production`` (the default): the MLflow server is the one cluster/cluster.yaml offers for
    production, a PostgreSQL backend store (and auth store) behind MLflow's basic-auth app.
    Drivers get the ``hemotune`` user's credentials file (``driver_env``), the Ray nodes nothing:
    trials on them find the file through the path the driver hands Ray. ``production=False``: a
    SQLite store without authentication (cluster.yaml's zero-setup default).
    """

    bucket = "hemotune-it"

    def __init__(self, production: bool = True) -> None:
        self.production = production
        # Short root: Ray's unix socket paths under it must stay below 108 characters.
        self.root = Path(tempfile.mkdtemp(prefix="ht-", dir="/tmp"))
        self.secret = f"hemotune-FAKE-SECRET-{secrets.token_hex(8)}"
        self.key_id = f"hemotune-FAKE-KEYID-{secrets.token_hex(6)}"
        (self.root / "ray_token").write_text(secrets.token_hex(32))
        self.driver_cache = self.root / "cache-driver"
        self.env: dict[str, str] = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.root / "ray_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "HEMOTUNE_CACHE_DIR": str(self.driver_cache),
            **CLOSED_PROXY,
        }
        self.services: list[Service] = []  # drivers and other extra processes, watched like the stack
        self.timings: dict[str, float] = {}
        self.watch = ConnectionWatch(self.processes)
        self.watch.start()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        began = time.time()
        self.s3 = S3Server(self.root, self.env)
        self.env.update(AWS_ENDPOINT_URL=self.s3.endpoint, MLFLOW_S3_ENDPOINT_URL=self.s3.endpoint)
        self.client().create_bucket(Bucket=self.bucket)
        self.timings["s3_start_s"] = time.time() - began
        self.postgres: Postgres | None = None
        self.auth: BasicAuth | None = None
        backend, server_env = None, dict(self.env)
        if self.production:
            began = time.time()
            self.postgres = Postgres(("mlflow", "mlflow_auth"))
            self.timings["postgres_start_s"] = time.time() - began
            self.auth = BasicAuth(self.root, database_uri=self.postgres.uri("mlflow_auth"))
            backend = self.postgres.uri("mlflow")
            server_env.update(self.postgres.client_env())  # the database password: the server's only
        self.mlflow = MlflowServer(  # starts meanwhile
            self.root, server_env, f"s3://{self.bucket}/mlflow", backend=backend, auth=self.auth
        )
        began = time.time()
        self.ray = RayCluster(self.root / "ray", self.env)
        self.ray.start_head()
        self.ray.add_workers({name: self.worker_env(name) for name in ("node1", "node2")})
        self.timings["ray_start_s"] = time.time() - began
        self.timings["mlflow_start_s"] = self.mlflow.wait_healthy()

    def worker_env(self, name: str) -> dict[str, str]:
        return {"HEMOTUNE_CACHE_DIR": str(self.node_cache(name))}

    def ensure_workers(self, count: int = 2) -> list[str]:
        """Start new worker nodes until ``count`` are alive (an earlier test may have killed one)."""
        first = sum(1 for name in self.ray.nodes if name != "head") + 1  # names are never reused
        added = [f"node{first + i}" for i in range(count - len(self.ray.live_workers()))]
        if added:
            self.ray.add_workers({name: self.worker_env(name) for name in added})
        return added

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def processes(self) -> list[psutil.Process]:
        services: list[Service] = list(self.services)
        for part in ("s3", "mlflow"):
            service = getattr(getattr(self, part, None), "service", None)
            if service is not None:
                services.append(service)
        ray = getattr(self, "ray", None)
        services += list(ray.nodes.values()) if ray is not None else []
        return [p for service in services for p in service.snapshot()] + self._postgres_processes()

    def _postgres_processes(self) -> list[psutil.Process]:
        proc = getattr(getattr(self, "postgres", None), "proc", None)
        if proc is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        return []

    def driver_env(self) -> dict[str, str]:
        """What a driver needs beyond ``env`` to reach the MLflow server: the credentials file's path."""
        return self.auth.client_env() if self.auth else {}

    def secrets(self) -> list[bytes]:
        """Every fake secret of the stack: AWS, the MLflow users' and the database's passwords."""
        found = [self.secret.encode(), self.key_id.encode()]
        found += self.auth.secrets() if self.auth else []
        return found + ([self.postgres.password.encode()] if self.postgres else [])

    def node_cache(self, name: str) -> Path:
        return self.root / f"cache-{name}"

    def stop(self) -> None:
        self.watch.halt.set()
        for service in self.services:
            service.kill()
        for part in ("ray", "mlflow", "postgres", "s3"):
            obj = getattr(self, part, None)
            if obj is None:
                continue
            with contextlib.suppress(Exception):
                if part == "s3":
                    obj.service.kill()
                else:
                    obj.stop()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if getattr(self, "postgres", None) is not None:
            self.postgres.remove()  # type: ignore[union-attr]


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    stack = Stack()
    try:
        yield stack
    finally:
        stack.stop()
