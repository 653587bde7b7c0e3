"""Issue-3 benchmark: integer interpreter vs float eager, lower+export time, packed size, fake vs integer top-1.

    python benchmarks/bench_lower_export.py [--cifar ../shared/data/cifar10/cifar10-jpeg.tar.gz]

Prints ratios measured in this run (medians of repeated timings) and writes them as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nnchip import QuantConfig, calibrate, quantize
from nnchip.export import export
from nnchip.lower import lower, run
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


def interpreter_ratio(name: str, options: dict, shape: tuple[int, ...]) -> dict:
    model, _, graph, x, x_int = quantized(name, options, shape, QuantConfig())
    with torch.no_grad():
        float_s = median_seconds(lambda: model(x))
    int_s = median_seconds(lambda: run(graph, x_int))
    return {"model": name, "batch": shape[0], "float_ms": 1e3 * float_s, "int_ms": 1e3 * int_s,
            "throughput_ratio": float_s / int_s}


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
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--cifar", default=None, help="CIFAR-10 ImageFolder .tar.gz: adds the ResNet-20 table")
    parser.add_argument("--cifar-limit", type=int, default=10_000, help="test images used for the CIFAR table")
    parser.add_argument("--accuracy-only", action="store_true", help="only the fake-quant vs integer tables")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {"interpreter": [], "export": {}, "digits": digits_accuracy()} if args.accuracy_only else {
        "interpreter": [
            interpreter_ratio("resnet20", {}, (64, 3, 32, 32)),
            interpreter_ratio("vit_tiny", {"in_channels": 3, "image_size": 32, "patch": 4, "dim": 128, "depth": 6,
                                           "heads": 4}, (64, 3, 32, 32)),
            interpreter_ratio("vit_tiny", {"in_channels": 3, "image_size": 32, "patch": 2, "dim": 64, "depth": 2,
                                           "heads": 8}, (64, 3, 32, 32)),
        ],
        "export": export_timing(),
        "digits": digits_accuracy(),
    }
    if args.cifar:
        results["digits"] += cifar_accuracy(args.cifar, args.cifar_limit)
    for row in results["interpreter"]:
        print(f"{row['model']:<10} batch {row['batch']}: float {row['float_ms']:.1f} ms, integer "
              f"{row['int_ms']:.1f} ms, throughput ratio {row['throughput_ratio']:.2f}")
    for key, value in results["export"].items():
        print(f"{key}: {value:.3f}")
    for row in results["digits"]:
        print(f"{row['model']:<9} {row['bits']}: float {100 * row['float_acc']:.2f}  fake-quant "
              f"{100 * row['fake_quant_acc']:.2f}  integer {100 * row['int_acc']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
