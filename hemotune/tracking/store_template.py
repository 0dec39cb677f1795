"""A new embedded SQLite store, copied from a pre-built empty one instead of created table by table.

MLflow creates a new SQLite store by building every table and stamping its schema
version (``Creating initial MLflow database tables...``): about 3.5 s on a 2-core
machine, paid by every search that starts in a new results folder (measured by
``benchmarks/overhead``). The result is the same empty database each time, so it is
built once per machine and MLflow version (``<cache>/mlflow-store/mlflow-<version>.db``)
and copied. MLflow then opens the copy as it opens any existing store: it checks the
schema version and would migrate an older one. The only machine-specific value in an
empty store, the ``Default`` experiment's artifact folder (``<cwd>/mlruns/0``, as MLflow
writes it), is set on the copy to what MLflow would have written here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TEMPLATE_FOLDER = "mlflow-store"


def template_path(cache_dir: Path) -> Path:
    """The empty store for the installed MLflow, built into ``cache_dir`` on first use."""
    import mlflow

    target = Path(cache_dir) / TEMPLATE_FOLDER / f"mlflow-{mlflow.__version__}.db"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", suffix=".db", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()  # MLflow creates the file itself
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{tmp}").search_experiments()  # creates every table
        os.replace(tmp, target)  # atomic: concurrent builders each put a complete store there
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def seed_sqlite_store(db: Path, cache_dir: Path) -> bool:
    """Put an empty, current-schema store at ``db`` if there is none; ``True`` if one was copied.

    Any failure leaves ``db`` absent (MLflow then creates it the slow way) and is logged.
    """
    db = Path(db)
    if db.exists():
        return False
    tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(template_path(cache_dir), tmp)
        with contextlib.closing(sqlite3.connect(tmp)) as con, con:
            con.execute(
                "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                (str(Path.cwd().resolve() / "mlruns" / "0"),),
            )
        os.link(tmp, db)  # fails if another process created db meanwhile: never overwrite a store
        return True
    except FileExistsError:
        return False
    except Exception as exc:
        log.warning("could not copy an empty MLflow store to %s (%s): MLflow creates it", db, exc)
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
