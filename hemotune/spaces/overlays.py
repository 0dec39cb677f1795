"""Overlays on a parsed search-space document: presets and ``--set key.path=value``.

Both work on the raw document before validation, so an overlaid value is checked
exactly like one written in the file.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from hemotune.errors import SpaceValidationError
from hemotune.spaces.files import parse_yaml

#: The keys a search-space document may hold (``--set`` may override any of them).
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "trainer",
    "dataset",
    "objective",
    "objectives",
    "fixed",
    "parameters",
    "budget",
    "resources",
    "seed",
    "points_to_evaluate",
    "search",
    "ablation",
    "presets",
)
#: The sections a preset may override: never the trainer, the objective or the name.
_PRESET_SECTIONS = ("dataset", "fixed", "parameters", "budget", "resources", "seed")
PRESET_KEYS = (*_PRESET_SECTIONS, "points_to_evaluate", "search")
#: Built-in presets; a file's ``presets.<name>`` is merged over these.
BUILTIN_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "budget": {
            "num_samples": 4,
            "max_concurrent": 2,
            "epochs": 2,
            "grace_period": 1,
            "reduction_factor": 2,
        }
    },
}


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``; mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _preset_overlay(raw: Mapping[str, Any], preset: str, source: str) -> Mapping[str, Any]:
    """The file's own overrides for ``preset`` (``{}`` for a built-in one it does not redefine)."""
    file_presets = raw.get("presets") or {}
    if not isinstance(file_presets, Mapping):
        raise SpaceValidationError(source, ["presets: must be a mapping of preset name -> overrides"])
    if preset not in file_presets and preset not in BUILTIN_PRESETS:
        known = sorted(set(file_presets) | set(BUILTIN_PRESETS))
        raise SpaceValidationError(source, [f"presets.{preset}: no such preset; known: {', '.join(known)}"])
    overlay = file_presets.get(preset) or {}
    if not isinstance(overlay, Mapping):
        raise SpaceValidationError(source, [f"presets.{preset}: must be a mapping"])
    return overlay


def apply_preset(raw: Mapping[str, Any], preset: str, source: str) -> dict[str, Any]:
    """``raw`` with preset ``preset`` (built-in defaults, then the file's own) applied."""
    overlay = _preset_overlay(raw, preset, source)
    bad = [key for key in overlay if key not in PRESET_KEYS]
    if bad:
        raise SpaceValidationError(
            source,
            [
                f"presets.{preset}.{key}: a preset may not set this; allowed: {', '.join(PRESET_KEYS)}"
                for key in bad
            ],
        )
    merged = deep_merge(raw, BUILTIN_PRESETS.get(preset, {}))
    return deep_merge(merged, overlay)


def _set_path(doc: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set ``doc[parts[0]]...[parts[-1]] = value``, creating (or replacing non-mapping) parents."""
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def apply_sets(raw: Mapping[str, Any], sets: Sequence[str], source: str) -> dict[str, Any]:
    """Apply ``--set key.path=value`` overrides (values parsed as YAML)."""
    out = copy.deepcopy(dict(raw))
    problems = []
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {item!r}: expected key.path=value, e.g. budget.num_samples=8")
            continue
        parts = key.strip().split(".")
        if parts[0] not in TOP_LEVEL_KEYS:
            problems.append(
                f"--set {key}: unknown top-level key {parts[0]!r}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
            )
            continue
        _set_path(out, parts, parse_yaml(text, f"--set {key}") if text.strip() else None)
    if problems:
        raise SpaceValidationError(source, problems)
    return out
