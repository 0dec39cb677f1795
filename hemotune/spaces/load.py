"""The entry points: load a space for a search, or validate a file with each of its presets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hemotune.config import SearchSpace
from hemotune.errors import SpaceValidationError
from hemotune.spaces.files import find_space_file, read_space_file
from hemotune.spaces.overlays import BUILTIN_PRESETS, apply_preset, apply_sets, deep_merge
from hemotune.spaces.validate import NOT_A_MAPPING, validate_space


def _flag_overlay(
    data: str | None, num_samples: int | None, max_concurrent: int | None
) -> tuple[dict[str, Any], list[str]]:
    """The command-line flags as a document overlay and as ``key.path=value`` overrides to record."""
    overlay: dict[str, Any] = {}
    overrides: list[str] = []
    if data is not None:
        overlay["dataset"] = {"path": data}
        overrides.append(f"dataset.path={data}")
    budget: dict[str, Any] = {}
    if num_samples is not None:
        budget["num_samples"] = num_samples
        overrides.append(f"budget.num_samples={num_samples}")
    if max_concurrent is not None:
        budget["max_concurrent"] = max_concurrent
        overrides.append(f"budget.max_concurrent={max_concurrent}")
    if budget:
        overlay["budget"] = budget
    return overlay, overrides


def load_space(
    name_or_file: str,
    *,
    preset: str | None = None,
    sets: Sequence[str] = (),
    data: str | None = None,
    num_samples: int | None = None,
    max_concurrent: int | None = None,
    check_data: bool = True,
) -> SearchSpace:
    """Find, parse, overlay (preset, ``--set``, CLI flags) and validate a search space."""
    path = find_space_file(name_or_file)
    raw, digest = read_space_file(path)
    source = str(path)
    if not isinstance(raw, Mapping):
        raise SpaceValidationError(source, [NOT_A_MAPPING])
    if preset:
        raw = apply_preset(raw, preset, source)
    if sets:
        raw = apply_sets(raw, sets, source)
    overlay, flag_overrides = _flag_overlay(data, num_samples, max_concurrent)
    return validate_space(
        deep_merge(raw, overlay),
        source,
        source_hash=digest,
        check_data=check_data,
        preset=preset,
        overrides=[*sets, *flag_overrides],
    )


def validate_file(name_or_file: str, *, check_data: bool = False) -> list[str]:
    """Validate a file as written and with each of its presets; returns the variants checked."""
    path = find_space_file(name_or_file)
    raw, digest = read_space_file(path)
    source = str(path)
    validate_space(raw, source, source_hash=digest, check_data=check_data)
    checked = ["as written"]
    presets = raw.get("presets") if isinstance(raw, Mapping) else None
    for name in sorted(set(presets or {}) | set(BUILTIN_PRESETS)):
        validate_space(
            apply_preset(raw, name, source),
            f"{source} (preset {name})",
            source_hash=digest,
            check_data=check_data,
        )
        checked.append(f"preset {name}")
    return checked
