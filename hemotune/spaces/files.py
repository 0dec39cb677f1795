"""Finding and reading search-space files: the YAML loader and the ``search_spaces/`` folders."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from hemotune.errors import SpaceValidationError, UsageError

#: The repository's own ``search_spaces/`` folder (``hemotune/spaces/files.py`` -> repository root).
PACKAGE_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text, turning syntax errors into a ``SpaceValidationError`` with line and column."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpaceValidationError(source, [f"invalid YAML{where}: {problem}"]) from None


def space_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml``, first match wins.

    In order: each folder of ``$HEMOTUNE_SPACES_PATH``, ``./search_spaces`` and the
    repository's own ``search_spaces/``; a folder named twice is searched once.
    """
    dirs = [Path(p) for p in os.environ.get("HEMOTUNE_SPACES_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "search_spaces")
    dirs.append(PACKAGE_SPACES)
    unique: list[Path] = []
    for folder in dirs:
        if folder.resolve() not in [known.resolve() for known in unique]:
            unique.append(folder)
    return unique


def list_spaces() -> dict[str, Path]:
    """Every named space that can be found, name -> file."""
    found: dict[str, Path] = {}
    for folder in space_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found.setdefault(path.stem, path)
    return found


def find_space_file(name_or_file: str) -> Path:
    """A search-space file from a path or a name under ``search_spaces/``."""
    candidate = Path(name_or_file).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_file:
        raise UsageError(f"search-space file not found: {name_or_file}")
    spaces = list_spaces()
    if name_or_file in spaces:
        return spaces[name_or_file].resolve()
    known = ", ".join(sorted(spaces)) or "(none found)"
    raise UsageError(f"no search space named {name_or_file!r}; known: {known}")


def read_space_file(path: Path) -> tuple[Any, str]:
    """The parsed document of ``path`` and the sha256 of its bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read search-space file {path}: {exc.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    return parse_yaml(text, str(path)), hashlib.sha256(data).hexdigest()
