"""The `nnchip` command: one sub-command per stage, registered explicitly in COMMAND_MODULES.

Each command module exposes `add_parser(subparsers) -> None`, which registers its sub-parser and sets
`func=callable(args) -> int` as a default. Errors derived from `NnchipError` (and a few standard ones a
user can cause: missing files, bad YAML) are printed as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from nnchip.core.errors import NnchipError

# Explicit list, no directory scanning: a command that fails to import is a bug, not a silent omission.
COMMAND_MODULES: tuple[str, ...] = (
    "nnchip.cli.demo",
    "nnchip.cli.quantize",
    "nnchip.cli.export",
    "nnchip.cli.verify",
    "nnchip.cli.vq",
    "nnchip.cli.dse",
    "nnchip.cli.prune",
    "nnchip.cli.mixed_precision",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnchip", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (NnchipError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        print(f"nnchip {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nnchip {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
