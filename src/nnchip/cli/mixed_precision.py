"""`nnchip mixed-precision RECIPE.yaml [--out DIR]`: model → (float training) → per-layer weight bits by an
integer program → quantize → PTQ → (QAT) → lower → export → verify → summary.json.

The recipe is a quantization recipe plus a `mixed_precision:` section (MixedPrecisionConfig fields:
candidates, sensitivity, budget, avg_bits, hutchinson_samples); `quant.weight` gives the weight quantizer
and its other fields, `quant.act` the activations. The record has `avg_bits`, `bits` (per layer) and
`w_bits: null`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nnchip.cli.common import add_out_argument, format_table, resolve_out, set_determinism, write_summary
from nnchip.core.errors import ConfigError
from nnchip.quant.mixed_precision import MixedPrecisionConfig, assign_bits
from nnchip.recipes import Recipe, read_recipe_yaml, recipe_from_dict

DEFAULT_OUT = "nnchip-out/mixed-precision"
HESSIAN_BATCHES = 2
HESSIAN_BATCH_SIZE = 64


def mixed_precision_recipe_from_dict(data: Any, *, base_dir: Path | None = None,
                                     source: str | None = None) -> tuple[Recipe, MixedPrecisionConfig]:
    if not isinstance(data, Mapping) or "mixed_precision" not in data:
        raise ConfigError("mixed_precision is required: a mapping of candidates, sensitivity, budget, avg_bits")
    rest = {k: v for k, v in data.items() if k != "mixed_precision"}
    return (recipe_from_dict(rest, base_dir=base_dir, source=source),
            MixedPrecisionConfig.from_dict(data["mixed_precision"] or {}))


def run_mixed_precision(recipe: Recipe, config: MixedPrecisionConfig, out_dir: Path, *,
                        log: Any = print) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from nnchip.cli.quantize import build_float_model, load_data, pretrain, qat, quantize_and_ptq, top1
    from nnchip.lower.demo_stage import lower_export_verify

    set_determinism(recipe.seed, threads=torch.get_num_threads())
    bundle = load_data(recipe.data)
    model = build_float_model(recipe.model, bundle)
    if recipe.model.checkpoint is None:
        if recipe.pretrain is None:
            print("nnchip mixed-precision: warning: model has no checkpoint and the recipe no `pretrain`: "
                  "quantizing untrained weights", file=sys.stderr)
        else:
            pretrain(model, recipe.pretrain, bundle)
    float_acc = top1(model, bundle.test)
    calib = bundle.calibration_batches()
    loader = DataLoader(bundle.train, batch_size=HESSIAN_BATCH_SIZE, shuffle=False)
    batches = [batch for _, batch in zip(range(HESSIAN_BATCHES), loader, strict=False)]
    quant, assignment = assign_bits(model, recipe.quant, config, calib_inputs=calib[0], batches=batches)
    qmodel = quantize_and_ptq(model, quant, recipe.ptq, calib)
    if recipe.qat is not None:
        qat(qmodel, recipe.qat, bundle, teacher=model)
    name = recipe.model.name or Path(str(recipe.model.checkpoint)).stem
    record: dict[str, Any] = {
        "row_id": f"{name}-mp{config.avg_bits:g}-a{recipe.quant.act.bits}", "model": name,
        "method": "mixed_precision" + ("+qat" if recipe.qat else ""), "w_bits": None, "a_bits": recipe.quant.act.bits,
        **assignment.to_dict(), "mixed_precision": config.to_dict(), "acc": top1(qmodel, bundle.test),
        "float_acc": float_acc, "n_test": len(bundle.test), "recipe": recipe.source,
    }
    test_x, test_y = bundle.test_tensors()
    record.update(lower_export_verify(qmodel, torch.cat(calib), test_x, test_y, out_dir / "export"))
    write_summary(out_dir, [record])
    log(format_table(["model", "bits per layer", "avg bits", "acc %", "Δ vs float", "int acc %", "bit_exact"],
                     [[name, " ".join(f"{b}" for b in assignment.bits.values()), round(assignment.avg_bits, 3),
                       100 * record["acc"], 100 * (record["acc"] - float_acc), 100 * record["int_acc"],
                       record["bit_exact"]]]))
    log(f"wrote {out_dir / 'summary.json'}")
    return record


def _run(args: argparse.Namespace) -> int:
    path = Path(args.recipe)
    data = read_recipe_yaml(path)
    recipe, config = mixed_precision_recipe_from_dict(data, base_dir=path.parent, source=str(path))
    out_dir = resolve_out(args, fallback=recipe.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    return 0 if run_mixed_precision(recipe, config, out_dir)["bit_exact"] else 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("mixed-precision", help="choose per-layer weight bits (ILP), quantize, export",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="recipe file (see docs/mixed-precision.md)")
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.set_defaults(func=_run)
