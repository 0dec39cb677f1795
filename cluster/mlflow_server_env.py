#!/usr/bin/env python3
"""Write the head's MLflow server secrets: ``python3 mlflow_server_env.py FOLDER < secret.json``.

cluster.yaml's head setup pipes the Secrets Manager secret (``hemotune/mlflow``) into this.
The secret is JSON::

    {"username": "hemotune", "password": "...",                      # required
     "backend_store_uri": "postgresql://hemotune:...@db:5432/mlflow",  # optional: production store
     "auth_db_uri": "postgresql://hemotune:...@db:5432/mlflow_auth"}   # optional: MLflow's users

Writes, each mode 0600, in FOLDER (``~/mlflow``):

* ``server.env``: shell-quoted ``KEY=VALUE`` lines the head's ``mlflow server`` command sources:
  the basic-auth admin (the user hemotune logs in as), a Flask secret key (made once, then
  kept), ``MLFLOW_BACKEND_STORE_URI`` (read by ``mlflow server`` itself, so the URI is on no
  command line) defaulting to SQLite in FOLDER, and ``MLFLOW_AUTH_CONFIG_PATH``;
* ``basic_auth.ini``: the basic-auth app's settings (its user store, default permission); no password.

Nothing is printed: the secrets go to files only, never to a log.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
from pathlib import Path


def read_env(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of a ``server.env`` written before (values shell-quoted)."""
    if not path.exists():
        return {}
    pairs = (shlex.split(line)[0].partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, _, value in pairs}


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner only from the first byte on."""
    temporary = path.with_name(path.name + ".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, 0o600)
    temporary.replace(path)


def server_files(secret: dict[str, str], folder: Path) -> dict[str, str]:
    """``{file name: content}`` of the server's secrets for ``secret`` (see the module docstring)."""
    if not secret.get("username") or not secret.get("password"):
        raise SystemExit("mlflow_server_env: the secret needs 'username' and 'password'")
    previous = read_env(folder / "server.env")
    env = {
        "MLFLOW_AUTH_ADMIN_USERNAME": secret["username"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": secret["password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": previous.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
        or secrets.token_hex(32),
        "MLFLOW_BACKEND_STORE_URI": secret.get("backend_store_uri") or f"sqlite:///{folder / 'mlflow.db'}",
        "MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"),
    }
    auth_db = secret.get("auth_db_uri") or f"sqlite:///{folder / 'basic_auth.db'}"
    return {
        "server.env": "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items()),
        "basic_auth.ini": "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {auth_db}\nadmin_username = {secret['username']}\n"
        # MLflow checks the password with scrypt on every request (0.2-1.2 s of CPU each on 2 cores,
        # measured): keep a successful login for 60 s. Failed logins are never cached (still 401).
        "auth_cache_ttl_seconds = 60\n",
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    folder = Path(argv[0]).expanduser()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in server_files(json.load(sys.stdin), folder).items():
        write_private(folder / name, text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
