"""`nnchip demo [--out DIR]`: the whole toolkit on the embedded digits, as a list of registered stages.

Each stage is a function `(ctx: DemoContext) -> None` registered with `@register_demo_stage(name, order=,
budget_s=)`; stages run in `order`. A later issue adds its own stage in its own module (listed in
OPTIONAL_STAGE_MODULES, imported explicitly) without editing anyone else's:

    order  stage                 adds
    0      data                  ctx.data (digits split), calibration and test tensors
    10     train_float           ctx.float_models / ctx.float_acc: cnn_tiny and vit_tiny
    20     quantize              rows W8A8 PTQ, W4A4 PTQ, W4A4 PTQ→QAT per model (ctx.qmodels, ctx.records)
    30–70  (pruning, VQ, ...)    more rows
    80     lower_export_verify   int_acc, bit_exact, export_dir = DIR/<row_id>/ (when nnchip.lower.demo_stage exists)
    90     report                per-layer SQNR, plots, table; summary.json is written after every stage

Every record holds at least row_id, model, method, w_bits, a_bits, acc, float_acc, n_test; `acc` is the
top-1 of the fake-quant model in eval mode (real-valued scales).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nnchip.cli.common import add_out_argument, format_table, resolve_out, set_determinism, write_summary
from nnchip.cli.quantize import DataBundle, qat, quantize_and_ptq, top1
from nnchip.quant import QModel
from nnchip.recipes import DataRecipe, ModelRecipe, quant_config_from_dict, recipe_from_dict

DEFAULT_OUT = "nnchip-out/demo"
DEMO_THREADS = 1  # tiny models: one thread is faster than two (no OpenMP barriers), and robust to a busy machine
DEMO_SEED = 0
# Modules of other issues that register demo stages when imported (explicit list, no scanning).
OPTIONAL_STAGE_MODULES: tuple[str, ...] = ("nnchip.prune.demo_stage", "nnchip.vq.demo_stage",
                                           "nnchip.quant.mixed_precision.demo_stage")

StageFn = Callable[["DemoContext"], None]


@dataclass(frozen=True)
class DemoStage:
    name: str
    fn: StageFn
    order: int
    budget_s: float  # the wall-time this stage may add to the demo on 2 cores


DEMO_STAGES: dict[str, DemoStage] = {}


def register_demo_stage(name: str, *, order: int, budget_s: float) -> Callable[[StageFn], StageFn]:
    """Register `fn` as demo stage `name`, run in increasing `order`."""

    def decorator(fn: StageFn) -> StageFn:
        if name in DEMO_STAGES:
            raise ValueError(f"demo stage {name!r} is already registered")
        DEMO_STAGES[name] = DemoStage(name, fn, order, budget_s)
        return fn

    return decorator


@dataclass
class DemoContext:
    """Everything the stages share. Records are plain dicts (JSON-able) keyed by their row_id."""

    out_dir: Path
    seed: int = DEMO_SEED
    data: DataBundle | None = None
    calib_batches: list[Tensor] = field(default_factory=list)  # each (B, C, H, W)
    test_x: Tensor | None = None  # (N, C, H, W)
    test_y: Tensor | None = None  # (N,)
    float_models: dict[str, nn.Module] = field(default_factory=dict)
    float_acc: dict[str, float] = field(default_factory=dict)
    qmodels: dict[str, QModel] = field(default_factory=dict)  # row_id -> fake-quant model
    records: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage name -> seconds
    artifacts: dict[str, Any] = field(default_factory=dict)  # free-form results (e.g. per-layer SQNR)

    def add_record(self, record: dict[str, Any], qmodel: QModel | None = None) -> dict[str, Any]:
        for key in ("row_id", "model", "method", "w_bits", "a_bits", "acc", "float_acc", "n_test"):
            if key not in record:
                raise ValueError(f"demo record is missing {key!r}")
        if any(r["row_id"] == record["row_id"] for r in self.records):
            raise ValueError(f"demo row {record['row_id']!r} already exists")
        self.records.append(record)
        if qmodel is not None:
            self.qmodels[record["row_id"]] = qmodel
        return record

    def record(self, row_id: str) -> dict[str, Any]:
        for r in self.records:
            if r["row_id"] == row_id:
                return r
        raise KeyError(row_id)

    def calib_inputs(self) -> Tensor:
        return torch.cat(self.calib_batches)


# ---- the rows of issue 2: each one is a recipe (recipes/demo_*.yaml hold the same dicts) ----------
DIGITS_MODELS: dict[str, dict[str, Any]] = {
    "cnn_tiny": {"name": "cnn_tiny", "num_classes": 10, "in_channels": 1, "image_size": 8},
    "vit_tiny": {"name": "vit_tiny", "num_classes": 10, "in_channels": 1, "image_size": 8},
}
FLOAT_TRAIN: dict[str, dict[str, Any]] = {
    "cnn_tiny": {"epochs": 12, "lr": 0.05, "batch_size": 64, "schedule": "onecycle", "seed": 0, "optimizer": "sgd"},
    "vit_tiny": {"epochs": 25, "lr": 0.003, "batch_size": 64, "schedule": "onecycle", "seed": 0,
                 "optimizer": "adamw", "weight_decay": 0.05},
}
QAT_TRAIN: dict[str, dict[str, Any]] = {
    "cnn_tiny": {"epochs": 3, "lr": 0.002, "batch_size": 64, "schedule": "cosine", "seed": 0, "optimizer": "adamw",
                 "weight_decay": 0.0},
    "vit_tiny": {"epochs": 3, "lr": 0.0005, "batch_size": 64, "schedule": "cosine", "seed": 0, "optimizer": "adamw",
                 "weight_decay": 0.0},
}


def _quant(bits: int, quantizer: str) -> dict[str, Any]:
    return {"weight": {"bits": bits, "quantizer": quantizer}, "act": {"bits": bits, "quantizer": quantizer}}


DEMO_ROWS: tuple[dict[str, Any], ...] = tuple(
    row
    for model in DIGITS_MODELS
    for row in (
        {"row_id": f"{model}-w8a8-ptq", "model": model, "method": "ptq", "quant": _quant(8, "minmax"),
         "ptq": {"methods": ["calibrate"]}},
        {"row_id": f"{model}-w4a4-ptq", "model": model, "method": "ptq", "quant": _quant(4, "lsq"),
         "ptq": {"methods": ["calibrate"]}},
        {"row_id": f"{model}-w4a4-qat", "model": model, "method": "qat", "quant": _quant(4, "lsq"),
         "ptq": {"methods": ["calibrate"]}, "qat": QAT_TRAIN[model], "from_row": f"{model}-w4a4-ptq"},
    )
)


def demo_row_recipe(row: dict[str, Any]) -> dict[str, Any]:
    """The standalone recipe equivalent to a demo row (what recipes/<row_id>.yaml holds)."""
    recipe = {"model": DIGITS_MODELS[row["model"]], "data": {"kind": "digits"},
              "pretrain": FLOAT_TRAIN[row["model"]], "quant": row["quant"], "ptq": row["ptq"], "seed": DEMO_SEED}
    if "qat" in row:
        recipe["qat"] = row["qat"]
    return recipe


# ---- stages ----------------------------------------------------------------------------------------
@register_demo_stage("data", order=0, budget_s=2)
def stage_data(ctx: DemoContext) -> None:
    from nnchip.cli.quantize import load_data

    ctx.data = load_data(DataRecipe(kind="digits", seed=ctx.seed, batch_size=256, calib_images=512))
    ctx.calib_batches = ctx.data.calibration_batches()
    ctx.test_x, ctx.test_y = ctx.data.test_tensors()


@register_demo_stage("train_float", order=10, budget_s=20)
def stage_train_float(ctx: DemoContext) -> None:
    from nnchip.cli.quantize import build_float_model, pretrain
    from nnchip.recipes import train_config_from_dict

    assert ctx.data is not None
    for name, spec in DIGITS_MODELS.items():
        torch.manual_seed(ctx.seed)
        options = {k: v for k, v in spec.items() if k != "name"}
        model = build_float_model(ModelRecipe(name=spec["name"], options=tuple(sorted(options.items()))), ctx.data)
        pretrain(model, train_config_from_dict(FLOAT_TRAIN[name], f"pretrain[{name}]"), ctx.data)
        ctx.float_models[name] = model.eval()
        ctx.float_acc[name] = top1(model, ctx.data.test)


@register_demo_stage("quantize", order=20, budget_s=25)
def stage_quantize(ctx: DemoContext) -> None:
    assert ctx.data is not None
    for row in DEMO_ROWS:
        recipe = recipe_from_dict(demo_row_recipe(row))
        float_model = ctx.float_models[row["model"]]
        torch.manual_seed(ctx.seed)
        if "from_row" in row:  # QAT continues from the PTQ model of the same format
            qmodel = copy.deepcopy(ctx.qmodels[row["from_row"]])
            qat(qmodel, recipe.qat, ctx.data, teacher=float_model)
        else:
            qmodel = quantize_and_ptq(float_model, quant_config_from_dict(row["quant"]), recipe.ptq,
                                      ctx.calib_batches)
        ctx.add_record({
            "row_id": row["row_id"], "model": row["model"], "method": row["method"],
            "w_bits": recipe.quant.weight.bits, "a_bits": recipe.quant.act.bits,
            "first_last_bits": recipe.quant.first_last_bits, "quantizer": recipe.quant.weight.quantizer,
            "ptq_methods": list(recipe.ptq.methods), "acc": top1(qmodel, ctx.data.test),
            "float_acc": ctx.float_acc[row["model"]], "n_test": len(ctx.data.test),
            "recipe": f"recipes/{row['row_id']}.yaml",
        }, qmodel)


def stage_lower_export_verify(ctx: DemoContext) -> None:
    """Lower every row to integers, export it to DIR/<row_id>/ and verify it (issue 3's function)."""
    from nnchip.lower.demo_stage import lower_export_verify

    assert ctx.test_x is not None and ctx.test_y is not None
    for record in ctx.records:
        qmodel = ctx.qmodels.get(record["row_id"])
        if qmodel is None:
            continue
        result = lower_export_verify(qmodel, ctx.calib_inputs(), ctx.test_x, ctx.test_y,
                                     ctx.out_dir / record["row_id"])
        record.update({k: result.get(k) for k in ("int_acc", "bit_exact", "export_dir")})


@register_demo_stage("report", order=90, budget_s=5)
def stage_report(ctx: DemoContext) -> None:
    from nnchip.report import layer_sqnr, plot_accuracy_vs_bits, plot_layer_sqnr

    assert ctx.test_x is not None
    sqnr = {}
    for row_id, qmodel in ctx.qmodels.items():
        model_name = ctx.record(row_id)["model"]
        float_model = ctx.float_models.get(model_name)
        if float_model is None:
            continue
        sqnr[row_id] = layer_sqnr(float_model, qmodel, ctx.test_x[:256])
        worst = min(sqnr[row_id], key=lambda s: s.sqnr_db, default=None)
        if worst is not None:
            ctx.record(row_id).update(worst_layer=worst.target, worst_layer_sqnr_db=round(worst.sqnr_db, 2))
    ctx.artifacts["layer_sqnr"] = sqnr
    plot_accuracy_vs_bits(ctx.records, ctx.out_dir / "accuracy_vs_bits.png")
    plot_layer_sqnr(sqnr, ctx.out_dir / "layer_sqnr.png", {r["row_id"]: r["model"] for r in ctx.records})


def _register_optional_stages() -> None:
    try:
        importlib.import_module("nnchip.lower.demo_stage")
    except ImportError:
        pass
    else:
        if "lower_export_verify" not in DEMO_STAGES:
            register_demo_stage("lower_export_verify", order=80, budget_s=30)(stage_lower_export_verify)
    for module in OPTIONAL_STAGE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise


# ---- running ---------------------------------------------------------------------------------------
def run_demo(out_dir: Path, *, log: Callable[[str], None] = print) -> DemoContext:
    """Run every registered stage in order into `out_dir`; summary.json is rewritten after each stage."""
    _register_optional_stages()
    set_determinism(DEMO_SEED, threads=DEMO_THREADS)
    ordered = sorted(DEMO_STAGES.values(), key=lambda s: s.order)
    ctx = DemoContext(out_dir=out_dir)
    start = time.perf_counter()
    for stage in ordered:
        t = time.perf_counter()
        stage.fn(ctx)
        ctx.timings[stage.name] = time.perf_counter() - t
        log(f"[{time.perf_counter() - start:5.1f}s] {stage.name}: {ctx.timings[stage.name]:.1f}s "
            f"(budget {stage.budget_s:.0f}s)")
        write_summary(out_dir, ctx.records)
    ctx.timings["total"] = time.perf_counter() - start
    write_summary(out_dir, {k: round(v, 3) for k, v in ctx.timings.items()}, name="timings.json")
    log("")
    log(summary_table(ctx.records))
    log(f"\nwrote {out_dir / 'summary.json'} ({len(ctx.records)} rows) in {ctx.timings['total']:.1f}s")
    return ctx


def summary_table(records: list[dict[str, Any]]) -> str:
    headers = ["model", "method", "bits", "acc %", "Δ vs float"]
    extra = [k for k in ("int_acc", "bit_exact") if any(k in r for r in records)]
    rows = []
    for r in records:
        bits = f"W{r['w_bits']}A{r['a_bits']}" if r.get("w_bits") is not None else f"avg {r.get('avg_bits', '?')}"
        row = [r["model"], r["method"], bits, 100 * r["acc"], 100 * (r["acc"] - r["float_acc"])]
        row += [100 * r[k] if k == "int_acc" and r.get(k) is not None else r.get(k) for k in extra]
        rows.append(row)
    return format_table(headers + [("int acc %" if k == "int_acc" else k) for k in extra], rows)


def _run(args: argparse.Namespace) -> int:
    out_dir = resolve_out(args)
    run_demo(out_dir)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="train, quantize and report on the embedded digits (< 60 s)",
                                   description=__doc__.splitlines()[0])
    add_out_argument(parser, DEFAULT_OUT)
    parser.set_defaults(func=_run)
