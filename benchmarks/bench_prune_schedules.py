"""Issue-5 schedules on CIFAR-10 ResNet-20: one-shot vs cubic vs prune-and-regrow at 75 % unstructured sparsity
(same fine-tune steps), and nested levels 50/75/90 % from one model.

Rows (the reference checkpoint, first conv and classifier dense, per-layer magnitude, AdamW batch 128, lr 1e-3
cosine, `--steps` steps each):
  one-shot          prune to 75 % at step 0, fine-tune with the masks fixed
  cubic             `--cubic-steps` pruning steps (cubic schedule from 0) over the first half of the steps
  prune-and-regrow  75 % at step 0; every `--regrow-every` steps drop α/2·(1+cos(πt/T_end)) of the kept weights
                    (smallest |w|) and regrow as many (largest |gradient|), α = 0.3, T_end = 0.75·steps
  nested 50/75/90   one set of weights, nested masks, sandwich rule (each step sums the losses of the three
                    levels: 3 forward/backward passes per step), BatchNorm statistics frozen; top-1 of every
                    level of the one model, next to dedicated one-shot 50 % and 90 % models
Top-1 on `--test-images` test images, every k-th (the test split is ordered by class).

    PYTHONPATH=src python benchmarks/bench_prune_schedules.py --threads 1 --steps 150 --test-images 2000
Writes OUT.json and OUT.md (default benchmarks/results/pruning_schedules) and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from nnchip.core.nested_mask import set_sparsity_level
from nnchip.data import load_cifar10_tar
from nnchip.models import build
from nnchip.prune import PruneConfig, finetune, prune, sparsity_report
from nnchip.train import evaluate, load_weights

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
CHECKPOINT = REPO / "benchmarks" / "checkpoints" / "resnet20_cifar10.safetensors"
LEVELS = (0.5, 0.75, 0.9)


def _rows(args: argparse.Namespace) -> list[tuple[str, PruneConfig]]:
    return [
        ("one-shot 75 %", PruneConfig(sparsity=0.75)),
        ("cubic 75 %", PruneConfig(sparsity=0.75, schedule="gradual", steps=args.cubic_steps)),
        ("prune-and-regrow 75 %", PruneConfig(sparsity=0.75, schedule="prune_regrow",
                                              regrow_every=args.regrow_every, regrow_fraction=0.3,
                                              regrow_until=0.75)),
        ("nested 50/75/90 %", PruneConfig(levels=LEVELS)),
        ("one-shot 50 % (dedicated, vs nested level 0)", PruneConfig(sparsity=0.5)),
        ("one-shot 90 % (dedicated, vs nested level 2)", PruneConfig(sparsity=0.9)),
    ]


def _pruned_density(model: torch.nn.Module) -> float:
    """Weighted density of the pruned layers (all but the first and last conv/linear)."""
    records = sparsity_report(model)[1:-1]
    sizes = [torch.Size(r.shape).numel() for r in records]
    return sum(r.density * size for r, size in zip(records, sizes, strict=True)) / sum(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=150, help="fine-tune steps per row (batch 128)")
    parser.add_argument("--cubic-steps", type=int, default=5)
    parser.add_argument("--regrow-every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pruning_schedules"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_cifar10_tar(args.data)
    stride = max(1, len(split.test) // args.test_images)
    test = Subset(split.test, range(0, len(split.test), stride))  # every class equally
    options = json.loads(CHECKPOINT.with_suffix(".json").read_text()).get("model_options", {})
    model = load_weights(build("resnet20", num_classes=10, **options), CHECKPOINT).eval()
    started = time.perf_counter()
    float_acc = evaluate(model, test)
    print(f"float top-1 {100 * float_acc:.2f} % on {len(test)} images", flush=True)
    records: list[dict[str, Any]] = []
    for name, config in _rows(args):
        t = time.perf_counter()
        levels = range(len(config.levels)) if config.nested else [None]
        one_shot = prune(model, config)
        tuned = finetune(copy.deepcopy(model), split.train, config, epochs=1, lr=args.lr, batch_size=128,
                         max_steps=args.steps)
        for level in levels:
            if level is not None:
                set_sparsity_level(one_shot, level)
                set_sparsity_level(tuned, level)
            sparsity = config.levels[level] if level is not None else config.sparsity
            records.append({
                "row": name if level is None else f"nested level {level} ({100 * sparsity:.0f} %)",
                "schedule": config.schedule, "nested": config.nested, "level": level, "sparsity": sparsity,
                "config": config.to_dict(), "top1_pruned_no_finetune": evaluate(one_shot, test),
                "top1": evaluate(tuned, test), "density_pruned_layers": _pruned_density(tuned),
                "finetune_steps": args.steps, "seconds": round(time.perf_counter() - t, 1),
            })
            r = records[-1]
            print(f"{r['row']}: before fine-tune {100 * r['top1_pruned_no_finetune']:.2f} %, after "
                  f"{100 * r['top1']:.2f} %, density {r['density_pruned_layers']:.4f} ({r['seconds']} s)", flush=True)
    total = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"model": "resnet20", "checkpoint": str(CHECKPOINT.relative_to(REPO)), "float_top1": float_acc,
               "test_images": len(test), "threads": args.threads, "steps": args.steps, "lr": args.lr,
               "cubic_steps": args.cubic_steps, "regrow_every": args.regrow_every, "records": records,
               "seconds": round(total, 1), "load_average": os.getloadavg()}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out.with_suffix(".json"))
    lines = ["| row | sparsity (pruned layers) | top-1 % before fine-tune | top-1 % after | Δ vs float pp |",
             "|---|---|---|---|---|",
             f"| float | 0 % | {100 * float_acc:.2f} | {100 * float_acc:.2f} | +0.00 |"]
    for r in records:
        lines.append(f"| {r['row']} | {100 * (1 - r['density_pruned_layers']):.1f} % | "
                     f"{100 * r['top1_pruned_no_finetune']:.2f} | {100 * r['top1']:.2f} | "
                     f"{100 * (r['top1'] - float_acc):+.2f} |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\ntotal {total:.0f} s on {args.threads} thread(s)")
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(f"<!-- generated by benchmarks/bench_prune_schedules.py; {len(test)} test images, "
                   f"{args.steps} fine-tune steps, {args.threads} thread(s), {total:.0f} s -->\n\n{table}\n")
    os.replace(tmp, out.with_suffix(".md"))


if __name__ == "__main__":
    main()
