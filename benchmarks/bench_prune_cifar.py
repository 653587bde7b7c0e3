"""Issue-5 benchmark on CIFAR-10 ResNet-20 and ViT: top-1 vs sparsity per pruning structure, with a short fine-tune.

Rows (same reference checkpoint, same fine-tune budget for every row): unstructured magnitude 50/75/90 %
(per layer, first and last layer dense), 2:4 N:M, channel 30/50 % (dependency-aware, physically removed).
For each: one-shot top-1 (no fine-tune), top-1 after `--steps` AdamW steps (batch 128, lr 1e-3 cosine, masks
kept), density of the pruned layers, and the parameter / MAC reductions actually achieved (non-zero weights,
MACs on non-zero weights per image). Top-1 on `--test-images` test images, every k-th (the
test set is sorted by class; default all 10 000).
`--model vit_tiny`: the ViT reference and its row "ViT block 50 %" (8×8 blocks of every linear but the patch
embedding and the head, second-order Taylor scores from `--calib-images` training images, 50 % of the model's
MACs removed), with the FLOPs, modeled latency and energy reductions achieved (nnchip.prune.budget); for
comparison the same with magnitude scores, with a 50 % modeled-latency budget, and unstructured 50 %.

    python benchmarks/bench_prune_cifar.py --threads 2 [--steps 150] [--test-images 10000] [--out DIR]
    python benchmarks/bench_prune_cifar.py --model vit_tiny --threads 1 [--steps 60] [--test-images 2000]
Budget: about 20 minutes on 2 free cores with --steps 150; on a shared machine use fewer steps/images.
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
from torch.utils.data import Subset

from nnchip.data import load_cifar10_tar
from nnchip.models import build
from nnchip.prune import PruneConfig, compression_report, finetune, prune, sparsity_report
from nnchip.prune.budget import budget_report
from nnchip.train import evaluate, load_weights

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
CHECKPOINTS = {name: REPO / "benchmarks" / "checkpoints" / f"{name}_cifar10.safetensors"
               for name in ("resnet20", "vit_tiny")}
ROWS: tuple[tuple[str, PruneConfig], ...] = (
    ("unstructured 50 %", PruneConfig(structure="unstructured", sparsity=0.5)),
    ("unstructured 75 %", PruneConfig(structure="unstructured", sparsity=0.75)),
    ("unstructured 90 %", PruneConfig(structure="unstructured", sparsity=0.9)),
    ("2:4", PruneConfig(structure="nm", n=2, m=4)),
    ("channel 30 %", PruneConfig(structure="channel", sparsity=0.3)),
    ("channel 50 %", PruneConfig(structure="channel", sparsity=0.5)),
)
VIT_ROWS: tuple[tuple[str, PruneConfig], ...] = (
    ("ViT block 50 %", PruneConfig(structure="block", block_shape=(8, 8), score="taylor2", budget="flops",
                                   sparsity=0.5)),
    ("ViT block 50 % (magnitude scores)", PruneConfig(structure="block", block_shape=(8, 8), score="magnitude",
                                                      budget="flops", sparsity=0.5)),
    ("ViT block 50 % latency budget", PruneConfig(structure="block", block_shape=(8, 8), score="taylor2",
                                                  budget="latency", sparsity=0.5)),
    ("ViT unstructured 50 % (reference)", PruneConfig(structure="unstructured", sparsity=0.5)),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--model", choices=tuple(CHECKPOINTS), default="resnet20")
    parser.add_argument("--calib-images", type=int, default=256, help="block rows: images for the Taylor scores")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="fine-tune steps per row (batch 128)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--out", default=None, help="default benchmarks/results/pruning (ViT: pruning_block)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_cifar10_tar(args.data)
    x1 = split.test.tensors[0][:1]
    stride = max(1, len(split.test) // args.test_images)
    test = Subset(split.test, range(0, len(split.test), stride))  # every class equally
    checkpoint = CHECKPOINTS[args.model]
    options = json.loads(checkpoint.with_suffix(".json").read_text()).get("model_options", {})
    model = load_weights(build(args.model, num_classes=10, **options), checkpoint).eval()
    calib = split.train.tensors[0][::max(1, len(split.train) // args.calib_images)][:args.calib_images]
    started = time.perf_counter()
    float_acc = evaluate(model, test)
    records: list[dict[str, Any]] = [{"row": "float", "structure": "dense", "top1_one_shot": float_acc,
                                      "top1": float_acc, "param_reduction": 0.0, "mac_reduction": 0.0}]
    print(f"float top-1 {100 * float_acc:.2f} %", flush=True)
    for name, config in ROWS if args.model == "resnet20" else VIT_ROWS:
        t = time.perf_counter()
        inputs = calib if config.uses_calibration else x1
        one_shot = prune(model, config, example_inputs=inputs)
        one_shot_acc = evaluate(one_shot, test)
        tuned = finetune(copy.deepcopy(model), split.train, config, epochs=1, lr=args.lr, batch_size=128,
                         example_inputs=inputs, max_steps=args.steps)
        acc = evaluate(tuned, test)
        report = compression_report(model, tuned, x1)
        if config.structure == "block":
            report["budget"] = budget_report(tuned, config, x1)
        pruned_layers = [r.density for r in sparsity_report(tuned)][1:-1]
        record = {"row": name, "structure": config.structure, "config": config.to_dict(),
                  "top1_one_shot": one_shot_acc, "top1": acc, "delta_vs_float_pp": 100 * (acc - float_acc),
                  "mean_density_pruned_layers": sum(pruned_layers) / len(pruned_layers),
                  "finetune_steps": args.steps, "seconds": round(time.perf_counter() - t, 1), **report}
        records.append(record)
        print(f"{name}: one-shot {100 * one_shot_acc:.2f} %, fine-tuned {100 * acc:.2f} %, params -"
              f"{100 * report['param_reduction']:.1f} %, MACs -{100 * report['mac_reduction']:.1f} % "
              f"({record['seconds']} s)", flush=True)
        if "budget" in report:
            print("  removed: " + ", ".join(f"{key} {100 * report['budget'][key]['removed']:.1f} %"
                                            for key in ("sparsity", "flops", "latency", "energy")), flush=True)
    total = time.perf_counter() - started
    out = Path(args.out or ("benchmarks/results/pruning" if args.model == "resnet20" else
                            "benchmarks/results/pruning_block"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"records": records, "seconds": round(total, 1),
                                                  "threads": args.threads, "test_images": len(test),
                                                  "model": args.model}, indent=2)
                                      + "\n")
    print("\n| structure | one-shot top-1 % | fine-tuned top-1 % | Δ vs float pp | non-zero params removed % "
          "| MACs removed % |")
    print("|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['row']} | {100 * r['top1_one_shot']:.2f} | {100 * r['top1']:.2f} | "
              f"{100 * (r['top1'] - float_acc):+.2f} | {100 * r['param_reduction']:.1f} | "
              f"{100 * r['mac_reduction']:.1f} |")
    print(f"\ntotal {total:.0f} s on {args.threads} threads")


if __name__ == "__main__":
    main()
