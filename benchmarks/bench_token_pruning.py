"""Issue-5 benchmark on CIFAR-10 ViT: token pruning with a package token (EViT-style), float and integer.

Rows, all on `benchmarks/checkpoints/vit_tiny_cifar10.safetensors` (6 blocks, 64 patch tokens + class token):
  * float (unpruned);
  * token keep 0.7 in every block, one-shot (no training), then after `--steps` AdamW fine-tune steps
    (batch 128, lr `--lr` cosine, no augmentation) with the selection in place;
  * the same keep ratio chosen against modeled latency instead (`keep_ratio_for_latency`, target `--target`
    × the unpruned compute cycles on a 16×16 weight-stationary systolic array), one-shot;
  * W8A8 (default QuantConfig, PTQ calibration on `--calib` training images) of the fine-tuned keep-0.7
    model and, for reference, of the unpruned model: fake-quant top-1, the integer model's top-1 (IntGraph
    interpreter), how often the fake-quant model predicts the integer model's class and keeps the same tokens,
    and whether the deploy forward and the interpreter agree bit for bit on a test batch.
MACs per image (conv/linear/attention GEMMs) and modeled cycles (16×16 WS and 32×32 OS arrays) before/after.
Top-1 on `--test-images` test images (every k-th; the test set is sorted by class; default all 10 000).

    python benchmarks/bench_token_pruning.py [--threads 1] [--steps 150] [--test-images 10000] [--out DIR]
Writes OUT/summary.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.token_select import class_attention_scores, kept_token_indices
from nnchip.data import load_cifar10_tar
from nnchip.lower import lower, run
from nnchip.models import build
from nnchip.prune import PruneConfig, TokenPruneConfig, compression_report, finetune, prune_tokens, token_counts
from nnchip.prune.token_latency import keep_ratio_for_latency, modeled_cycles
from nnchip.quant.deploy import deploy_forward
from nnchip.train import load_weights

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
CHECKPOINT = REPO / "benchmarks" / "checkpoints" / "vit_tiny_cifar10.safetensors"
ARRAYS = (("ws16", 16, 16, "ws"), ("os32", 32, 32, "os"))


def top1(model: nn.Module, x: Tensor, y: Tensor, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def costs(model: nn.Module, dense: nn.Module, x1: Tensor) -> dict[str, Any]:
    report = compression_report(dense, model, x1)
    out: dict[str, Any] = {"macs": report["macs_after"], "mac_reduction": report["mac_reduction"],
                           "tokens": token_counts(model)}
    for name, rows, cols, dataflow in ARRAYS:
        cycles = modeled_cycles(model, x1, rows=rows, cols=cols, dataflow=dataflow)
        out[f"cycles_{name}"] = cycles
        out[f"latency_reduction_{name}"] = 1.0 - cycles / modeled_cycles(dense, x1, rows=rows, cols=cols,
                                                                         dataflow=dataflow)
    return out


def integer_top1(qmodel: nn.Module, x: Tensor, y: Tensor, batch: int = 250) -> dict[str, Any]:
    """Integer top-1 through the IntGraph interpreter; agreement of the fake-quant model with it (predictions,
    and kept-token sets of every token_select node per image); deploy forward == interpreter on batch 1."""
    graph = lower(qmodel)
    quantizer = qmodel.gm.get_submodule(graph.inputs[0])
    selects = [n for n in graph.nodes if n.op == "token_select"]
    probs_targets = {str(n.target): n.name for n in qmodel.gm.graph.nodes if n.name in {s.inputs[1] for s in selects}}
    correct = same_prediction = same_selection = 0
    exact = True
    for i in range(0, x.shape[0], batch):
        x_int = quantizer.int_values(x[i:i + batch]).to(torch.int64)
        tensors = run(graph, x_int).tensors
        prediction = tensors[graph.outputs[0]].argmax(1)
        correct += int((prediction == y[i:i + batch]).sum())
        caught: dict[str, Tensor] = {}
        hooks = [qmodel.gm.get_submodule(target).register_forward_hook(
            lambda m, args, out, name=name, caught=caught: caught.__setitem__(
                name, m.int_values(args[0]).to(torch.int64)))
            for target, name in probs_targets.items()]
        with torch.no_grad():
            same_prediction += int((qmodel(x[i:i + batch]).argmax(1) == prediction).sum())
        for hook in hooks:
            hook.remove()
        for node in selects:
            keep = int(node.attrs["keep"])
            fake_kept = kept_token_indices(class_attention_scores(caught[node.inputs[1]]), keep)
            int_kept = kept_token_indices(class_attention_scores(tensors[node.inputs[1]]), keep)
            same_selection += int((fake_kept == int_kept).all(dim=1).sum())
        if i == 0:
            deployed = deploy_forward(qmodel, x_int)
            exact = all(torch.equal(value, tensors[name]) for name, value in deployed.items())
    n = x.shape[0]
    return {"int_top1": correct / n, "fake_int_same_prediction": same_prediction / n,
            "fake_int_same_selection": same_selection / (n * len(selects)) if selects else None,
            "bit_exact_deploy_vs_interpreter": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--keep", type=float, default=0.7)
    parser.add_argument("--target", type=float, default=0.7, help="modeled-latency target for the search row")
    parser.add_argument("--steps", type=int, default=150, help="fine-tune steps (batch 128)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--calib", type=int, default=512, help="PTQ calibration images")
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--out", default="benchmarks/results/pruning_token")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()
    split = load_cifar10_tar(args.data)
    test_x, test_y = split.test.tensors
    stride = max(1, len(test_y) // args.test_images)
    test_x, test_y = test_x[::stride], test_y[::stride]  # every class equally
    x1 = test_x[:1]
    meta = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    model = load_weights(build(meta["model"], num_classes=10, **meta["model_options"]), CHECKPOINT).eval()
    records: list[dict[str, Any]] = []

    def record(row: str, net: nn.Module, **extra: Any) -> None:
        t = time.perf_counter()
        acc = top1(net, test_x, test_y)
        entry = {"row": row, "top1": acc, **costs(net, model, x1), **extra,
                 "eval_seconds": round(time.perf_counter() - t, 1)}
        records.append(entry)
        print(f"{row}: top-1 {100 * acc:.2f} %, MACs -{100 * entry['mac_reduction']:.1f} %, modeled latency "
              f"-{100 * entry['latency_reduction_ws16']:.1f} % (16×16 WS)", flush=True)

    record("float", model)
    config = TokenPruneConfig(keep_ratio=args.keep)
    one_shot = prune_tokens(model, config, example_inputs=x1)
    record(f"token keep {args.keep}, one-shot", one_shot, config=config.to_dict())
    t = time.perf_counter()
    tuned = finetune(copy.deepcopy(model), split.train, PruneConfig(structure="token", sparsity=1 - args.keep),
                     epochs=1, lr=args.lr, batch_size=128, example_inputs=x1, max_steps=args.steps)
    record(f"token keep {args.keep}, fine-tuned {args.steps} steps", tuned, config=config.to_dict(),
           finetune_seconds=round(time.perf_counter() - t, 1))
    searched, cycles, dense_cycles = keep_ratio_for_latency(model, x1, args.target)
    record(f"latency target {args.target} → keep {searched.keep_ratio}, one-shot",
           prune_tokens(model, searched, example_inputs=x1), config=searched.to_dict())
    t = time.perf_counter()
    calib = split.train.tensors[0][:args.calib]
    qmodel = calibrate(quantize(tuned, QuantConfig(), example_inputs=x1), [calib[i:i + 128]
                                                                          for i in range(0, len(calib), 128)])
    fake_acc = top1(qmodel, test_x, test_y)
    integer = integer_top1(qmodel, test_x, test_y)
    records.append({"row": f"W8A8 token keep {args.keep} (fine-tuned)", "top1": fake_acc, **integer,
                    **costs(tuned, model, x1), "seconds": round(time.perf_counter() - t, 1)})
    print(f"W8A8 pruned: {integer}", flush=True)
    dense_q = calibrate(quantize(model, QuantConfig(), example_inputs=x1), [calib[i:i + 128]
                                                                           for i in range(0, len(calib), 128)])
    records.append({"row": "W8A8 unpruned (reference)", "top1": top1(dense_q, test_x, test_y),
                    **integer_top1(dense_q, test_x, test_y), **costs(model, model, x1)})
    print(f"W8A8 unpruned: {records[-1]}", flush=True)
    total = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"records": records, "seconds": round(total, 1), "threads": args.threads,
               "test_images": len(test_y), "finetune_steps": args.steps, "lr": args.lr,
               "latency_search": {"target": args.target, "cycles": cycles, "dense_cycles": dense_cycles}}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "summary.json")
    float_acc = records[0]["top1"]
    print("\n| row | top-1 % | Δ vs float pp | integer top-1 % | fake = integer class % | same kept tokens % | "
          "MACs removed % | modeled latency removed % (16×16 WS / 32×32 OS) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        integer = f"{100 * r['int_top1']:.2f}" if "int_top1" in r else "–"
        agree = f"{100 * r['fake_int_same_prediction']:.2f}" if "int_top1" in r else "–"
        same = f"{100 * r['fake_int_same_selection']:.2f}" if r.get("fake_int_same_selection") is not None else "–"
        print(f"| {r['row']} | {100 * r['top1']:.2f} | {100 * (r['top1'] - float_acc):+.2f} | {integer} | {agree} | "
              f"{same} | "
              f"{100 * r['mac_reduction']:.1f} | {100 * r['latency_reduction_ws16']:.1f} / "
              f"{100 * r['latency_reduction_os32']:.1f} |")
    print(f"\ntotal {total:.0f} s on {args.threads} thread(s), {len(test_y)} test images")


if __name__ == "__main__":
    main()
