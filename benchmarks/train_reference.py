"""Train the CIFAR-10 float references that the benchmarks quantize (ResNet-20 and a small ViT).

    python benchmarks/train_reference.py --data ../shared/data/cifar10/cifar10-jpeg.tar.gz \
        --model resnet20 --epochs 8 --out benchmarks/checkpoints

Writes <model>_cifar10.safetensors and <model>_cifar10.json (top-1, epochs, wall time, options).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nnchip.data import load_cifar10_tar
from nnchip.models import build
from nnchip.train import TrainConfig, evaluate, save_weights, train

MODEL_OPTIONS = {
    "resnet20": {},
    "vit_tiny": {"in_channels": 3, "image_size": 32, "patch": 4, "dim": 128, "depth": 6, "heads": 4, "mlp_ratio": 2.0},
}
TRAIN_OPTIONS = {
    "resnet20": {"lr": 0.2, "optimizer": "sgd", "weight_decay": 5e-4, "schedule": "onecycle"},
    "vit_tiny": {"lr": 2e-3, "optimizer": "adamw", "weight_decay": 0.05, "schedule": "onecycle",
                 "label_smoothing": 0.1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", choices=sorted(MODEL_OPTIONS), required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/checkpoints")
    parser.add_argument("--checkpoint-dir", default=None, help="per-epoch checkpoints (kept out of the repo)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    split = load_cifar10_tar(args.data)
    model = build(args.model, num_classes=10, **MODEL_OPTIONS[args.model])
    config = TrainConfig(epochs=args.epochs, batch_size=128, augment=True, seed=0,
                         checkpoint_dir=args.checkpoint_dir, **TRAIN_OPTIONS[args.model])
    started = time.perf_counter()
    result = train(model, split.train, config, eval_data=split.test)
    seconds = time.perf_counter() - started
    top1 = evaluate(model, split.test)
    out = Path(args.out)
    save_weights(model, out / f"{args.model}_cifar10.safetensors")
    record = {"model": args.model, "model_options": MODEL_OPTIONS[args.model], "train": config.to_dict(),
              "top1": top1, "eval_acc_per_epoch": result.eval_acc, "seconds": round(seconds, 1),
              "data_mean": split.mean, "data_std": split.std}
    (out / f"{args.model}_cifar10.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"model": args.model, "top1": top1, "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    main()
