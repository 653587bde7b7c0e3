"""`nnchip vq RECIPE.yaml [--out DIR]`: vector-quantize a model into LUT layers, train it, lower, export, verify.

A VQ recipe is a quantization recipe (docs/recipes.md: model, data, quant, ptq, pretrain, qat, out, seed) plus
    vq:        VQConfig fields (v, k, metric, layers, include, exclude, table_bits, ...)
    vq_train:  VQTrainConfig fields (recon_epochs, joint_epochs, final_epochs, learning rates, ...)
Steps: float model (checkpoint or `pretrain`) → `vq` (k-means) → `train_vq` (stages 2–5, the float model as
teacher) → `quantize` + PTQ of every other tensor (`quant`, `ptq`; optional `qat`) → `snap_codebooks` → lower,
export (`--formats`) to DIR/export and verify with the numpy reader. Writes DIR/summary.json and DIR/qmodel.safetensors.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from nnchip.cli.common import add_out_argument, format_table, resolve_out, set_determinism, write_summary
from nnchip.core.errors import ConfigError
from nnchip.recipes import read_recipe_yaml
from nnchip.vq import VQConfig, VQTrainConfig, lut_layers, snap_codebooks, train_vq, vq

DEFAULT_OUT = "nnchip-out/vq"
VQ_KEYS = ("vq", "vq_train")


def load_vq_recipe(path: str | Path) -> tuple[Any, VQConfig, VQTrainConfig]:
    """(Recipe, VQConfig, VQTrainConfig) from a YAML file; relative paths are relative to the file."""
    from nnchip.recipes import recipe_from_dict

    path = Path(path)
    data = read_recipe_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a VQ recipe must be a mapping with a `vq` section")
    if "vq" not in data:
        raise ConfigError(f"{path}: the recipe has no `vq` section (use `nnchip quantize` for scalar quantization)")
    vq_config = VQConfig.from_dict(data.pop("vq") or {})
    train_config = VQTrainConfig.from_dict(data.pop("vq_train", None) or {})
    return recipe_from_dict(data, base_dir=path.parent, source=str(path)), vq_config, train_config


def run_vq_recipe(recipe: Any, vq_config: VQConfig, train_config: VQTrainConfig, out_dir: Path, *,
                  formats: tuple[str, ...] = ("npy", "bin", "hex"), log: Any = print) -> dict[str, Any]:
    from nnchip.cli.quantize import build_float_model, load_data, pretrain, qat, quantize_and_ptq, save_checkpoint, top1
    from nnchip.lower.demo_stage import lower_export_verify

    set_determinism(recipe.seed, threads=torch.get_num_threads())
    timings: dict[str, float] = {}
    bundle = load_data(recipe.data)
    model = build_float_model(recipe.model, bundle)
    if recipe.model.checkpoint is None and recipe.pretrain is not None:
        t = time.perf_counter()
        pretrain(model, recipe.pretrain, bundle)
        timings["pretrain_s"] = time.perf_counter() - t
    model.eval()
    float_acc = top1(model, bundle.test)
    calib = bundle.calibration_batches()
    t = time.perf_counter()
    lut_model = vq(model, vq_config, example_inputs=calib[0][:2], calibration=calib)
    timings["kmeans_s"] = time.perf_counter() - t
    kmeans_acc = top1(lut_model, bundle.test)
    result = train_vq(lut_model, bundle.train, train_config, teacher=model)
    timings.update({f"{stage}_s": seconds for stage, seconds in result.seconds.items()})
    vq_acc = top1(lut_model, bundle.test)
    t = time.perf_counter()
    qmodel = quantize_and_ptq(lut_model, recipe.quant, recipe.ptq, calib)
    timings["ptq_s"] = time.perf_counter() - t
    if recipe.qat is not None:
        t = time.perf_counter()
        qat(qmodel, recipe.qat, bundle, teacher=model)
        timings["qat_s"] = time.perf_counter() - t
    snap_codebooks(qmodel)
    acc = top1(qmodel, bundle.test)
    name = recipe.model.name or Path(str(recipe.model.checkpoint)).stem
    record: dict[str, Any] = {
        "row_id": f"{name}-vq-v{vq_config.v}k{vq_config.k}-{vq_config.metric}", "model": name, "method": "vq",
        "vq_v": vq_config.v, "vq_k": vq_config.k, "metric": vq_config.metric, "table_bits": vq_config.table_bits,
        "lut_layers": [path for path, _ in lut_layers(lut_model)],
        "w_bits": recipe.quant.weight.bits, "a_bits": recipe.quant.act.bits,
        "float_acc": float_acc, "kmeans_acc": kmeans_acc, "vq_acc": vq_acc, "acc": acc, "n_test": len(bundle.test),
        "vq": vq_config.to_dict(), "vq_train": train_config.to_dict(), "recipe": recipe.source,
    }
    test_x, test_y = bundle.test_tensors()
    record.update(lower_export_verify(qmodel, torch.cat(calib), test_x, test_y, out_dir / "export", formats=formats))
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    save_checkpoint(out_dir / "qmodel.safetensors", qmodel, {"model": recipe.model.name, "vq": vq_config.to_dict()})
    write_summary(out_dir, [record])
    log(format_table(["model", "LUT layers", "v", "K", "metric", "float %", "k-means %", "LUT %", "quant %",
                      "int %", "bit_exact"],
                     [[name, len(record["lut_layers"]), vq_config.v, vq_config.k, vq_config.metric, 100 * float_acc,
                       100 * kmeans_acc, 100 * vq_acc, 100 * acc, 100 * record["int_acc"], record["bit_exact"]]]))
    log(f"wrote {out_dir / 'summary.json'} and {record['export_dir']}")
    return record


def _run(args: argparse.Namespace) -> int:
    recipe, vq_config, train_config = load_vq_recipe(args.recipe)
    out_dir = resolve_out(args, fallback=recipe.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    run_vq_recipe(recipe, vq_config, train_config, out_dir, formats=formats)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("vq", help="vector-quantize a model into LUT layers (YAML recipe)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="VQ recipe (recipes/vq/, docs/vq.md)")
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--formats", default="npy,bin,hex", help="export formats (default npy,bin,hex)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.set_defaults(func=_run)
