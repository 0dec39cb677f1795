"""The production pieces of a cluster's MLflow server, for tests: a real PostgreSQL and MLflow's basic-auth app.

``Postgres`` runs the system's PostgreSQL (``initdb`` + ``postgres``, version 15 on
Debian: /usr/lib/postgresql/15/bin; ``.ci/run`` installs it when missing) on a
loopback port, with password authentication, in a data folder of its own. As root it
runs as the unprivileged ``postgres`` user (PostgreSQL refuses to run as root). It is
one ``Popen`` ended by PID. Its password never appears in a URI: clients get it from
``PGPASSWORD`` (libpq), as cluster/cluster.yaml does with ``~/.pgpass``.

``BasicAuth`` is the configuration of ``mlflow server --app-name basic-auth``: an
admin (bootstrapped from ``MLFLOW_AUTH_ADMIN_*`` variables, no password in any
file), a ``hemotune`` user created through the REST API, and a 0600 credentials
file for that user (``HEMOTUNE_MLFLOW_CREDENTIALS``). Every secret is a
recognisable fake, so a test can search for it everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
#: How long the basic-auth server keeps a successful login (``auth_cache_ttl_seconds``): a test module.
AUTH_CACHE_TTL_S = 3600


def postgres_bin(name: str) -> str | None:
    """``initdb``/``postgres`` of the newest installed PostgreSQL (Debian's layout, then PATH)."""
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


def have_postgres() -> bool:
    return postgres_bin("initdb") is not None and postgres_bin("postgres") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_unprivileged() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) to run PostgreSQL as a non-root user when we are root."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            user = pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"], user.pw_uid, user.pw_gid
    raise RuntimeError("running as root and there is neither a postgres nor a nobody user")


class Postgres:
    """A PostgreSQL server on ``127.0.0.1:port`` with superuser ``hemotune`` and a random password."""

    user = "hemotune"

    def __init__(self, databases: tuple[str, ...] = ("mlflow",)) -> None:
        if not have_postgres():
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run does this)")
        self.password = f"hemotune-FAKE-PGPASS-{secrets.token_hex(8)}"
        self.root = Path(tempfile.mkdtemp(prefix="ht-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        prefix, uid, gid = _as_unprivileged()
        if uid is not None:
            os.chown(self.root, uid, gid or -1)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if uid is not None:
            os.chown(pwfile, uid, gid or -1)
        try:
            subprocess.run(
                [*prefix, postgres_bin("initdb") or "initdb", "-D", str(self.data), "-U", self.user,
                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
                check=True, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        finally:
            pwfile.unlink()
        self.proc: subprocess.Popen[bytes] | None = None
        for _ in range(5):  # the port is picked, then bound by postgres: retry a lost race
            self.port = _free_port()
            if self._start(prefix):
                break
        else:
            raise RuntimeError(f"PostgreSQL did not start:\n{self.log.read_text()[-3000:]}")
        for name in databases:
            self.sql(f"CREATE DATABASE {name}")

    def _start(self, prefix: list[str]) -> bool:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*prefix, postgres_bin("postgres") or "postgres", "-D", str(self.data), "-h", "127.0.0.1",
             "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "fsync=off"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.sql("SELECT 1")
                return True
            time.sleep(0.3)
        self.stop()
        return False

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=self.user, password=self.password, dbname=database
        )

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        conn = self.connect(database)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(statement)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def uri(self, database: str = "mlflow") -> str:
        """A SQLAlchemy URI without the password (libpq reads ``PGPASSWORD``)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def client_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by PID), then SIGKILL what is left of its tree."""
        import psutil

        if self.proc is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            postmaster = [p for p in tree if p.pid != self.proc.pid and p.name() == "postgres"][:1] or tree[
                :1
            ]
            postmaster[0].send_signal(signal.SIGINT)
            _, alive = psutil.wait_procs(tree, timeout=20)
            for proc in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _request(url: str, auth: tuple[str, str] | None, body: dict[str, Any] | None = None) -> tuple[int, str]:
    """(HTTP status, body) of a GET (or a JSON POST) to a loopback URL, never via a proxy."""
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


class BasicAuth:
    """What ``mlflow server --app-name basic-auth`` needs, and the ``hemotune`` user it is given."""

    admin = "hemotune-admin"
    user = "hemotune"

    def __init__(self, root: Path, database_uri: str | None = None) -> None:
        self.admin_password = f"hemotune-FAKE-ADMINPW-{secrets.token_hex(8)}"
        self.password = f"hemotune-FAKE-MLFLOWPW-{secrets.token_hex(8)}"
        self.config = root / "basic_auth.ini"
        database_uri = database_uri or f"sqlite:///{root / 'basic_auth.db'}"
        # auth_cache_ttl_seconds: MLflow's own cache of successful logins (off by default). Without
        # it every request costs the one-worker server a scrypt password check (0.2-1 s of CPU on
        # these 2 cores), and the server, not the trials, paces a search. Refusals are never
        # cached: a wrong or missing password still gets its 401 on every request.
        self.config.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {database_uri}\n"
            f"admin_username = {self.admin}\nauth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n"
        )
        self.credentials_file = root / "mlflow-credentials"
        self.credentials_file.write_text(
            f"[mlflow]\nmlflow_tracking_username = {self.user}\nmlflow_tracking_password = {self.password}\n"
        )
        self.credentials_file.chmod(0o600)
        self._flask_key = secrets.token_hex(16)

    def server_env(self) -> dict[str, str]:
        """The server's environment: the admin's password comes from here, not from a file."""
        return {
            "MLFLOW_AUTH_CONFIG_PATH": str(self.config),
            "MLFLOW_AUTH_ADMIN_USERNAME": self.admin,
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self._flask_key,
        }

    def client_env(self) -> dict[str, str]:
        """What a driver is given: the path of the credentials file, not the password."""
        return {"HEMOTUNE_MLFLOW_CREDENTIALS": str(self.credentials_file)}

    def user_env(self) -> dict[str, str]:
        """MLflow's own variables for the ``hemotune`` user (for the test process's client)."""
        return {"MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password}

    def create_user(self, uri: str) -> None:
        """Create the ``hemotune`` user (as the admin); a restarted server already has it."""
        status, body = _request(
            f"{uri}/api/2.0/mlflow/users/create",
            (self.admin, self.admin_password),
            {"username": self.user, "password": self.password},
        )
        assert status == 200 or "already exists" in body, (status, body)

    def secrets(self) -> list[bytes]:
        return [self.password.encode(), self.admin_password.encode()]


def status_of(url: str, auth: tuple[str, str] | None = None) -> int:
    return _request(url, auth)[0]
