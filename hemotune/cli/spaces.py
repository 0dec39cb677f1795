"""``hemotune spaces list|show|validate`` and ``hemotune trainers``: no Ray, no MLflow."""

from __future__ import annotations

import argparse
from typing import Any

from hemotune.cli import common
from hemotune.cli.common import EXIT_OK
from hemotune.errors import UsageError


def add_parser(sub: Any) -> None:
    """``hemotune spaces list|show|validate`` and ``hemotune trainers [NAME]``."""
    spaces = sub.add_parser("spaces", help="list, show and validate search spaces")
    spaces_sub = spaces.add_subparsers(dest="spaces_command", metavar="ACTION")
    spaces_sub.add_parser("list", help="list the search spaces that can be found")
    show = spaces_sub.add_parser("show", help="show a space: file, distributions and budget")
    show.add_argument("name", metavar="NAME_OR_FILE")
    show.add_argument("--preset", help="show it with a preset applied")
    validate = spaces_sub.add_parser("validate", help="validate a space file (and each of its presets)")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--data", help="also check that this dataset path exists")
    trainers = sub.add_parser("trainers", help="list trainers and the parameters they accept")
    trainers.add_argument("name", nargs="?", help="show one trainer's parameters")


def cmd_spaces(args: argparse.Namespace) -> int:
    """``hemotune spaces``: list, show or validate search spaces (no Ray, no MLflow)."""
    from hemotune import spaces

    console = common.console()
    if args.spaces_command == "list":
        found = spaces.list_spaces()
        if not found:
            console.print(
                "no search spaces found (looked in: " + ", ".join(map(str, spaces.space_dirs())) + ")"
            )
        for name, path in found.items():
            raw, _ = spaces.read_space_file(path)
            text = " ".join(str(raw.get("description") or "").split()) if isinstance(raw, dict) else ""
            summary = text if len(text) <= 150 else text[:147] + "..."
            trainer = raw.get("trainer", "?") if isinstance(raw, dict) else "?"
            console.print(f"[bold]{name}[/] ({trainer}) {path}\n    {summary}")
        return EXIT_OK
    if args.spaces_command == "show":
        space = spaces.load_space(args.name, preset=args.preset, check_data=False)
        import yaml

        console.print(f"# {space.source}" + (f" (preset {space.preset})" if space.preset else ""))
        print(yaml.safe_dump(spaces.space_document(space, keep_preset=True), sort_keys=False), end="")
        return EXIT_OK
    if args.spaces_command == "validate":
        checked = spaces.validate_file(args.file, check_data=False)
        if args.data:
            spaces.load_space(args.file, data=args.data)
        console.print(f"[green]valid[/]: {args.file} ({', '.join(checked)})")
        return EXIT_OK
    raise UsageError("hemotune spaces needs an action: list, show NAME or validate FILE")


def cmd_trainers(args: argparse.Namespace) -> int:
    """``hemotune trainers [NAME]``: the registered trainers and their parameters."""
    from hemotune.trainers import available_trainers, get_trainer

    console = common.console()
    names = [args.name] if args.name else available_trainers()
    for name in names:
        trainer = get_trainer(name)
        console.print(f"[bold]{name}[/] ({trainer.task}): {trainer.description}")
        if args.name:
            for pname, spec in sorted(trainer.params.items()):
                extra = f" choices: {', '.join(map(str, spec.choices))}" if spec.choices else ""
                searchable = "" if spec.searchable else " (fixed only)"
                console.print(f"  {pname} ({spec.kind}){searchable}: {spec.help}{extra}")
            if trainer.dataset_options:
                console.print(f"  dataset options (formats: {', '.join(trainer.dataset_formats)}):")
                for oname, spec in sorted(trainer.dataset_options.items()):
                    extra = f" choices: {', '.join(map(str, spec.choices))}" if spec.choices else ""
                    console.print(f"    {oname} ({spec.kind}): {spec.help}{extra}")
            console.print(f"  metrics: {', '.join(trainer.metrics)}")
            if trainer.metric_prefixes:
                console.print(
                    f"  per-class metrics: {', '.join(p + '<class>' for p in trainer.metric_prefixes)}"
                )
    return EXIT_OK
