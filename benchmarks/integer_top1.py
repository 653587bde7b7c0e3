"""Integer top-1 of a fake-quant model saved by bench_quant_cifar.py (its QAT rows save their weights):
the model is rebuilt on the reference checkpoint, its trained weights and quantizer parameters are loaded,
and it is lowered to the integer graph, which the interpreter runs on the CIFAR-10 test set.

    python benchmarks/integer_top1.py --checkpoint benchmarks/checkpoints/vit_tiny_cifar10.safetensors \
        --weights nnchip-out/bench_quant_cifar/vit_tiny_w4a4_qat.safetensors --bits 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quant_cifar import DEFAULT_DATA, integer_top1, load_checkpoint, load_cifar, quant_config, top1  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from nnchip.quant import quantize
    from nnchip.train import load_weights

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="float reference (safetensors + .json)")
    parser.add_argument("--weights", type=Path, required=True, help="the fake-quant model's safetensors")
    parser.add_argument("--bits", type=int, default=4, help="W and A bits the model was quantized with")
    parser.add_argument("--quantizer", default="lsq")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    _, _, test_x, test_y = load_cifar(args.data)
    model, meta = load_checkpoint(args.checkpoint)
    qmodel = quantize(model, quant_config(args.bits, args.bits, args.quantizer), example_inputs=test_x[:2])
    load_weights(qmodel, args.weights)
    qmodel.eval()
    fake_acc = top1(qmodel, test_x, test_y)
    start = time.perf_counter()
    int_acc = integer_top1(qmodel, test_x, test_y, args.batch)
    record = {"model": meta["name"], "weights": str(args.weights), "w_bits": args.bits, "a_bits": args.bits,
              "n_test": int(test_x.shape[0]), "fake_quant_acc": fake_acc, "int_acc": int_acc,
              "int_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
