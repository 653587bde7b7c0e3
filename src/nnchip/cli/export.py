"""`nnchip export RECIPE.yaml --formats npy,bin,hex`: run a recipe, lower it to integers, export and verify.

`nnchip lower RECIPE.yaml` does the same with the .npy files only and prints the integer graph node by node.
"""

from __future__ import annotations

import argparse
from typing import Any

from nnchip.cli.common import add_out_argument, resolve_out
from nnchip.core.errors import ConfigError
from nnchip.export.writer import FORMATS

DEFAULT_OUT = "nnchip-out/export"


def _formats(text: str) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ConfigError(f"--formats: unknown format(s) {', '.join(sorted(unknown)) or '(none)'}; "
                          f"known: {', '.join(FORMATS)}")
    return formats


def _run(args: argparse.Namespace, formats: tuple[str, ...], show_graph: bool) -> int:
    from nnchip.cli.quantize import run_recipe
    from nnchip.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    out_dir = resolve_out(args, fallback=recipe.out)
    record = run_recipe(recipe, out_dir, export_formats=formats)
    if show_graph:
        import json

        manifest = json.loads((out_dir / "export" / "manifest.json").read_text())
        for node in manifest["nodes"]:
            out = manifest["tensors"][node["output"]]
            kind = f"{'i' if out['signed'] else 'u'}{out['bits']}"
            acc = node["attrs"].get("acc_bits", "")
            print(f"{node['name']:<32} {node['op']:<10} -> {kind:<4} acc {acc!s:<3} {node['attrs'].get('source', '')}")
    return 0 if record.get("bit_exact") else 1


def add_parser(subparsers: Any) -> None:
    export = subparsers.add_parser("export", help="run a recipe, lower to integers, export files + golden vectors")
    export.add_argument("recipe", metavar="RECIPE.yaml")
    export.add_argument("--formats", default="npy,bin,hex", help=f"comma-separated from {', '.join(FORMATS)}")
    add_out_argument(export, DEFAULT_OUT)
    export.set_defaults(func=lambda args: _run(args, _formats(args.formats), show_graph=False))
    lower = subparsers.add_parser("lower", help="run a recipe and print its integer graph (exports .npy files)")
    lower.add_argument("recipe", metavar="RECIPE.yaml")
    add_out_argument(lower, "nnchip-out/lower")
    lower.set_defaults(func=lambda args: _run(args, ("npy",), show_graph=True))
