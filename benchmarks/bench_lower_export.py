"""Issue-3 benchmark: integer interpreter vs float eager, lower+export time, packed size, fake vs integer top-1.

    python benchmarks/bench_lower_export.py [--cifar ../shared/data/cifar10/cifar10-jpeg.tar.gz]

Prints ratios measured in this run (medians of repeated timings) and writes them as JSON to --out.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nnchip import QuantConfig, calibrate, quantize
from nnchip.export import export
from nnchip.lower import fused, lower, run
from nnchip.lower.interpreter import reference_step
from nnchip.lower.intgraph import IntNode
from nnchip.lower.plan import Context, plan_for
from nnchip.models import build
from nnchip.quant import default_act_spec, default_weight_spec

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


def median_seconds(fn, repeats: int = 7, warmup: int = 2) -> float:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantized(name: str, options: dict, shape: tuple[int, ...], config: QuantConfig):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build(name, **options).eval()
    x = torch.randn(*shape)
    qmodel = calibrate(quantize(model, config, example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    return model, qmodel, graph, x, x_int


def interpreter_ratio(name: str, options: dict, shape: tuple[int, ...], blocks: int = 7, runs: int = 4) -> dict:
    """Whole model: integer interpreter (fetching the output) vs the float32 eager forward, same batch. Measured
    in alternating blocks (`runs` float forwards, then `runs` integer runs, repeated), so that both see the same
    machine load while each runs in its steady state; per block the ratio of the median times, reported as the
    median over blocks with its quartiles (the first block is a warm-up)."""
    model, _, graph, x, x_int = quantized(name, options, shape, QuantConfig())
    float_times, int_times, ratios = [], [], []
    with torch.no_grad():
        for block in range(blocks + 1):
            block_float = [_seconds(lambda: model(x)) for _ in range(runs)]
            block_int = [_seconds(lambda: run(graph, x_int, keep="outputs").outputs(graph)) for _ in range(runs)]
            if block:
                float_times += block_float
                int_times += block_int
                ratios.append(statistics.median(block_float) / statistics.median(block_int))
    quartiles = statistics.quantiles(ratios, n=4)
    paths = plan_for(graph, reference_step).paths
    return {"model": name, "options": options, "batch": shape[0], "threads": torch.get_num_threads(),
            "fused_kernels": fused.available(), "float_ms": 1e3 * statistics.median(float_times),
            "int_ms": 1e3 * statistics.median(int_times), "throughput_ratio": statistics.median(ratios),
            "ratio_quartiles": [quartiles[0], quartiles[2]],
            "reference_nodes": sorted(n.op for n in graph.nodes if paths[n.name] == "reference")}


def _seconds(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _float_softmax(t: torch.Tensor, n: IntNode) -> torch.Tensor:
    return F.softmax(t, dim=int(n.attrs["dim"]))


def _float_layernorm(t: torch.Tensor, n: IntNode) -> torch.Tensor:
    return F.layer_norm(t, t.shape[-1:], torch.ones(t.shape[-1]), torch.zeros(t.shape[-1]))


def _float_gelu(t: torch.Tensor, n: IntNode) -> torch.Tensor:
    return F.gelu(t)


def _each(functions: list, arguments: list[tuple]) -> None:  # type: ignore[type-arg]
    for function, args in zip(functions, arguments, strict=True):
        function(*args)


def nonlinear_ratio(name: str, options: dict, shape: tuple[int, ...]) -> list[dict]:
    """Integer Shiftmax / LayerNorm / GELU-table nodes vs torch's float32 softmax / layer_norm / gelu on the
    same shapes: summed over the model's nodes of each kind, medians of repeated timings."""
    _, qmodel, graph, _, x_int = quantized(name, options, shape, QuantConfig())
    result = run(graph, x_int)
    plan = plan_for(graph, reference_step)
    context = Context("error", [], shape[0])
    rows = []
    for op, float_op in (("softmax", _float_softmax), ("layernorm", _float_layernorm), ("lut", _float_gelu)):
        steps = [(node, step) for node, step in plan.steps if node.op == op]
        if not steps:
            continue
        int_args = [[result.tensors[i].to(plan.storage[i]) for i in node.inputs] for node, _ in steps]
        float_args = [args[0].float() for args in int_args]
        int_s = median_seconds(functools.partial(_each, [step for _, step in steps], [(a, context) for a in int_args]))
        float_s = median_seconds(functools.partial(_each, [functools.partial(float_op, n=n) for n, _ in steps],
                                                   [(t,) for t in float_args]))
        rows.append({"model": name, "options": options, "op": op, "nodes": len(steps),
                     "threads": torch.get_num_threads(), "shape": list(int_args[0][0].shape),
                     "float_ms": 1e3 * float_s, "int_ms": 1e3 * int_s, "throughput_ratio": float_s / int_s})
    return rows


def export_timing() -> dict:
    torch.manual_seed(0)
    model = build("resnet18", num_classes=1000, image_size=224).eval()
    x = torch.randn(2, 3, 224, 224)
    qmodel = calibrate(quantize(model, QuantConfig(), example_inputs=x[:1]), [x])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        graph = lower(qmodel)
        export(graph, Path(tmp) / "bin", formats=("npy", "bin"))
        binary_s = time.perf_counter() - start
        start = time.perf_counter()
        export(graph, Path(tmp) / "hex", formats=("npy", "hex"))
        hex_s = time.perf_counter() - start
        manifest = json.loads((Path(tmp) / "bin" / "manifest.json").read_text())
        packed = sum((Path(tmp) / "bin" / e["bin"]).stat().st_size for n in manifest["nodes"]
                     for e in n["params"].values() if "bin" in e)
        ideal = sum(int(torch.tensor(e["shape"]).prod()) * e["bits"] / 8 for n in manifest["nodes"]
                    for e in n["params"].values() if "bin" in e)
    return {"resnet18_lower_export_npy_bin_s": binary_s, "resnet18_export_npy_hex_s": hex_s,
            "packed_over_ideal": packed / ideal}


def digits_accuracy() -> list[dict]:
    from nnchip.data import load_digits_split
    from nnchip.train import TrainConfig, evaluate, train

    split = load_digits_split()
    rows = []
    for name, train_options in (("cnn_tiny", {"lr": 0.05}), ("vit_tiny", {"lr": 3e-3, "optimizer": "adamw",
                                                                           "weight_decay": 0.05})):
        torch.manual_seed(0)
        model = build(name)
        train(model, split.train, TrainConfig(epochs=15, batch_size=64, schedule="onecycle", progress=False,
                                              **train_options))
        for bits in (8, 4):
            config = QuantConfig(weight=default_weight_spec(bits), act=default_act_spec(bits))
            qmodel = calibrate(quantize(model, config, example_inputs=split.train.tensors[0][:2]),
                               [split.train.tensors[0][:512]])
            graph = lower(qmodel)
            x, y = split.test.tensors
            x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
            logits = run(graph, x_int).tensors[graph.outputs[0]]
            rows.append({"model": name, "bits": f"W{bits}A{bits}", "float_acc": evaluate(model, split.test),
                         "fake_quant_acc": evaluate(qmodel, split.test),
                         "int_acc": float((logits.argmax(-1) == y).float().mean())})
    return rows


def cifar_accuracy(path: str, limit: int) -> list[dict]:
    """Reference checkpoints (ResNet-20, small ViT): fake-quant vs integer top-1 on the CIFAR-10 test split."""
    from nnchip.data import load_cifar10_tar
    from nnchip.train import evaluate, load_weights

    split = load_cifar10_tar(path)
    stride = max(1, len(split.test) // limit)  # the split is ordered by class: take every stride-th image
    x, y = split.test.tensors[0][::stride][:limit], split.test.tensors[1][::stride][:limit]
    calib = split.train.tensors[0][:512]
    rows = []
    for name in ("resnet20", "vit_tiny"):
        options = json.loads((CHECKPOINTS / f"{name}_cifar10.json").read_text())["model_options"]
        model = load_weights(build(name, num_classes=10, **options), CHECKPOINTS / f"{name}_cifar10.safetensors")
        model.eval()
        for bits in (8, 4):
            config = QuantConfig(weight=default_weight_spec(bits), act=default_act_spec(bits))
            qmodel = calibrate(quantize(model, config, example_inputs=calib[:2]), [calib])
            graph = lower(qmodel)
            correct = 0
            for start in range(0, len(x), 250):
                x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x[start:start + 250]).to(torch.int64)
                logits = run(graph, x_int).tensors[graph.outputs[0]]
                correct += int((logits.argmax(-1) == y[start:start + 250]).sum())
            test = torch.utils.data.TensorDataset(x, y)
            rows.append({"model": f"{name} (CIFAR-10)", "bits": f"W{bits}A{bits}", "float_acc": evaluate(model, test),
                         "fake_quant_acc": evaluate(qmodel, test), "int_acc": correct / len(x)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts for the interpreter ratios")
    parser.add_argument("--interpreter-only", action="store_true", help="skip export timing and accuracy tables")
    parser.add_argument("--out", default=None)
    parser.add_argument("--cifar", default=None, help="CIFAR-10 ImageFolder .tar.gz: adds the ResNet-20 table")
    parser.add_argument("--cifar-limit", type=int, default=10_000, help="test images used for the CIFAR table")
    parser.add_argument("--accuracy-only", action="store_true", help="only the fake-quant vs integer tables")
    args = parser.parse_args()
    vit = {"in_channels": 3, "image_size": 32, "patch": 4, "dim": 128, "depth": 6, "heads": 4}
    vit_attention_heavy = {"in_channels": 3, "image_size": 32, "patch": 2, "dim": 64, "depth": 2, "heads": 8}
    results: dict = {"interpreter": [], "nonlinear": []}
    for threads in ([] if args.accuracy_only else [int(t) for t in args.threads.split(",")]):
        torch.set_num_threads(threads)
        results["interpreter"] += [interpreter_ratio("resnet20", {}, (64, 3, 32, 32)),
                                   interpreter_ratio("vit_tiny", vit, (64, 3, 32, 32)),
                                   interpreter_ratio("vit_tiny", vit_attention_heavy, (64, 3, 32, 32))]
        results["nonlinear"] += (nonlinear_ratio("vit_tiny", vit, (64, 3, 32, 32))
                                 + nonlinear_ratio("vit_tiny", vit_attention_heavy, (64, 3, 32, 32)))
    for row in results["interpreter"]:
        tokens = "" if row["model"] == "resnet20" else f" patch {row['options']['patch']}"
        print(f"{row['model']:<10}{tokens:<8} batch {row['batch']} threads {row['threads']}: float "
              f"{row['float_ms']:.1f} ms, integer {row['int_ms']:.1f} ms, throughput ratio "
              f"{row['throughput_ratio']:.2f} (quartiles {row['ratio_quartiles'][0]:.2f}-"
              f"{row['ratio_quartiles'][1]:.2f})")
    for row in results["nonlinear"]:
        print(f"{row['model']:<10} patch {row['options']['patch']:<2} {row['op']:<9} x{row['nodes']} {row['shape']} "
              f"threads {row['threads']}: float {row['float_ms']:.2f} ms, integer {row['int_ms']:.2f} ms, "
              f"throughput ratio {row['throughput_ratio']:.2f}")
    if args.interpreter_only:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
        return
    torch.set_num_threads(2)
    results["export"] = {} if args.accuracy_only else export_timing()
    results["digits"] = digits_accuracy()
    if args.cifar:
        results["digits"] += cifar_accuracy(args.cifar, args.cifar_limit)
    for key, value in results["export"].items():
        print(f"{key}: {value:.3f}")
    for row in results["digits"]:
        print(f"{row['model']:<9} {row['bits']}: float {100 * row['float_acc']:.2f}  fake-quant "
              f"{100 * row['fake_quant_acc']:.2f}  integer {100 * row['int_acc']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
