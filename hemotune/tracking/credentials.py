"""Credentials for an MLflow server behind MLflow's basic-auth app, and the pre-flight check of them.

Where they come from, first found wins:

1. ``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` (MLflow's own variables);
2. the file named by ``HEMOTUNE_MLFLOW_CREDENTIALS``: MLflow's credentials-file format
   (an ``[mlflow]`` section with ``mlflow_tracking_username`` and
   ``mlflow_tracking_password``), readable by its owner only (mode 0600 or 0400);
   hemotune refuses a file that group or others may read.

The password only ever lives in this process's environment, where MLflow's client
reads it at each request. Trials on other Ray nodes get the file's *path*
(``credentials_env``), never the password: Ray's runtime-env agents log the
environment they are given. Nothing here logs a password, and a bad credential
fails the search with a ``UsageError`` (exit 2) before Ray starts.
"""

from __future__ import annotations

import configparser
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from hemotune.errors import UsageError

CREDENTIALS_FILE_VAR = "HEMOTUNE_MLFLOW_CREDENTIALS"
USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"
#: What a user is told to set when the server wants credentials and has none.
HOW_TO_SET = (
    f"set {USERNAME_VAR} and {PASSWORD_VAR}, or {CREDENTIALS_FILE_VAR}=/path/to/file "
    "(mode 0600, an [mlflow] section with mlflow_tracking_username and mlflow_tracking_password)"
)


@dataclass(frozen=True)
class Credentials:
    """A user name and password, and where they were found (``source`` names a variable or file)."""

    username: str
    password: str = field(repr=False)
    source: str


def load_credentials() -> Credentials | None:
    """The credentials of this process's environment (see the module docstring), or None.

    Raises ``UsageError`` for half a pair of variables or an unusable credentials file.
    """
    username, password = os.environ.get(USERNAME_VAR), os.environ.get(PASSWORD_VAR)
    if username and password:
        return Credentials(username, password, f"{USERNAME_VAR}/{PASSWORD_VAR}")
    if bool(username) != bool(password):
        missing = PASSWORD_VAR if username else USERNAME_VAR
        raise UsageError(f"{missing} is not set (but its partner is): set both, or neither")
    path = os.environ.get(CREDENTIALS_FILE_VAR)
    return read_credentials_file(Path(path).expanduser()) if path else None


def read_credentials_file(path: Path) -> Credentials:
    """The credentials in ``path``, refused unless only its owner may read it."""
    where = f"{CREDENTIALS_FILE_VAR}={path}"
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise UsageError(f"{where}: cannot read the MLflow credentials file ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise UsageError(f"{where} is not a file")
    if mode & 0o077:
        raise UsageError(
            f"{where} may be read by group or others (mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`"
        )
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise UsageError(
            f"{where}: not an INI file with an [mlflow] section ({type(exc).__name__})"
        ) from None
    section = parser["mlflow"] if parser.has_section("mlflow") else {}
    username = section.get(USERNAME_VAR.lower(), "").strip()
    password = section.get(PASSWORD_VAR.lower(), "").strip()
    if not username or not password:
        raise UsageError(
            f"{where}: needs an [mlflow] section with {USERNAME_VAR.lower()} and {PASSWORD_VAR.lower()}"
        )
    return Credentials(username, password, where)


def use_credentials() -> Credentials | None:
    """Load the credentials and put them where MLflow's client reads them (this process's environment)."""
    credentials = load_credentials()
    if credentials is not None:
        os.environ[USERNAME_VAR] = credentials.username
        os.environ[PASSWORD_VAR] = credentials.password
    return credentials


def credentials_env() -> dict[str, str]:
    """What trial processes on any node need to find the credentials: the file's path, if one is used.

    Credentials from variables stay out: a local Ray's workers inherit this process's
    environment, and the nodes of a cluster need their own (docs/distributed.md).
    """
    path = os.environ.get(CREDENTIALS_FILE_VAR)
    return {CREDENTIALS_FILE_VAR: str(Path(path).expanduser().resolve())} if path else {}


def check_tracking_access(tracking_uri: str | None, timeout_s: int = 10) -> Credentials | None:
    """Fail with a ``UsageError`` naming the variable to set when an HTTP tracking server refuses us.

    Loads the credentials (``use_credentials``), then asks the server for one experiment.
    401 means missing or wrong credentials, 403 a user without permission. A server that
    cannot be reached is left to the caller's own MLflow calls (a runtime failure, not
    bad input); a non-HTTP store (SQLite) needs no check.
    """
    credentials = use_credentials()
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        return credentials
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(tracking_uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            params={"max_results": 1},
            max_retries=0,
            timeout=timeout_s,
            raise_on_status=False,
        )
    except Exception:
        return credentials  # unreachable: the search's own first MLflow call reports it
    if response.status_code == 401:
        if credentials is None:  # none of ours; MLflow also reads its own ~/.mlflow/credentials
            from mlflow.utils.credentials import read_mlflow_creds

            username = read_mlflow_creds().username
            if not username:
                raise UsageError(
                    f"the MLflow server at {tracking_uri} requires credentials (HTTP 401): {HOW_TO_SET}"
                )
            credentials = Credentials(username, "", "~/.mlflow/credentials")
        raise UsageError(
            f"the MLflow server at {tracking_uri} rejected user '{credentials.username}' (HTTP 401): "
            f"check the password in {credentials.source}"
        )
    if response.status_code == 403:
        raise UsageError(
            f"the MLflow server at {tracking_uri} denies user '{credentials.username if credentials else '?'}' "
            "access to experiments (HTTP 403): ask its admin for permission"
        )
    return credentials
