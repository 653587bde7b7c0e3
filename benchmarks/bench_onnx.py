"""Issue-3 ONNX benchmark: onnxruntime on the integer-op ONNX model vs the IntGraph interpreter (throughput,
exactness), and the QDQ model's agreement with the integer model, whole-model and op by op.

    python benchmarks/bench_onnx.py [--threads 1] [--out onnx.json] [--cifar .../cifar10-jpeg.tar.gz]

ResNet-20 and the small ViT (vit_tiny: 32x32, patch 4, dim 128, depth 6, 4 heads) with random weights,
calibrated on random inputs, batch 64, W8A8 and W4A4. Timings are medians of repeated runs in this process.
With --cifar, the trained reference checkpoints are also scored on CIFAR-10 test images: integer top-1
(interpreter and onnxruntime) and QDQ top-1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from nnchip import QuantConfig, calibrate, quantize
from nnchip.export.onnx_integer import to_onnx_integer
from nnchip.export.onnx_qdq import real_input, to_onnx_qdq
from nnchip.lower import lower, run
from nnchip.lower.intgraph import IntGraph
from nnchip.models import build
from nnchip.quant import default_act_spec, default_weight_spec

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
MODELS = {
    "resnet20": {},
    "vit_tiny": {"in_channels": 3, "image_size": 32, "patch": 4, "dim": 128, "depth": 6, "heads": 4, "mlp_ratio": 2.0},
}
LOCAL_OPS = ("conv2d", "linear", "matmul", "add", "mean", "avgpool", "maxpool", "concat", "requant", "softmax", "lut",
             "layernorm")


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def session(model, threads: int, optimize: bool = True) -> ort.InferenceSession:  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def lowered(name: str, bits: int, batch: int) -> tuple[IntGraph, torch.Tensor]:
    torch.manual_seed(0)
    model = build(name, **MODELS[name]).eval()
    x = torch.randn(batch, 3, 32, 32)
    config = QuantConfig(weight=default_weight_spec(bits), act=default_act_spec(bits))
    qmodel = calibrate(quantize(model, config, example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    return graph, qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)


def agreement(got: np.ndarray, want: np.ndarray) -> dict:
    return {"equal_fraction": float((got == want).mean()), "max_lsb": int(np.abs(got - want).max()),
            "top1_agreement": float((got.argmax(-1) == want.argmax(-1)).mean())}


def local_qdq(graph: IntGraph, tensors: dict, threads: int) -> dict:
    """Each op alone in a QDQ model, fed the integer model's exact inputs: equal fraction and max LSB per op."""
    constants = {n.output for n in graph.nodes if n.op == "constant"}
    per_op: dict[str, list[tuple[int, int, int]]] = {}
    for node in graph.nodes:
        if node.op not in LOCAL_OPS or any(i in constants for i in node.inputs):
            continue
        inputs = list(dict.fromkeys(node.inputs))
        single = IntGraph(graph.tensors, [node], inputs, [node.output])
        feeds = {name: real_input(single, tensors[name].numpy(), name) for name in inputs}
        got = session(to_onnx_qdq(single), threads).run(None, feeds)[0]
        want = tensors[node.output].numpy()
        per_op.setdefault(node.op, []).append((int((got == want).sum()), int(want.size),
                                               int(np.abs(got - want).max())))
    return {op: {"equal_fraction": sum(r[0] for r in rows) / sum(r[1] for r in rows),
                 "max_lsb": max(r[2] for r in rows), "nodes": len(rows)} for op, rows in per_op.items()}


def measure(name: str, bits: int, batch: int, threads: int, repeats: int) -> dict:
    graph, x_int = lowered(name, bits, batch)
    start = time.perf_counter()
    integer_model = to_onnx_integer(graph)
    qdq_model = to_onnx_qdq(graph)
    convert_s = time.perf_counter() - start
    reference = run(graph, x_int)
    want = reference.tensors[graph.outputs[0]].numpy()
    integer = session(integer_model, threads)
    feed = {graph.inputs[0]: x_int.numpy()}
    got = integer.run(None, feed)[0]
    interpreter_s = median_seconds(lambda: run(graph, x_int), repeats)
    onnx_s = median_seconds(lambda: integer.run(None, feed), repeats)
    qdq = session(qdq_model, threads)
    qdq_feed = {graph.inputs[0]: real_input(graph, x_int.numpy())}
    qdq_s = median_seconds(lambda: qdq.run(None, qdq_feed), repeats)
    return {
        "model": name, "bits": f"W{bits}A{bits}", "batch": batch, "nodes": len(graph.nodes),
        "ops": sorted({n.op for n in graph.nodes}), "convert_s": convert_s,
        "interpreter_ms": 1e3 * interpreter_s, "onnx_integer_ms": 1e3 * onnx_s, "onnx_qdq_ms": 1e3 * qdq_s,
        "onnx_over_interpreter_throughput": interpreter_s / onnx_s,
        "integer_exact": bool(np.array_equal(got, want)), "integer_equal_fraction": float((got == want).mean()),
        "qdq_ort_optimized": agreement(qdq.run(None, qdq_feed)[0], want),
        "qdq_ort_unoptimized": agreement(session(qdq_model, threads, optimize=False).run(None, qdq_feed)[0], want),
        "qdq_per_op": local_qdq(graph, reference.tensors, threads),
    }


def cifar_rows(path: str, limit: int, threads: int) -> list[dict]:
    """Reference checkpoints on `limit` CIFAR-10 test images: integer (interpreter, onnxruntime) vs QDQ top-1."""
    from nnchip.data import load_cifar10_tar
    from nnchip.train import load_weights

    split = load_cifar10_tar(path)
    stride = max(1, len(split.test) // limit)  # the split is ordered by class: take every stride-th image
    x, y = split.test.tensors[0][::stride][:limit], split.test.tensors[1][::stride][:limit].numpy()
    calib = split.train.tensors[0][:512]
    rows = []
    for name in MODELS:
        options = json.loads((CHECKPOINTS / f"{name}_cifar10.json").read_text())["model_options"]
        model = load_weights(build(name, **options), CHECKPOINTS / f"{name}_cifar10.safetensors").eval()
        for bits in (8, 4):
            config = QuantConfig(weight=default_weight_spec(bits), act=default_act_spec(bits))
            qmodel = calibrate(quantize(model, config, example_inputs=calib[:2]), [calib])
            graph = lower(qmodel)
            x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
            want = np.concatenate([run(graph, x_int[i:i + 250]).tensors[graph.outputs[0]].numpy()
                                   for i in range(0, len(x_int), 250)])
            got = session(to_onnx_integer(graph), threads).run(None, {graph.inputs[0]: x_int.numpy()})[0]
            qdq = session(to_onnx_qdq(graph), threads).run(None, {graph.inputs[0]: real_input(graph, x_int.numpy())})[0]
            rows.append({"model": name, "bits": f"W{bits}A{bits}", "images": len(y),
                         "int_top1": float((want.argmax(-1) == y).mean()),
                         "onnx_integer_top1": float((got.argmax(-1) == y).mean()),
                         "onnx_integer_exact": bool(np.array_equal(got, want)),
                         "qdq_top1": float((qdq.argmax(-1) == y).mean()), **agreement(qdq, want)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--cifar", default=None, help="CIFAR-10 ImageFolder .tar.gz: adds the checkpoint table")
    parser.add_argument("--cifar-limit", type=int, default=1000, help="test images used for the CIFAR table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ort.set_default_logger_severity(3)
    rows = [measure(name, bits, args.batch, args.threads, args.repeats) for name in MODELS for bits in (8, 4)]
    for r in rows:
        print(f"{r['model']:<9} {r['bits']} batch {r['batch']}: interpreter {r['interpreter_ms']:.1f} ms, onnxruntime "
              f"integer {r['onnx_integer_ms']:.1f} ms (x{r['onnx_over_interpreter_throughput']:.2f} throughput), "
              f"exact {r['integer_exact']} ({r['integer_equal_fraction']:.4f} equal); QDQ {r['onnx_qdq_ms']:.1f} ms")
        for key in ("qdq_ort_optimized", "qdq_ort_unoptimized"):
            a = r[key]
            print(f"    {key}: equal {a['equal_fraction']:.4f}, max {a['max_lsb']} LSB, top-1 agreement "
                  f"{a['top1_agreement']:.4f}")
        for op, a in sorted(r["qdq_per_op"].items()):
            print(f"    QDQ alone {op:<10} ({a['nodes']:>2} nodes): equal {a['equal_fraction']:.4f}, "
                  f"max {a['max_lsb']} LSB")
    results: dict = {"random_weights": rows}
    if args.cifar:
        results["cifar10"] = cifar_rows(args.cifar, args.cifar_limit, args.threads)
        for r in results["cifar10"]:
            print(f"{r['model']:<9} {r['bits']} CIFAR-10 ({r['images']} images): integer top-1 "
                  f"{100 * r['int_top1']:.2f}, onnxruntime integer {100 * r['onnx_integer_top1']:.2f} (exact "
                  f"{r['onnx_integer_exact']}), QDQ {100 * r['qdq_top1']:.2f} (top-1 agreement "
                  f"{r['top1_agreement']:.4f}, equal {r['equal_fraction']:.4f}, max {r['max_lsb']} LSB)")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
