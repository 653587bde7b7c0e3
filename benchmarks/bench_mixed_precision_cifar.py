"""Issue-5 benchmark: layer-wise mixed precision vs uniform weights on CIFAR-10 ResNet-20, at equal model size and at
equal modelled latency, and accuracy vs bit-operations with the Pareto front.

Same reference checkpoint, calibration images and test images for every point. Activations 4 bits (first and
last conv/linear: 8-bit weights and inputs as quantize() builds them; residual adds and logits 8 bits).
  uniform      W{2,3,4,6,8}A4, PTQ `calibrate` (per-channel min/max weights, MSE activation ranges)
  mixed        weight bits per layer from the candidates by the integer program (nnchip.quant.mixed_precision),
               sensitivity measured output error ("quant_error") or Hutchinson-trace ("hessian", HAWQ-V2), budget
               - size equal to uniform W{3,4,6} (Σ params·bits of that uniform model, first/last at 8 bits)
               - modelled latency equal to uniform W4: the FPGA model's DSP engine, ZCU102, T_a 8 × T_b 16
               then the same PTQ
  QAT          uniform W4 and the mixed points at W4's size and latency: `--qat-steps` SGD steps (LSQ,
               distillation from the float model, lr 0.002 cosine, batch 128; bench_quant_cifar.qat)
BOPs = Σ_layers MACs · w_bits · a_bits per image (first/last inputs 8 bits). Test images: every k-th of the
class-ordered test split (default all 10 000).

    OMP_NUM_THREADS=1 python benchmarks/bench_mixed_precision_cifar.py [--test-images 10000] [--qat-steps 200]
Writes benchmarks/results/mixed_precision.{md,json} and mixed_precision_pareto.png (rows written as they come).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quant_cifar import DEFAULT_DATA, REPO, load_checkpoint, load_cifar, qat, quant_config, top1  # noqa: E402

from nnchip.hw.workload import workload_from_model  # noqa: E402
from nnchip.quant import quantize  # noqa: E402
from nnchip.quant.mixed_precision import MixedPrecisionConfig, assign_bits  # noqa: E402
from nnchip.quant.mixed_precision.api import layer_sensitivity  # noqa: E402
from nnchip.quant.mixed_precision.latency import layer_latency, uniform_bits  # noqa: E402
from nnchip.quant.ptq import ptq  # noqa: E402
from nnchip.quant.spec import LayerOverride, QuantConfig  # noqa: E402

CHECKPOINT = REPO / "benchmarks" / "checkpoints" / "resnet20_cifar10.safetensors"
A_BITS = 4


def with_bits(config: QuantConfig, bits: dict[str, int]) -> QuantConfig:
    return replace(config, overrides=tuple(LayerOverride(path=p, weight=replace(config.weight, bits=b))
                                           for p, b in bits.items()))


def ptq_model(model: torch.nn.Module, config: QuantConfig, calib: torch.Tensor) -> torch.nn.Module:
    qmodel = quantize(model, config, example_inputs=calib[:2])
    ptq(qmodel, calib.split(128), ["calibrate"])
    return qmodel


def pareto(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points that no other point beats on both BOPs (≤) and accuracy (≥, one of them strictly)."""
    return [p for p in points if not any(q is not p and q["bops"] <= p["bops"] and q["acc"] >= p["acc"]
                                         and (q["bops"] < p["bops"] or q["acc"] > p["acc"]) for q in points)]


def plot(records: list[dict[str, Any]], float_acc: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = {("uniform", "PTQ"): ("o", "tab:blue"), ("quant_error", "PTQ"): ("^", "tab:orange"),
              ("hessian", "PTQ"): ("s", "tab:green"), ("uniform", "QAT"): ("o", "tab:blue"),
              ("quant_error", "QAT"): ("^", "tab:orange"), ("hessian", "QAT"): ("s", "tab:green")}
    for (kind, method), (marker, colour) in styles.items():
        pts = [r for r in records if r["sensitivity"] == kind and r["method"] == method]
        if pts:
            label = f"{'uniform' if kind == 'uniform' else 'mixed, ' + kind} ({method})"
            ax.scatter([p["bops"] / 1e9 for p in pts], [100 * p["acc"] for p in pts], marker=marker, s=46,
                       facecolors=colour if method == "PTQ" else "none", edgecolors=colour, label=label, zorder=3)
    for r in records:
        if r["sensitivity"] == "uniform" and r["method"] == "PTQ":
            ax.annotate(r["label"].split(" ")[0], (r["bops"] / 1e9, 100 * r["acc"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=8)
    front = sorted(pareto(records), key=lambda p: p["bops"])
    ax.plot([p["bops"] / 1e9 for p in front], [100 * p["acc"] for p in front], "k--", lw=1, zorder=2,
            label="Pareto front (all points)")
    ax.scatter([p["bops"] / 1e9 for p in front], [100 * p["acc"] for p in front], s=120, facecolors="none",
               edgecolors="k", zorder=4)
    ax.axhline(100 * float_acc, color="grey", lw=0.8, ls=":", label=f"float {100 * float_acc:.2f} %")
    ax.set_xlabel("bit-operations per image (G BOPs = Σ MACs·b_w·b_a)")
    ax.set_ylabel("CIFAR-10 top-1 (%)")
    ax.set_title("ResNet-20, activations 4 bits: uniform vs mixed-precision weights")
    shown = [100 * r["acc"] for r in records if r["acc"] > 0.5]
    bottom = min(shown) - 2 if shown else 0.0
    ax.set_ylim(bottom, 100 * float_acc + 1.5)
    below = [f"{r['label']} ({r['sensitivity']}, {r['method']}): {100 * r['acc']:.2f} %" for r in records
             if 100 * r["acc"] < bottom]
    if below:
        ax.text(0.01, 0.02, "below the axis: " + "; ".join(below), transform=ax.transAxes, fontsize=7,
                va="bottom")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=130)
    tmp.replace(path)
    plt.close(fig)


def markdown(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    front = {id(p) for p in pareto(records)}
    test = (f"all {meta['n_test']} test images" if meta["stride"] == 1
            else f"{meta['n_test']} test images (every {meta['stride']}-th)")
    lines = [f"# Mixed precision vs uniform weights, CIFAR-10 ResNet-20 (A{A_BITS})", "",
             f"Float top-1 {100 * meta['float_acc']:.2f} % on {test}; calibration {meta['calib']} training images; "
             f"candidates {meta['candidates']}; latency model: {meta['latency_model']}. Command: "
             f"`{meta['command']}` ({meta['threads']} thread, {meta['total_s']:.0f} s wall, {meta['cpu_s']:.0f} s "
             "CPU). * = on the Pareto front (BOPs, top-1).", "",
             "| point | sensitivity | budget | method | avg W bits | G BOPs | latency µs | top-1 % | Δ vs float pp |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        same = f" (same bits as {r['same_as']}: same model)" if "same_as" in r else ""
        lines.append(f"| {r['label']}{' *' if id(r) in front else ''}{same} | {r['sensitivity']} | {r['budget']} | "
                     f"{r['method']} | {r['avg_bits']:.3f} | {r['bops'] / 1e9:.3f} | {r['latency_us']:.1f} | "
                     f"{100 * r['acc']:.2f} | {100 * (r['acc'] - meta['float_acc']):+.2f} |")
    lines += ["", "Weight bits per layer of the mixed points, in the order conv1, layer1.0.conv1, layer1.0.conv2, …, "
              "with each stage's downsample conv before its first block (layer2.0.downsample.0, layer2.0.conv1, …), "
              "fc:", ""]
    for r in records:
        if r["sensitivity"] != "uniform" and r["method"] == "PTQ":
            lines.append(f"- {r['label']} ({r['sensitivity']}): {' '.join(str(b) for b in r['bits'].values())}")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--calib", type=int, default=512)
    parser.add_argument("--sensitivity-images", type=int, default=256, help="calibration images for the output error")
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--candidates", type=int, nargs="*", default=[2, 3, 4, 5, 6, 8])
    parser.add_argument("--uniform", type=int, nargs="*", default=[2, 3, 4, 6, 8])
    parser.add_argument("--equal-size-to", type=int, nargs="*", default=[3, 4, 6])
    parser.add_argument("--qat-steps", type=int, default=200, help="0: no QAT points")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    train_x, train_y, test_x, test_y = load_cifar(args.data)
    stride = max(1, test_x.shape[0] // args.test_images)
    test_x, test_y = test_x[::stride], test_y[::stride]  # the split is ordered by class: stride over it
    model, _ = load_checkpoint(CHECKPOINT)
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(train_x.shape[0], generator=generator)
    calib = train_x[order[:args.calib]]
    hessian_batches = [(train_x[order[i:i + 64]], train_y[order[i:i + 64]]) for i in (args.calib, args.calib + 64)]
    float_acc = top1(model, test_x, test_y)
    print(f"float top-1 {100 * float_acc:.2f} % on {test_x.shape[0]} images", flush=True)

    base = quant_config(4, A_BITS, "minmax")
    workload = workload_from_model(model, calib[:1])
    paths = [layer.name for layer in workload.layers]
    params = {p: model.get_submodule(p).weight.numel() for p in paths}
    macs = {layer.name: layer.macs for layer in workload.layers}
    edges = {paths[0], paths[-1]}
    latency_config = MixedPrecisionConfig(candidates=tuple(args.candidates), budget="latency", avg_bits=4)
    latency = layer_latency(workload, paths, base, latency_config, extra_bits=tuple(args.uniform))
    latency_model = (f"FPGA DSP engine, {latency_config.device}, T_a {latency_config.t_a} × T_b "
                     f"{latency_config.t_b}, µs per image (docs/hardware-models.md)")

    def describe(bits: dict[str, int]) -> dict[str, Any]:
        a = {p: base.first_last_bits if p in edges else A_BITS for p in paths}
        return {"bits": bits, "avg_bits": sum(params[p] * b for p, b in bits.items()) / sum(params.values()),
                "bops": sum(macs[p] * b * a[p] for p, b in bits.items()), "latency_us": latency.total_us(bits)}

    records: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"float_acc": float_acc, "n_test": int(test_x.shape[0]), "stride": stride,
                            "calib": args.calib, "candidates": args.candidates, "latency_model": latency_model,
                            "threads": args.threads, "command": "python benchmarks/bench_mixed_precision_cifar.py "
                            + " ".join(sys.argv[1:] if argv is None else argv)}

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        print(f"{record['label']:<28} {record['sensitivity']:<12} {record['method']}  avg {record['avg_bits']:.3f}  "
              f"{record['bops'] / 1e9:.3f} GBOPs  {record['latency_us']:.1f} µs  top-1 {100 * record['acc']:.2f} %  "
              f"({record['seconds']:.0f} s)", flush=True)
        meta["total_s"] = time.perf_counter() - started
        meta["cpu_s"] = time.process_time()  # the machine may be shared: CPU time is what the budget counts
        write_atomic(args.out / "mixed_precision.json", json.dumps({"meta": meta, "records": records}, indent=1))
        write_atomic(args.out / "mixed_precision.md", markdown(records, meta))

    uniform: dict[int, dict[str, int]] = {}
    for b in args.uniform:
        t = time.perf_counter()
        bits = uniform_bits(workload, paths, base, b)
        uniform[b] = bits
        acc = top1(ptq_model(model, quant_config(b, A_BITS, "minmax"), calib), test_x, test_y)
        emit({"label": f"W{b} uniform", "sensitivity": "uniform", "budget": "-", "method": "PTQ", **describe(bits),
              "acc": acc, "seconds": time.perf_counter() - t})

    mixed: dict[tuple[str, str], dict[str, int]] = {}
    for kind in ("quant_error", "hessian"):
        t = time.perf_counter()
        config = MixedPrecisionConfig(candidates=tuple(args.candidates), sensitivity=kind)
        sensitivity = layer_sensitivity(model, base, config, calib[:args.sensitivity_images], hessian_batches)
        meta[f"sensitivity_{kind}_s"] = time.perf_counter() - t
        budgets = [(f"size = W{b}", replace(config, budget="size", avg_bits=describe(uniform_bits(
            workload, paths, base, b))["avg_bits"])) for b in args.equal_size_to]
        budgets.append(("latency = W4", replace(config, budget="latency", avg_bits=4)))
        for name, budget_config in budgets:
            t = time.perf_counter()
            _, assignment = assign_bits(model, base, budget_config, calib_inputs=calib[:1], sensitivity=sensitivity)
            mixed[(kind, name)] = assignment.bits
            acc = top1(ptq_model(model, with_bits(base, assignment.bits), calib), test_x, test_y)
            emit({"label": f"mixed, {name}", "sensitivity": kind, "budget": name, "method": "PTQ",
                  **describe(assignment.bits), "acc": acc, "seconds": time.perf_counter() - t})
        plot(records, float_acc, args.out / "mixed_precision_pareto.png")

    if args.qat_steps > 0:
        lsq = quant_config(4, A_BITS, "lsq")
        runs = [("W4 uniform", "uniform", "-", uniform_bits(workload, paths, base, 4))]
        runs += [(f"mixed, {name}", kind, name, mixed[(kind, name)]) for kind in ("quant_error", "hessian")
                 for name in ("size = W4", "latency = W4") if (kind, name) in mixed]
        trained: dict[tuple[int, ...], dict[str, Any]] = {}
        for label, kind, name, bits in runs:
            t = time.perf_counter()
            key = tuple(bits.values())
            if key in trained:  # the same assignment (e.g. both sensitivities at the latency budget): same model
                emit({**trained[key], "label": label, "sensitivity": kind, "budget": name, "seconds": 0.0,
                      "same_as": f"{trained[key]['label']} ({trained[key]['sensitivity']})"})
                continue
            qmodel = ptq_model(model, with_bits(lsq, bits), calib)
            qat(qmodel, copy.deepcopy(model).eval(), train_x, train_y, args.qat_steps, 0.002, args.seed)
            emit({"label": label, "sensitivity": kind, "budget": name, "method": "QAT", **describe(bits),
                  "acc": top1(qmodel, test_x, test_y), "seconds": time.perf_counter() - t,
                  "qat_steps": args.qat_steps})
            trained[key] = records[-1]
            plot(records, float_acc, args.out / "mixed_precision_pareto.png")
    plot(records, float_acc, args.out / "mixed_precision_pareto.png")
    print(markdown(records, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
