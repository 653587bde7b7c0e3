"""Issue-2 benchmark on CIFAR-10: float vs PTQ (every method) vs QAT vs Brevitas PTQ, and QAT step-time ratios.

For each reference checkpoint (ResNet-20, small ViT), on the same checkpoint and the same calibration images:
  float top-1; W8A8 PTQ; W4A4 PTQ with each PTQ method; W4A4 QAT and W2A2 QAT (short, from PTQ init, with
  distillation from the float model); Brevitas PTQ W8A8 and W4A4 with its strongest published flow
  (per-channel weights, graph equalisation, GPTQ with act-order, bias correction, first/last layer 8 bits);
  QAT step time ÷ float step time for nnchip and Brevitas (median of 50 steps after 10 warm-up, batch 128,
  the models' steps interleaved).
W4A4 (ours): every conv/linear weight and every conv/linear/matmul input at 4 bits, first and last layer at
8 bits, every other tensor (residual adds, LayerNorm/softmax/GELU inputs, softmax output, logits) 8 bits.

    python benchmarks/bench_quant_cifar.py --threads 2 [--models resnet20_cifar10,vit_...] [--qat-steps 300]
Writes OUT/summary.json (one record per row) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PTQ_W4 = ("calibrate", "calibrate,bias_correction", "adaround", "brecq", "qdrop")
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"


# ---- data ------------------------------------------------------------------------------------------
def load_cifar(path: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train_x, train_y, test_x, test_y): float images normalised with the train set's channel statistics
    (nnchip.data.load_cifar10_tar, the reader the reference checkpoints were trained with) and labels."""
    from nnchip.data import load_cifar10_tar

    split = load_cifar10_tar(path)
    train_x, train_y = split.train.tensors
    test_x, test_y = split.test.tensors
    return train_x, train_y, test_x, test_y


# ---- models ----------------------------------------------------------------------------------------
def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Zoo model named by the checkpoint's sidecar JSON (written by train_reference.py: model, model_options),
    with the checkpoint's weights (safetensors)."""
    from nnchip.models import build
    from nnchip.train import load_weights

    meta = json.loads(path.with_suffix(".json").read_text())
    name = meta["model"]
    model = build(name, num_classes=10, **meta.get("model_options", {}))
    return load_weights(model, path).eval(), {"name": name, **meta}


def integer_top1(qmodel: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    """Top-1 of the fake-quant model lowered to the integer graph and run by the interpreter."""
    from nnchip.lower import lower, run
    from nnchip.lower.demo_stage import integer_inputs

    graph = lower(qmodel)
    correct = 0
    for i in range(0, x.shape[0], batch):
        x_int = integer_inputs(qmodel, graph.inputs[0], x[i:i + batch])
        logits = run(graph, x_int, keep="outputs").tensors[graph.outputs[0]]
        correct += int((logits.argmax(dim=-1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def top1(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


# ---- nnchip ----------------------------------------------------------------------------------------
def act_observer() -> str:
    from nnchip.quant import OBSERVERS

    for name in ("mse", "percentile", "minmax"):
        if name in OBSERVERS:
            return name
    return "minmax"


def quant_config(w_bits: int, a_bits: int, quantizer: str) -> Any:
    from nnchip.quant import QuantConfig, QuantSpec, default_weight_spec

    weight = default_weight_spec(w_bits, quantizer)
    act = QuantSpec(bits=a_bits, quantizer=quantizer, observer=act_observer(), signed=False, symmetric=False)
    return QuantConfig(weight=weight, act=act, other_bits=8, first_last_bits=8, softmax_bits=8, output_bits=8)


def nnchip_ptq(model: nn.Module, calib: Tensor, w_bits: int, a_bits: int, methods: list[str], iterations: int,
               quantizer: str = "minmax") -> nn.Module:
    from nnchip.quant import quantize
    from nnchip.quant.ptq import ptq

    qmodel = quantize(model, quant_config(w_bits, a_bits, quantizer), example_inputs=calib[:2])
    ptq(qmodel, calib.split(128), methods, iterations=iterations)
    return qmodel


def qat(student: nn.Module, teacher: nn.Module, train_x: Tensor, train_y: Tensor, args: argparse.Namespace, *,
        vit: bool) -> dict[str, Any]:
    """QAT with nnchip.train: SGD (momentum 0.9; CNNs) or AdamW (ViTs), linear warm-up then cosine decay, batch
    128, crop+flip, loss (1 − α)·CE + α·T²·KL(teacher/T ‖ student/T); LSQ steps at `quant_lr_scale` × lr.
    Returns the settings for the record."""
    from torch.utils.data import TensorDataset

    from nnchip.train import TrainConfig, train

    steps_per_epoch = train_x.shape[0] // 128
    config = TrainConfig(
        epochs=math.ceil(args.qat_steps / steps_per_epoch), max_steps=args.qat_steps, batch_size=128,
        lr=args.qat_lr_vit if vit else args.qat_lr, optimizer="adamw" if vit else "sgd", weight_decay=0.0,
        schedule="cosine", warmup_epochs=args.qat_warmup * args.qat_steps / steps_per_epoch,
        distill_alpha=args.qat_distill_alpha, distill_temperature=args.qat_temperature, augment=True,
        seed=args.seed, progress=False, quant_lr_scale=args.qat_quant_lr_scale)
    train(student, TensorDataset(train_x, train_y), config, teacher=teacher)
    return {"qat_steps": args.qat_steps, "qat_init": args.qat_init, "qat_optimizer": f"{config.optimizer} lr "
            f"{config.lr} cosine, warm-up {args.qat_warmup:.0%}", "distill_alpha": config.distill_alpha,
            "distill_temperature": config.distill_temperature, "quant_lr_scale": config.quant_lr_scale,
            "qat_epochs": round(args.qat_steps * 128 / train_x.shape[0], 2)}


# ---- Brevitas ----------------------------------------------------------------------------------------
def brevitas_quantize(model: nn.Module, w_bits: int, a_bits: int, num_classes: int, in_channels: int = 3,
                      equalize: bool = True) -> nn.Module:
    """Brevitas layerwise quantization (inputs and weights of every conv/linear), per-channel float-scale
    weights, per-tensor activations (99.999 percentile), graph equalisation; first/last layer at 8 bits."""
    from brevitas.graph.quantize import layerwise_quantize, preprocess_for_quantize
    from brevitas.inject import value
    from brevitas_examples.imagenet_classification.ptq.ptq_common import create_quant_maps

    def is_edge(module: nn.Module) -> bool:
        return (isinstance(module, nn.Conv2d) and module.in_channels == in_channels) or (
            isinstance(module, nn.Linear) and module.out_features == num_classes)

    @value
    def weight_bits(module: nn.Module) -> int:
        return 8 if is_edge(module) else w_bits

    @value
    def act_bits(module: nn.Module) -> int:
        return 8 if is_edge(module) else a_bits

    prepared = preprocess_for_quantize(copy.deepcopy(model), equalize_iters=20 if equalize else 0,
                                       equalize_merge_bias=True, merge_bn=True)
    _, layer_map, _, _ = create_quant_maps(
        dtype=torch.float32, bias_bit_width=32, weight_bit_width=weight_bits, weight_param_method="stats",
        weight_scale_type="float_scale", weight_quant_type="sym", weight_quant_granularity="per_channel",
        weight_narrow_range=True, weight_quant_format="int", act_quant_format="int", act_bit_width=act_bits,
        act_scale_type="float_scale", act_scale_computation_type="static", act_param_method="stats",
        act_quant_type="sym", act_quant_granularity="per_tensor", act_quant_percentile=99.999)
    return layerwise_quantize(prepared, compute_layer_map=layer_map)


def brevitas_ptq(model: nn.Module, calib: Tensor, w_bits: int, a_bits: int, num_classes: int) -> nn.Module:
    from brevitas_examples.imagenet_classification.ptq.ptq_common import (
        apply_bias_correction,
        apply_gptq,
        calibrate,
    )

    qmodel = brevitas_quantize(model, w_bits, a_bits, num_classes).eval()
    loader = [(x, torch.zeros(x.shape[0], dtype=torch.long)) for x in calib.split(64)]
    with torch.no_grad():
        qmodel(calib[:8])
    calibrate(loader, qmodel)
    apply_gptq(loader, qmodel, act_order=True)
    apply_bias_correction(loader, qmodel)
    return qmodel.eval()


# ---- timing ----------------------------------------------------------------------------------------
def median_step_seconds(models: list[nn.Module], x: Tensor, y: Tensor, warmup: int = 10,
                        steps: int = 50) -> list[float]:
    """Median seconds of one SGD training step of each model; the models take turns step by step (interleaved),
    so that a change in the load of a shared machine hits all of them alike."""
    steppers = []
    for model in models:
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
        steppers.append((model, optimizer))
    times: list[list[float]] = [[] for _ in models]
    for i in range(warmup + steps):
        for (model, optimizer), record in zip(steppers, times, strict=True):
            start = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if i >= warmup:
                record.append(time.perf_counter() - start)
    for model in models:
        model.eval()
    return [statistics.median(record) for record in times]


# ---- driver ----------------------------------------------------------------------------------------
def run_model(ckpt: Path, args: argparse.Namespace, data: tuple[Tensor, ...], emit: Callable[[dict], None]) -> None:
    from nnchip.train import save_weights

    train_x, train_y, test_x, test_y = data
    model, meta = load_checkpoint(ckpt)
    name = meta["name"]
    generator = torch.Generator().manual_seed(args.seed)
    calib_idx = torch.randperm(train_x.shape[0], generator=generator)[:args.calib]
    calib = train_x[calib_idx]
    if args.test_images < test_x.shape[0]:  # a fixed random subset (the archive is sorted by class)
        keep = torch.randperm(test_x.shape[0], generator=torch.Generator().manual_seed(args.seed))[:args.test_images]
        test_x, test_y = test_x[keep], test_y[keep]
    n_test = int(test_x.shape[0])
    float_acc = top1(model, test_x, test_y)
    is_vit = any(isinstance(m, (nn.LayerNorm, nn.MultiheadAttention)) for m in model.modules())

    def row(method: str, w: int | None, a: int | None, acc: float, seconds: float, **extra: Any) -> None:
        emit({"model": name, "method": method, "w_bits": w, "a_bits": a, "acc": acc, "float_acc": float_acc,
              "delta_pp": None if acc is None else 100 * (acc - float_acc), "n_test": n_test,
              "seconds": round(seconds, 1), "checkpoint": str(ckpt.relative_to(REPO)) if ckpt.is_relative_to(REPO)
              else str(ckpt), **extra})

    row("float", None, None, float_acc, 0.0)
    if args.timing_only:
        timing(model, name, calib, emit, args)
        return
    observer = act_observer()
    w4_methods = list(args.ptq_w4 if args.ptq_w4 is not None else DEFAULT_PTQ_W4)
    if is_vit and args.ptq_w4 is None:
        w4_methods.append("smoothquant,qdrop")
    for bits, method_list in ((8, args.ptq_w8), (4, w4_methods)):
        for methods in method_list:
            start = time.perf_counter()
            try:
                qmodel = nnchip_ptq(model, calib, bits, bits, methods.split(","), args.ptq_iterations)
                acc = top1(qmodel, test_x, test_y)
                row(f"nnchip PTQ {methods}", bits, bits, acc, time.perf_counter() - start,
                    act_observer=observer, ptq_iterations=args.ptq_iterations)
            except Exception as exc:  # noqa: BLE001  (a benchmark row records its failure and goes on)
                row(f"nnchip PTQ {methods}", bits, bits, None, time.perf_counter() - start, error=_one_line(exc))
    for bits in args.qat_bits:
        start = time.perf_counter()
        method = f"nnchip QAT (LSQ, KD, from {args.qat_init})"
        try:
            qmodel = nnchip_ptq(model, calib, bits, bits, args.qat_init.split(","), args.ptq_iterations,
                                quantizer="lsq")
            init_acc = top1(qmodel, test_x, test_y)
            settings = qat(qmodel, model, train_x, train_y, args, vit=is_vit)
            save_weights(qmodel, args.out / f"{name}_w{bits}a{bits}_qat.safetensors")  # for lowering checks
            acc = top1(qmodel, test_x, test_y)
            int_acc = integer_top1(qmodel, test_x, test_y)
            row(method, bits, bits, acc, time.perf_counter() - start, init_acc=init_acc, int_acc=int_acc,
                act_observer=observer, ptq_iterations=args.ptq_iterations, **settings)
        except Exception as exc:  # noqa: BLE001
            row(method, bits, bits, None, time.perf_counter() - start, error=_one_line(exc))
    if not args.skip_brevitas:
        for bits in (8, 4):
            start = time.perf_counter()
            try:
                bq = brevitas_ptq(model, calib, bits, bits, num_classes=10)
                acc = top1(bq, test_x, test_y)
                row("Brevitas PTQ (layerwise, per-channel, graph-eq, GPTQ act-order, bias corr)", bits, bits, acc,
                    time.perf_counter() - start)
            except Exception as exc:  # noqa: BLE001
                row("Brevitas PTQ", bits, bits, None, time.perf_counter() - start, error=_one_line(exc))
    if not args.skip_timing:
        timing(model, name, calib, emit, args)


def timing(model: nn.Module, name: str, calib: Tensor, emit: Callable[[dict], None], args: argparse.Namespace) -> None:
    from nnchip.core import compiled
    from nnchip.quant import quantize

    x = calib[:128]
    y = torch.randint(0, 10, (x.shape[0],), generator=torch.Generator().manual_seed(0))
    float_model = copy.deepcopy(model)
    qmodel = quantize(model, quant_config(4, 4, "lsq"), example_inputs=x[:2])
    with torch.no_grad():
        qmodel.eval()
        qmodel(x)
    models: dict[str, nn.Module] = {"float": float_model, "nnchip_w4a4": qmodel}
    record: dict[str, Any] = {"model": name, "method": "QAT step time", "batch": 128, "threads": args.threads,
                              "timing": "median of 50 steps after 10 warm-up, models interleaved step by step",
                              "compiled_fake_quant": compiled.available() and torch.get_num_threads() == 1}
    if args.compile:  # TrainConfig(compile=True): the first warm-up step compiles
        models["nnchip_w4a4_torch_compile"] = torch.compile(copy.deepcopy(qmodel))
    if not args.skip_brevitas:
        try:
            bq = brevitas_quantize(model, 4, 4, num_classes=10, equalize=False)
            with torch.no_grad():
                bq.eval()
                bq(x)
            models["brevitas_w4a4"] = bq
        except Exception as exc:  # noqa: BLE001
            record.update(brevitas_error=_one_line(exc))
    seconds = dict(zip(models, median_step_seconds(list(models.values()), x, y), strict=True))
    record["float_step_s"] = seconds["float"]
    ratio_keys = {"nnchip_w4a4": "nnchip_ratio", "nnchip_w4a4_torch_compile": "nnchip_torch_compile_ratio",
                  "brevitas_w4a4": "brevitas_ratio"}
    for label, ratio_key in ratio_keys.items():
        if label in seconds:
            record.update({f"{label}_step_s": seconds[label], ratio_key: seconds[label] / seconds["float"]})
    emit(record)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", nargs="*", type=Path,
                        help="safetensors checkpoints (default: benchmarks/checkpoints/*_cifar10.safetensors)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "nnchip-out" / "bench_quant_cifar")
    parser.add_argument("--calib", type=int, default=512)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--ptq-iterations", type=int, default=300)
    parser.add_argument("--ptq-w8", nargs="*", default=["calibrate", "calibrate,bias_correction"])
    parser.add_argument("--ptq-w4", nargs="*",
                        help=f"default: {' '.join(DEFAULT_PTQ_W4)} (+ smoothquant,qdrop on ViTs)")
    parser.add_argument("--qat-bits", nargs="*", type=int, default=[4, 2])
    parser.add_argument("--qat-steps", type=int, default=300)
    parser.add_argument("--qat-lr", type=float, default=0.002,
                        help="SGD learning rate (CNNs; BN is folded, so the float recipe's rates diverge)")
    parser.add_argument("--qat-lr-vit", type=float, default=1e-4, help="AdamW learning rate (ViTs)")
    parser.add_argument("--qat-init", default="calibrate",
                        help="PTQ method(s) that initialise QAT, comma-separated (e.g. qdrop)")
    parser.add_argument("--qat-warmup", type=float, default=0.0, help="linear warm-up, fraction of the QAT steps")
    parser.add_argument("--qat-distill-alpha", type=float, default=0.5, help="weight of the distillation term")
    parser.add_argument("--qat-temperature", type=float, default=1.0, help="distillation temperature")
    parser.add_argument("--qat-quant-lr-scale", type=float, default=1.0,
                        help="learning rate of the LSQ step sizes as a multiple of the QAT learning rate")
    parser.add_argument("--skip-brevitas", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true", help="only the QAT step-time ratios (quiet machine)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the QAT step through torch.compile (TrainConfig.compile)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    checkpoints = args.checkpoints or sorted((REPO / "benchmarks" / "checkpoints").glob("*cifar10*.safetensors"))
    if not checkpoints:
        print("no checkpoints found under benchmarks/checkpoints", file=sys.stderr)
        return 2
    data = load_cifar(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []

    def emit(record: dict) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)
        tmp = args.out / "summary.json.tmp"
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(args.out / "summary.json")

    for ckpt in checkpoints:
        run_model(ckpt, args, data, emit)
    print(markdown_table(records))
    return 0


def markdown_table(records: list[dict]) -> str:
    lines = ["| model | method | W/A bits | top-1 % | Δ vs float (pp) | time (s) |", "|---|---|---|---|---|---|"]
    for r in records:
        if r.get("method") == "QAT step time":
            continue
        acc = "error: " + r["error"] if r.get("acc") is None else f"{100 * r['acc']:.2f}"
        bits = "float" if r["w_bits"] is None else f"W{r['w_bits']}A{r['a_bits']}"
        delta = "" if r.get("delta_pp") is None else f"{r['delta_pp']:+.2f}"
        lines.append(f"| {r['model']} | {r['method']} | {bits} | {acc} | {delta} | {r['seconds']} |")
    for r in records:
        if r.get("method") == "QAT step time":
            b = f"{r['brevitas_ratio']:.2f}×" if "brevitas_ratio" in r else r.get("brevitas_error", "n/a")
            compiled = f", with torch.compile {r['nnchip_torch_compile_ratio']:.2f}×" if (
                "nnchip_torch_compile_ratio" in r) else ""
            lines.append(f"\nQAT step ÷ float step, {r['model']} (batch 128, {r['threads']} threads, median of 50): "
                         f"nnchip {r['nnchip_ratio']:.2f}×{compiled}, Brevitas {b} "
                         f"(float step {1000 * r['float_step_s']:.0f} ms)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
