"""THE one place a search-space file becomes validated data and Optuna distributions.

A search-space file is YAML::

    name: bcd_loss_weights
    trainer: yolo_detection
    dataset: {path: data/bccd, format: voc}
    objective: {metric: val/mAP50-95, mode: max}
    fixed: {model: yolo11n.yaml, imgsz: 416, batch: 16}
    parameters:
      box: {type: float, low: 2.5, high: 22.5, log: true}
      optimizer: {type: categorical, choices: [SGD, AdamW]}
    budget: {num_samples: 24, max_concurrent: 2, epochs: 120, grace_period: 10, reduction_factor: 3}
    resources: {cpu: 2, gpu: 0.5}
    seed: 0
    points_to_evaluate: [{box: 7.5, optimizer: SGD}]
    presets: {smoke: {budget: {num_samples: 4, epochs: 2}, fixed: {imgsz: 96}}}

Everything is checked against the trainer's declared parameters before Ray
starts; every problem is reported at once, each naming the file and the key.
No heavy imports here: validating a space must take well under a second.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from hemotune.config import Budget, DatasetConfig, Distribution, Objective, Resources, SearchSpace
from hemotune.errors import SpaceValidationError, UsageError

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "trainer",
    "dataset",
    "objective",
    "fixed",
    "parameters",
    "budget",
    "resources",
    "seed",
    "points_to_evaluate",
    "presets",
)
PRESET_KEYS = ("dataset", "fixed", "parameters", "budget", "resources", "seed", "points_to_evaluate")
BUDGET_KEYS = (
    "num_samples",
    "max_concurrent",
    "epochs",
    "grace_period",
    "reduction_factor",
    "max_failures",
    "time_budget_s",
)
#: Parameters hemotune fills in itself; a space sets them elsewhere.
RESERVED_PARAMS = {
    "data": "set the dataset with dataset.path (or --data)",
    "epochs": "set the number of epochs with budget.epochs",
    "seed": "set the seed with the top-level key seed",
}
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
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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


# ----------------------------------------------------------------------------- finding files


def space_dirs() -> list[Path]:
    """Folders searched for ``NAME.yaml``, first match wins."""
    dirs = [Path(p) for p in os.environ.get("HEMOTUNE_SPACES_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "search_spaces")
    dirs.append(Path(__file__).resolve().parent.parent / "search_spaces")
    unique: list[Path] = []
    for d in dirs:
        if d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_spaces() -> dict[str, Path]:
    """Every named space that can be found, name -> file."""
    found: dict[str, Path] = {}
    for d in space_dirs():
        if d.is_dir():
            for f in sorted(d.glob("*.yaml")):
                found.setdefault(f.stem, f)
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


# ----------------------------------------------------------------------------- overlays


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``overlay`` merged into a copy of ``base``; mappings merge, everything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_preset(raw: Mapping[str, Any], preset: str, source: str) -> dict[str, Any]:
    """``raw`` with preset ``preset`` (built-in defaults, then the file's own) applied."""
    file_presets = raw.get("presets") or {}
    if not isinstance(file_presets, Mapping):
        raise SpaceValidationError(source, ["presets: must be a mapping of preset name -> overrides"])
    if preset not in file_presets and preset not in BUILTIN_PRESETS:
        known = sorted(set(file_presets) | set(BUILTIN_PRESETS))
        raise SpaceValidationError(source, [f"presets.{preset}: no such preset; known: {', '.join(known)}"])
    overlay = file_presets.get(preset) or {}
    if not isinstance(overlay, Mapping):
        raise SpaceValidationError(source, [f"presets.{preset}: must be a mapping"])
    bad = [k for k in overlay if k not in PRESET_KEYS]
    if bad:
        raise SpaceValidationError(
            source,
            [
                f"presets.{preset}.{k}: a preset may not set this; allowed: {', '.join(PRESET_KEYS)}"
                for k in bad
            ],
        )
    merged = deep_merge(raw, BUILTIN_PRESETS.get(preset, {}))
    return deep_merge(merged, overlay)


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
        node: dict[str, Any] = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = parse_yaml(text, f"--set {key}") if text.strip() else None
    if problems:
        raise SpaceValidationError(source, problems)
    return out


# ----------------------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Checker:
    """Collects every problem of one file instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.add(key, f"must be a mapping, got {type(value).__name__}")
            return {}
        return value

    def number(
        self,
        section: Mapping[str, Any],
        key: str,
        path: str,
        default: Any,
        *,
        integer: bool = False,
        minimum: float | None = None,
        exclusive: bool = False,
    ) -> Any:
        value = section.get(key, default)
        if value is None:
            return default
        if integer and (not isinstance(value, int) or isinstance(value, bool)):
            self.add(f"{path}.{key}", f"must be an integer, got {value!r}")
            return default
        if not _is_number(value):
            self.add(f"{path}.{key}", f"must be a number, got {value!r}")
            return default
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.add(f"{path}.{key}", f"must be {'>' if exclusive else '>='} {minimum}, got {value!r}")
            return default
        return value

    def raise_if_any(self) -> None:
        if self.problems:
            raise SpaceValidationError(self.source, self.problems)


def _check_distribution(check: _Checker, name: str, spec: Any, trainer_param: Any) -> Distribution | None:
    key = f"parameters.{name}"
    if not isinstance(spec, Mapping):
        check.add(
            key,
            "must be a mapping like {type: float, low: 0.1, high: 1.0} or {type: categorical, choices: [...]}",
        )
        return None
    kind = spec.get("type")
    allowed_keys = {
        "float": {"type", "low", "high", "log", "step"},
        "int": {"type", "low", "high", "log", "step"},
        "categorical": {"type", "choices"},
    }
    if kind not in allowed_keys:
        check.add(f"{key}.type", f"must be one of float, int, categorical; got {kind!r}")
        return None
    for extra in sorted(set(spec) - allowed_keys[kind]):
        check.add(
            f"{key}.{extra}",
            f"not a key of a {kind} parameter; allowed: {', '.join(sorted(allowed_keys[kind]))}",
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            check.add(f"{key}.choices", "must be a non-empty list")
            return None
        if len({repr(c) for c in choices}) != len(choices):
            check.add(f"{key}.choices", f"has duplicates: {choices}")
        for i, choice in enumerate(choices):
            for problem in trainer_param.problems(choice):
                check.add(f"{key}.choices[{i}]", problem)
        return Distribution(name=name, type="categorical", choices=tuple(choices))
    if trainer_param.kind not in ("float", "int"):
        check.add(
            f"{key}.type", f"{name} takes {trainer_param.kind} values: use type: categorical with choices"
        )
        return None
    if kind == "float" and trainer_param.kind == "int":
        check.add(f"{key}.type", f"{name} is an integer parameter: use type: int")
        return None
    low, high = spec.get("low"), spec.get("high")
    log, step = spec.get("log", False), spec.get("step")
    ok = True
    for bound_key, bound in (("low", low), ("high", high)):
        if bound is None:
            check.add(f"{key}.{bound_key}", "is required")
            ok = False
        elif not _is_number(bound) or (kind == "int" and not isinstance(bound, int)):
            check.add(
                f"{key}.{bound_key}",
                f"must be {'an integer' if kind == 'int' else 'a number'}, got {bound!r}",
            )
            ok = False
    if not isinstance(log, bool):
        check.add(f"{key}.log", f"must be true or false, got {log!r}")
        ok = False
    if step is not None and (not _is_number(step) or step <= 0):
        check.add(f"{key}.step", f"must be a positive number, got {step!r}")
        ok = False
    if not ok or low is None or high is None:
        return None
    if low > high:
        check.add(f"{key}.low", f"low ({low}) is greater than high ({high})")
        ok = False
    if log and low <= 0:
        check.add(f"{key}.low", f"a log-scaled range needs low > 0, got {low}")
        ok = False
    if log and step is not None and kind == "float":
        check.add(f"{key}.step", "Optuna does not allow step together with log for float parameters")
        ok = False
    for bound_key, bound in (("low", low), ("high", high)):
        for problem in trainer_param.problems(bound):
            check.add(f"{key}.{bound_key}", problem)
            ok = False
    if not ok:
        return None
    return Distribution(name=name, type=kind, low=low, high=high, log=log, step=step)


def validate_space(
    raw: Any,
    source: str,
    *,
    source_hash: str = "",
    check_data: bool = True,
    preset: str | None = None,
    overrides: Sequence[str] = (),
) -> SearchSpace:
    """Validate a parsed search-space document and build a ``SearchSpace``."""
    from hemotune.trainers import available_trainers, get_trainer

    check = _Checker(source)
    if not isinstance(raw, Mapping):
        raise SpaceValidationError(source, ["the file must hold a YAML mapping (key: value lines)"])
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            check.add(str(key), f"unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}")

    name = raw.get("name") or Path(source).stem
    if not isinstance(name, str) or not _NAME_RE.match(name):
        check.add("name", f"must be letters, digits, '_', '.', '-', got {name!r}")
        name = "search"
    description = raw.get("description") or ""

    trainer_name = raw.get("trainer")
    if trainer_name not in available_trainers():
        check.add(
            "trainer", f"unknown trainer {trainer_name!r}; available: {', '.join(available_trainers())}"
        )
        check.raise_if_any()
    trainer = get_trainer(cast(str, trainer_name))
    searchable = sorted(k for k, p in trainer.params.items() if p.searchable)

    # objective
    objective_raw = check.mapping(raw.get("objective"), "objective")
    metric, mode = objective_raw.get("metric"), objective_raw.get("mode", "max")
    if not isinstance(metric, str) or not trainer.is_known_metric(metric):
        check.add(
            "objective.metric",
            f"{metric!r} is not a metric trainer {trainer.name!r} reports; allowed: {', '.join(trainer.metrics)}"
            + (
                f", or a per-class metric starting with {', '.join(trainer.metric_prefixes)}"
                if trainer.metric_prefixes
                else ""
            ),
        )
    if mode not in ("max", "min"):
        check.add("objective.mode", f"must be max or min, got {mode!r}")
    for extra in sorted(set(objective_raw) - {"metric", "mode"}):
        check.add(f"objective.{extra}", "unknown key; allowed: metric, mode")

    # dataset
    dataset_raw = check.mapping(raw.get("dataset"), "dataset")
    data_path = dataset_raw.get("path")
    if not data_path or not isinstance(data_path, str):
        check.add("dataset.path", "is required: the dataset folder (or s3://bucket/prefix); pass --data PATH")
    elif check_data and not data_path.startswith("s3://") and not Path(data_path).expanduser().exists():
        check.add("dataset.path", f"{data_path} does not exist (pass --data PATH to point at the dataset)")
    data_format = dataset_raw.get("format", "auto")
    if data_format not in trainer.dataset_formats:
        check.add(
            "dataset.format", f"{data_format!r} is not allowed; allowed: {', '.join(trainer.dataset_formats)}"
        )
    options: dict[str, Any] = {}
    for key, value in dataset_raw.items():
        if key in ("path", "format"):
            continue
        spec = trainer.dataset_options.get(key)
        if spec is None:
            allowed = ", ".join(["path", "format", *sorted(trainer.dataset_options)])
            check.add(
                f"dataset.{key}", f"unknown dataset option for trainer {trainer.name!r}; allowed: {allowed}"
            )
            continue
        for problem in spec.problems(value) if value is not None else []:
            check.add(f"dataset.{key}", problem)
        options[key] = value
    if isinstance(data_path, str) and not data_path.startswith("s3://"):
        data_path = str(Path(data_path).expanduser().resolve())

    # fixed
    fixed = dict(check.mapping(raw.get("fixed"), "fixed"))
    for key, value in fixed.items():
        if key in RESERVED_PARAMS:
            check.add(f"fixed.{key}", RESERVED_PARAMS[key])
        elif key not in trainer.params:
            check.add(
                f"fixed.{key}",
                f"unknown parameter for trainer {trainer.name!r}; allowed: {', '.join(sorted(trainer.params))}",
            )
        else:
            for problem in trainer.params[key].problems(value):
                check.add(f"fixed.{key}", problem)

    # parameters
    parameters: list[Distribution] = []
    for pname, spec in check.mapping(raw.get("parameters"), "parameters").items():
        if pname in RESERVED_PARAMS:
            check.add(f"parameters.{pname}", RESERVED_PARAMS[pname])
            continue
        if pname not in trainer.params or not trainer.params[pname].searchable:
            check.add(
                f"parameters.{pname}",
                f"unknown parameter for trainer {trainer.name!r}; searchable: {', '.join(searchable)}",
            )
            continue
        if pname in fixed:
            check.add(f"parameters.{pname}", "is also under fixed: a parameter is either fixed or searched")
            continue
        dist = _check_distribution(check, pname, spec, trainer.params[pname])
        if dist is not None:
            parameters.append(dist)
    for problem in trainer.validate(fixed, [p.name for p in parameters]):
        check.add("fixed", problem)

    # budget
    budget_raw = check.mapping(raw.get("budget"), "budget")
    for extra in sorted(set(budget_raw) - set(BUDGET_KEYS)):
        check.add(f"budget.{extra}", f"unknown key; allowed: {', '.join(BUDGET_KEYS)}")
    epochs = check.number(budget_raw, "epochs", "budget", 10, integer=True, minimum=1)
    grace = check.number(budget_raw, "grace_period", "budget", 1, integer=True, minimum=1)
    if isinstance(grace, int) and isinstance(epochs, int) and grace > epochs:
        check.add("budget.grace_period", f"({grace}) must not exceed budget.epochs ({epochs})")
    budget = Budget(
        num_samples=check.number(budget_raw, "num_samples", "budget", 8, integer=True, minimum=1),
        max_concurrent=check.number(budget_raw, "max_concurrent", "budget", 1, integer=True, minimum=1),
        epochs=epochs,
        grace_period=grace,
        reduction_factor=check.number(budget_raw, "reduction_factor", "budget", 3, minimum=1, exclusive=True),
        max_failures=check.number(budget_raw, "max_failures", "budget", 1, integer=True, minimum=0),
        time_budget_s=check.number(budget_raw, "time_budget_s", "budget", None, minimum=0, exclusive=True),
    )

    # resources
    resources_raw = check.mapping(raw.get("resources"), "resources")
    for extra in sorted(set(resources_raw) - {"cpu", "gpu"}):
        check.add(f"resources.{extra}", "unknown key; allowed: cpu, gpu")
    gpu = check.number(resources_raw, "gpu", "resources", 0, minimum=0)
    if _is_number(gpu) and gpu > 1 and gpu != int(gpu):
        check.add("resources.gpu", f"a fraction of a GPU must be <= 1; above 1 use whole GPUs, got {gpu}")
    resources = Resources(
        cpu=check.number(resources_raw, "cpu", "resources", 1, minimum=0, exclusive=True), gpu=gpu
    )

    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        check.add("seed", f"must be an integer, got {seed!r}")
        seed = 0

    # known points
    points_raw = raw.get("points_to_evaluate") or []
    points: list[Mapping[str, Any]] = []
    by_name = {p.name: p for p in parameters}
    declared = set(raw["parameters"]) if isinstance(raw.get("parameters"), Mapping) else set()
    if not isinstance(points_raw, list):
        check.add("points_to_evaluate", "must be a list of mappings of parameter -> value")
        points_raw = []
    for i, point in enumerate(points_raw):
        if not isinstance(point, Mapping):
            check.add(f"points_to_evaluate[{i}]", "must be a mapping of parameter -> value")
            continue
        for key, value in point.items():
            if key in declared and key not in by_name:
                continue  # its distribution is invalid: already reported
            if key not in by_name:
                check.add(
                    f"points_to_evaluate[{i}].{key}",
                    f"not a searched parameter; searched: {', '.join(by_name)}",
                )
            elif not by_name[key].contains(value):
                check.add(
                    f"points_to_evaluate[{i}].{key}",
                    f"{value!r} is outside its distribution {by_name[key].as_dict()}",
                )
        points.append(dict(point))

    presets = raw.get("presets") or {}
    if not isinstance(presets, Mapping):
        check.add("presets", "must be a mapping of preset name -> overrides")

    check.raise_if_any()
    return SearchSpace(
        name=name,
        description=str(description).strip(),
        trainer=trainer.name,
        source=source,
        source_hash=source_hash,
        dataset=DatasetConfig(path=cast(str, data_path), format=data_format, options=options),
        objective=Objective(metric=cast(str, metric), mode=mode),
        fixed=fixed,
        parameters=tuple(parameters),
        budget=budget,
        resources=resources,
        seed=seed,
        points_to_evaluate=tuple(points),
        preset=preset,
        overrides=tuple(overrides),
    )


# ----------------------------------------------------------------------------- public entry points


def read_space_file(path: Path) -> tuple[Any, str]:
    """The parsed document of ``path`` and the sha256 of its bytes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read search-space file {path}: {exc.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    return parse_yaml(text, str(path)), hashlib.sha256(data).hexdigest()


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
        raise SpaceValidationError(source, ["the file must hold a YAML mapping (key: value lines)"])
    if preset:
        raw = apply_preset(raw, preset, source)
    if sets:
        raw = apply_sets(raw, sets, source)
    overrides = list(sets)
    cli: dict[str, Any] = {}
    if data is not None:
        cli["dataset"] = {"path": data}
        overrides.append(f"dataset.path={data}")
    budget: dict[str, Any] = {}
    if num_samples is not None:
        budget["num_samples"] = num_samples
        overrides.append(f"budget.num_samples={num_samples}")
    if max_concurrent is not None:
        budget["max_concurrent"] = max_concurrent
        overrides.append(f"budget.max_concurrent={max_concurrent}")
    if budget:
        cli["budget"] = budget
    raw = deep_merge(raw, cli)
    return validate_space(
        raw, source, source_hash=digest, check_data=check_data, preset=preset, overrides=overrides
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
