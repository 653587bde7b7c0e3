"""`nnchip prune RECIPE.yaml [--out DIR]`: model → (float training) → prune (+ fine-tune) → [quantize → PTQ →
(QAT) → lower → export with sparse formats → verify] → summary.json.

The recipe is a quantization recipe plus `prune:` (PruneConfig fields) and `finetune:` sections
(nnchip.prune.recipe). The record holds `structure`, `sparsity`, float / pruned accuracy, the achieved
parameter and MAC reductions, per-layer densities and, with `quant`, `acc` / `int_acc` / `bit_exact`.
Nested sparsity (`prune.levels`): the model is quantized (and calibrated) at the densest level — one weight
scale serves every level — then lowered and exported at level `prune.level` (`--level` overrides it) with the
"nested" format; `level_acc` holds the pruned float top-1 of every level
and, with `quant`, `level_int_acc` the top-1 of the numpy reader run at every level from the export files.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nnchip.cli.common import add_out_argument, format_table, resolve_out, set_determinism, write_summary
from nnchip.prune.recipe import PruneRecipe, load_prune_recipe

DEFAULT_OUT = "nnchip-out/prune"
EXPORT_FORMATS = ("npy", "bin", "hex", "sparse")


def run_prune_recipe(recipe: PruneRecipe, out_dir: Path, *, log: Any = print) -> dict[str, Any]:
    from nnchip.cli.quantize import build_float_model, load_data, pretrain, qat, quantize_and_ptq, top1
    from nnchip.core.nested_mask import set_sparsity_level
    from nnchip.prune import compression_report, finetune, prune, sparsity_report

    base = recipe.base
    set_determinism(base.seed, threads=torch.get_num_threads())
    timings: dict[str, float] = {}
    bundle = load_data(base.data)
    model = build_float_model(base.model, bundle)
    if base.model.checkpoint is None:
        if base.pretrain is None:
            print("nnchip prune: warning: model has no checkpoint and the recipe no `pretrain`: pruning untrained "
                  "weights", file=sys.stderr)
        else:
            t = time.perf_counter()
            pretrain(model, base.pretrain, bundle)
            timings["pretrain_s"] = time.perf_counter() - t
    float_acc = top1(model, bundle.test)
    calib = bundle.calibration_batches()
    example = calib[0][:1]
    inputs = torch.cat(calib) if recipe.prune.uses_calibration else example  # Taylor scores, hardware budgets
    t = time.perf_counter()
    if recipe.finetune is None:
        pruned = prune(model, recipe.prune, example_inputs=inputs)
    else:
        f = recipe.finetune
        pruned = finetune(copy.deepcopy(model), bundle.train, recipe.prune, epochs=f.epochs, lr=f.lr,
                          batch_size=f.batch_size, weight_decay=f.weight_decay, seed=base.seed,
                          example_inputs=inputs, max_steps=f.max_steps)
    timings["prune_s"] = time.perf_counter() - t
    level_acc = []
    for level in range(len(recipe.prune.levels)):  # nested: every level of the one model, then the chosen one
        level_acc.append(top1(set_sparsity_level(pruned, level), bundle.test))
    if recipe.prune.nested:
        set_sparsity_level(pruned, recipe.prune.level)
    pruned_acc = top1(pruned, bundle.test)
    name = base.model.name or Path(str(base.model.checkpoint)).stem
    record: dict[str, Any] = {
        "row_id": f"{name}-{recipe.prune.structure}", "model": name, "method": "prune",
        "structure": recipe.prune.structure, "sparsity": recipe.prune.target_sparsity,
        "prune": recipe.prune.to_dict(), "finetune": recipe.finetune.to_dict() if recipe.finetune else None,
        "float_acc": float_acc, "pruned_acc": pruned_acc, "acc": pruned_acc, "w_bits": None, "a_bits": None,
        "n_test": len(bundle.test), "recipe": base.source,
        "layer_density": {r.path: r.density for r in sparsity_report(pruned)},
        **compression_report(model, pruned, example),
    }
    if recipe.prune.nested:
        record.update(levels=list(recipe.prune.levels), level=recipe.prune.level, level_acc=level_acc)
    if recipe.prune.structure == "block":
        from nnchip.prune.budget import budget_report

        record["budget"] = budget_report(pruned, recipe.prune, example)
    if recipe.quantized:
        from nnchip.lower.demo_stage import lower_export_verify

        t = time.perf_counter()
        if recipe.prune.nested:  # one weight scale and one calibration for every level: the densest level's
            set_sparsity_level(pruned, 0)
        qmodel = quantize_and_ptq(pruned, base.quant, base.ptq, calib)
        if base.qat is not None:
            qat(qmodel, base.qat, bundle, teacher=pruned)
        if recipe.prune.nested:
            set_sparsity_level(qmodel, recipe.prune.level)
            set_sparsity_level(pruned, recipe.prune.level)
        timings["quantize_s"] = time.perf_counter() - t
        test_x, test_y = bundle.test_tensors()
        record.update(w_bits=base.quant.weight.bits, a_bits=base.quant.act.bits, acc=top1(qmodel, bundle.test),
                      row_id=f"{record['row_id']}-w{base.quant.weight.bits}a{base.quant.act.bits}")
        formats = (*EXPORT_FORMATS, "nested") if recipe.prune.nested else EXPORT_FORMATS
        record.update(lower_export_verify(qmodel, torch.cat(calib), test_x, test_y, out_dir / "export",
                                          formats=formats))
        if recipe.prune.nested:
            record["level_int_acc"] = _reader_level_accuracy(qmodel, Path(record["export_dir"]), test_x, test_y,
                                                             len(recipe.prune.levels))
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    write_summary(out_dir, [record])
    bits = f"W{record['w_bits']}A{record['a_bits']}" if record["w_bits"] else "float"
    log(format_table(["model", "structure", "sparsity", "bits", "acc %", "Δ vs float", "MACs kept %", "bit_exact"],
                     [[name, record["structure"], record["sparsity"], bits, 100 * record["acc"],
                       100 * (record["acc"] - float_acc), 100 * (1 - record["mac_reduction"]),
                       record.get("bit_exact")]]))
    log(f"wrote {out_dir / 'summary.json'}")
    return record


def _reader_level_accuracy(qmodel: Any, directory: Path, test_x: torch.Tensor, test_y: torch.Tensor,
                           levels: int) -> list[float]:
    """Top-1 of the numpy reader at every nested level, from the export files alone."""
    from nnchip.export.reader import load_export
    from nnchip.lower.demo_stage import integer_inputs

    exported = load_export(directory)
    x_int = integer_inputs(qmodel, exported.manifest["inputs"][0], test_x).numpy()
    output = exported.manifest["outputs"][0]
    labels = test_y.numpy()
    return [float((exported.run(x_int, level=level)[output].argmax(axis=-1) == labels).mean())
            for level in range(levels)]


def _run(args: argparse.Namespace) -> int:
    recipe = load_prune_recipe(args.recipe)
    if args.level is not None:
        recipe = dataclasses.replace(recipe, prune=dataclasses.replace(recipe.prune, level=args.level))
    out_dir = resolve_out(args, fallback=recipe.base.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    record = run_prune_recipe(recipe, out_dir)
    return 0 if record.get("bit_exact", True) else 1


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("prune", help="run a pruning recipe (YAML), optionally quantize and export",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="recipe file (see docs/pruning.md)")
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--level", type=int, default=None,
                        help="nested sparsity: the level to quantize, lower and export (overrides prune.level)")
    parser.set_defaults(func=_run)
