"""The package keeps the layout docs/architecture.md draws: small modules, one-way imports, one owner.

Every import statement in ``hemotune/`` is read with ``ast`` (imports inside
functions count too: a lazy import is still a dependency), so these checks hold
for code paths no other test happens to run.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hemotune"
MAX_LINES = 400
REPEAT_LINES = 6

#: Rank of each top-level module or package: an import may only go to a lower rank (or stay
#: inside its own top-level package). docs/architecture.md draws the same picture.
RANKS = {
    "errors": 0,
    "_version": 0,
    "metrics": 0,
    "config": 1,
    "offline": 2,
    "storage": 3,
    "data": 4,
    "trainers": 5,
    "results": 5,
    "evidence": 5,
    "testing": 6,
    "spaces": 6,
    "tracking": 6,
    "reports": 7,
    "tuning": 8,
    "cli": 9,
    "__init__": 9,
    "__main__": 10,
}
#: Third-party packages only one part of hemotune may import.
OWNERS = {"mlflow": {"tracking"}, "ray": {"tuning"}}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted module)`` of every import in ``path``, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(("hemotune", *path.relative_to(PACKAGE).with_suffix("").parts))
    # the package a relative import is relative to: the module's own for __init__.py, else its parent
    package = package.removesuffix(".__init__") if path.name == "__init__.py" else package.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base == "hemotune":  # `from hemotune import x`: x is the module imported
                found += [(node.lineno, f"hemotune.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def test_every_top_level_module_has_a_rank() -> None:
    tops = {_top(p) for p in _modules()}
    assert tops <= set(RANKS), f"give these a rank in RANKS (and docs/architecture.md): {tops - set(RANKS)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by concern"


def test_imports_only_go_down() -> None:
    problems = []
    for path in _modules():
        source = _top(path)
        if source not in RANKS:
            continue  # test_every_top_level_module_has_a_rank names it
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] == "hemotune":
                if len(parts) == 1 or parts[1] not in RANKS:
                    problems.append(f"{path.relative_to(PACKAGE)}:{line}: {module} (the package root)")
                    continue
                target = parts[1]
                if target != source and RANKS[target] >= RANKS[source]:
                    problems.append(f"{path.relative_to(PACKAGE)}:{line}: {source} imports {module}")
            elif parts[0] in OWNERS and source not in OWNERS[parts[0]]:
                problems.append(
                    f"{path.relative_to(PACKAGE)}:{line}: only {sorted(OWNERS[parts[0]])} may import {module}"
                )
    assert not problems, "\n".join(problems)


_SKIP = re.compile(r"^(#.*|import .*|from .* import .*|[\[\](){},:]*|\"\"\".*|'''.*|\.\.\.)$")


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines that carry code: stripped, without blanks, comments, imports and lone punctuation."""
    out = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = " ".join(raw.split())
        if line and not _SKIP.match(line):
            out.append((number, line))
    return out


def test_no_block_of_six_lines_repeated() -> None:
    seen: dict[str, tuple[Path, int]] = {}
    repeats: defaultdict[str, list[str]] = defaultdict(list)
    for path in _modules():
        lines = _code_lines(path)
        for i in range(len(lines) - REPEAT_LINES + 1):
            window = lines[i : i + REPEAT_LINES]
            digest = hashlib.sha1("\n".join(text for _, text in window).encode()).hexdigest()
            where = f"{path.relative_to(PACKAGE)}:{window[0][0]}"
            if digest in seen:
                first_path, first_line = seen[digest]
                if first_path != path or abs(first_line - window[0][0]) >= REPEAT_LINES:
                    repeats[f"{first_path.relative_to(PACKAGE)}:{first_line}"].append(where)
            else:
                seen[digest] = (path, window[0][0])
    assert not repeats, "the same six code lines stand in two places:\n" + "\n".join(
        f"  {first} ~ {', '.join(others)}" for first, others in repeats.items()
    )
