"""The real datasets the tests of the shipped search spaces need: ``../shared/datasets`` beside the repository.

    python3 tests/datasets_check.py [DATASETS_DIR]

exits 1 and names every missing or incomplete dataset folder (standard library only:
``.ci/run`` runs it before the install). ``tests/conftest.py`` runs the same check when
a test session starts: with ``CI`` set (``CI=true``, as ``.ci/run`` and CI services set it)
a missing dataset fails the session and no dataset test can skip; without ``CI`` the tests
that need a missing dataset skip, naming the folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Dataset folder -> what inside it the tests read.
REQUIRED = {
    "bccd": ("JPEGImages", "Annotations", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt"),
    "pbc8": ("all", "manifest.csv"),
    "all_leukemia": ("all", "manifest.csv"),
}
DEFAULT_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def in_ci() -> bool:
    """True when ``CI`` is set to a true value (``true``, ``1``, ``yes``, ``on``)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def dataset_problems(root: Path = DEFAULT_ROOT) -> dict[str, str]:
    """Dataset name -> what is wrong with ``root/name`` (missing, or missing some part); empty when all is there."""
    problems = {}
    for name, parts in REQUIRED.items():
        folder = root / name
        if not folder.is_dir():
            problems[name] = f"missing folder {folder}"
            continue
        absent = [part for part in parts if not (folder / part).exists()]
        if absent:
            problems[name] = f"incomplete folder {folder}: no {', '.join(absent)}"
    return problems


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else DEFAULT_ROOT
    problems = dataset_problems(root)
    for problem in problems.values():
        print(f"required dataset: {problem}", file=sys.stderr)
    if problems:
        print(
            f"the tests of the shipped search spaces need {', '.join(REQUIRED)} in {root} "
            "(a CI run without them must fail, not pass with skips)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
