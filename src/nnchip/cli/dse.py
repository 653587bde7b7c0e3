"""`nnchip dse --model M --device D --target-fps F`: the most accurate precision and accelerator meeting F FPS.

The model is costed from its shapes (a zoo model with random weights: no training needed). Writes DIR/dse.json
(chosen design, fastest design per precision, Pareto front), DIR/pareto.csv and DIR/pareto.png; `--json` prints
the chosen design as one JSON object; `--emit-recipe FILE` writes a quantization recipe for the chosen
precision (runs with `nnchip quantize`) and the accelerator parameters as a C/HLS header beside it (FILE.h).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml

from nnchip.cli.common import (
    _jsonable,
    add_out_argument,
    atomic_write,
    atomic_write_text,
    format_table,
    resolve_out,
    write_summary,
)
from nnchip.core.errors import ConfigError
from nnchip.hw.dse import DesignPoint, DSEResult, explore, load_accuracy
from nnchip.hw.fpga import cost_table, load_design, load_latency_table
from nnchip.hw.specs import load_energy, load_fpga
from nnchip.hw.systolic import DATAFLOWS, workload_cycles
from nnchip.hw.workload import zoo_workload

DEFAULT_OUT = "nnchip-out/dse"
PARETO_COLUMNS = ("w_bits", "a_bits", "t_m", "t_n", "t_a", "t_b", "fps", "lut", "ff", "dsp", "bram36", "resource_use",
                  "energy_mj", "accuracy")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("dse", help="design-space exploration: target FPS → precision and accelerator",
                              description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="zoo model name (e.g. deit_base, resnet20)")
    p.add_argument("--device", required=True, help="FPGA device name (zcu102, zcu104, z7020, z7045, u250)")
    p.add_argument("--target-fps", type=float, required=True, help="frames per second to meet")
    p.add_argument("--w-bits", type=int, default=None, help="fix the weight precision (1 = binary weights)")
    p.add_argument("--a-bits", type=int, default=None, help="fix the activation precision")
    p.add_argument("--accuracy", default=None, metavar="FILE",
                   help="measured accuracy points (JSON records with w_bits, a_bits, acc, e.g. a summary.json)")
    p.add_argument("--latency-table", default=None, metavar="CSV",
                   help="measured per-layer latencies (layer,latency_ms) replacing the model for those layers")
    p.add_argument("--device-file", default=None, metavar="YAML", help="device table (default: shipped fpga.yaml)")
    p.add_argument("--design-file", default=None, metavar="YAML", help="accelerator constants (default: shipped)")
    p.add_argument("--image-size", type=int, default=None, help="input size (default: the model's own)")
    p.add_argument("--array", default=None, metavar="RxC", help="also report systolic-array cycles, e.g. 32x32")
    p.add_argument("--dataflow", default="ws", help=f"systolic dataflow for --array ({', '.join(DATAFLOWS)})")
    p.add_argument("--json", action="store_true", help="print the chosen design as one JSON object")
    p.add_argument("--emit-recipe", default=None, metavar="FILE", help="write a quantization recipe (+ FILE.h)")
    add_out_argument(p, DEFAULT_OUT)
    p.set_defaults(func=run)


def _parse_array(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--array must look like 32x32, got {text!r}") from None
    if rows <= 0 or cols <= 0:
        raise ConfigError(f"--array sizes must be positive, got {text!r}")
    return rows, cols


def recipe_text(model: str, point: DesignPoint, command: str) -> str:
    """A recipe `nnchip quantize` runs: the chosen precision (binary weights → QAT with the binary quantizer)."""
    weight = {"bits": point.w_bits, "quantizer": "binary" if point.w_bits == 1 else "lsq"}
    recipe: dict[str, Any] = {
        "model": model,
        "data": {"kind": "digits"},
        "quant": {"weight": weight, "act": {"bits": point.a_bits, "quantizer": "lsq"}},
        "ptq": {"methods": ["calibrate"]},
        "qat": {"epochs": 3, "lr": 0.001, "optimizer": "adamw"},
        "seed": 0,
    }
    header = (f"# Written by `{command}`.\n# Chosen design: W{point.w_bits}A{point.a_bits} on {point.device}, "
              f"{point.fps:.1f} FPS predicted (T_m={point.t_m}, T_n={point.t_n}, T_a={point.t_a}, T_b={point.t_b}).\n"
              "# Point `data` at the real training set before running `nnchip quantize` on it.\n")
    return header + yaml.safe_dump(recipe, sort_keys=False)


def header_text(point: DesignPoint, command: str) -> str:
    guard = "NNCHIP_ACCEL_PARAMS_H"
    lines = [f"/* Accelerator parameters written by `{command}`. */", f"#ifndef {guard}", f"#define {guard}"]
    values = {"W_BITS": point.w_bits, "A_BITS": point.a_bits, "T_M": point.t_m, "T_N": point.t_n, "T_A": point.t_a,
              "T_B": point.t_b}
    lines += [f"#define NNCHIP_{key} {value}" for key, value in values.items()]
    lines += [f"/* predicted: {point.fps:.2f} FPS, LUT {point.lut}, FF {point.ff}, DSP {point.dsp}, "
              f"BRAM36 {point.bram36} on {point.device} */", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def pareto_csv(points: tuple[DesignPoint, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PARETO_COLUMNS)
    for p in points:
        writer.writerow(["" if getattr(p, c) is None else getattr(p, c) for c in PARETO_COLUMNS])
    return buffer.getvalue()


def write_pareto_png(path: Path, result: DSEResult, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    front = result.pareto
    colour = ax.scatter([p.resource_use for p in front], [p.fps for p in front], c=[p.energy_mj for p in front],
                        cmap="viridis", s=18)
    for p in front:
        if p is front[0] or p.a_bits != front[front.index(p) - 1].a_bits:
            ax.annotate(f"W{p.w_bits}A{p.a_bits}", (p.resource_use, p.fps), fontsize=7)
    ax.axhline(result.target_fps, color="grey", linestyle="--", linewidth=1, label="target")
    c = result.chosen
    ax.scatter([c.resource_use], [c.fps], marker="*", s=160, color="red", label=f"chosen W{c.w_bits}A{c.a_bits}")
    ax.set_xlabel("resource use (mean LUT/FF/DSP/BRAM fraction)")
    ax.set_ylabel("frames per second")
    ax.set_title(title)
    fig.colorbar(colour, ax=ax, label="energy per frame (mJ, 45 nm table)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    device = load_fpga(args.device, args.device_file)
    design = load_design(args.design_file)
    energy = load_energy()
    if not args.target_fps > 0:
        raise ConfigError(f"--target-fps must be positive, got {args.target_fps}")
    accuracy = load_accuracy(args.accuracy) if args.accuracy else None
    measured = load_latency_table(args.latency_table) if args.latency_table else None
    if args.dataflow not in DATAFLOWS:
        raise ConfigError(f"--dataflow must be one of {', '.join(DATAFLOWS)}, got {args.dataflow!r}")
    systolic = None
    rows, cols = _parse_array(args.array) if args.array else (0, 0)
    workload = zoo_workload(args.model, args.image_size)
    table = cost_table(workload, measured)
    result = explore(table, device, design, energy, args.target_fps, w_bits=args.w_bits, a_bits=args.a_bits,
                     accuracy=accuracy)
    if args.array:
        cycles = int(workload_cycles(workload, rows, cols, args.dataflow))
        systolic = {"array": f"{rows}x{cols}", "dataflow": args.dataflow, "cycles": cycles,
                    "utilisation": workload.macs / (rows * cols * cycles)}
    command = f"nnchip dse --model {args.model} --device {args.device} --target-fps {args.target_fps:g}" + (
        f" --w-bits {args.w_bits}" if args.w_bits is not None else "") + (
        f" --a-bits {args.a_bits}" if args.a_bits is not None else "")
    chosen = {**result.chosen.to_dict(), "model": args.model, "target_fps": args.target_fps,
              "limited_by": result.limiter, "points": result.points,
              "points_per_second": result.points_per_second, "notes": list(result.notes)}
    if systolic:
        chosen["systolic"] = systolic
    out = resolve_out(args)
    report = {"chosen": chosen, "best_per_precision": [p.to_dict() for p in result.best_per_precision],
              "pareto": [p.to_dict() for p in result.pareto], "design": design.to_dict(), "device": vars(device)}
    write_summary(out, report, name="dse.json")
    atomic_write_text(out / "pareto.csv", pareto_csv(result.pareto))
    write_pareto_png(out / "pareto.png", result, f"{args.model} on {args.device}, target {args.target_fps:g} FPS")
    if args.emit_recipe:
        recipe_path = Path(args.emit_recipe)
        atomic_write_text(recipe_path, recipe_text(args.model, result.chosen, command))
        atomic_write_text(recipe_path.with_suffix(".h"), header_text(result.chosen, command))
    if args.json:
        print(json.dumps(_jsonable(chosen)))
        return 0
    rows_out = [[f"W{p.w_bits}A{p.a_bits}", p.fps, p.lut, p.dsp, p.bram36, f"{p.t_m}/{p.t_n}/{p.t_a}/{p.t_b}"]
                for p in result.best_per_precision]
    print(f"{args.model} on {device.name} ({device.part}, {device.clock_mhz:g} MHz): fastest design per precision")
    print(format_table(["precision", "max FPS", "LUT", "DSP", "BRAM36", "T_m/T_n/T_a/T_b"], rows_out))
    c = result.chosen
    print(f"chosen: W{c.w_bits}A{c.a_bits} at {c.fps:.1f} FPS (target {args.target_fps:g}), T_m={c.t_m} T_n={c.t_n} "
          f"T_a={c.t_a} T_b={c.t_b}, LUT {c.lut} FF {c.ff} DSP {c.dsp} BRAM36 {c.bram36}")
    print(f"{result.points} design points in {result.seconds:.2f} s ({result.points_per_second:,.0f} points/s); "
          f"Pareto front: {len(result.pareto)} designs → {out}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
