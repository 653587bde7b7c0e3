"""Issue-6 benchmark on CIFAR-10: LUT layers (vector quantization) on the ResNet-20 (and ViT) references.

For each reference checkpoint and each (v, K) × metric: convert the inner conv/linear layers (all but the first
and the last) with `vq` (k-means on the calibration images), run the multistage training for a fixed number of
steps per stage (`--steps` for each of reconstruction, joint and final; `--backward ste` by default: the
straight-through joint gradient, `soft` for LUT-NN's soft assignment, ~4× slower here), quantize every
other tensor W8A8 (PTQ) and report top-1 on the test images: float, k-means only, after training (integer
tables), W8A8 fake-quant; training wall time; and the modeled hardware ratios (hw.lut_engine: energy with and
without DRAM, logic area, cycles) of the LUT engine against a 16×16 INT8 MAC array on the converted layers.
The integer model of the first configuration is lowered and checked bit-exact (interpreter vs deploy forward)
on 64 test images. LUT-DLA's reported CNN accuracy drops (0.1–3.1 % L2, 0.1–3.4 % L1, 0.1–3.8 % Chebyshev)
are printed beside ours; they come from full-length training, ours from a few dozen steps per stage on 2 threads.

    python benchmarks/bench_vq_cifar.py --threads 2 --steps 40 --out benchmarks/results/vq_cifar.json
    python benchmarks/bench_vq_cifar.py --dse-from benchmarks/results/vq_cifar.json     # the DSE table only
    python benchmarks/bench_vq_cifar.py --kmeans-only --recalibrate none --kmeans-init random  # stage 1 only
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from nnchip import QuantConfig, calibrate, quantize
from nnchip.data import load_cifar10_tar
from nnchip.hw.lut_engine import LUTEngineSpec, lut_design_cost, lut_workload_from_layers, mac_design_cost
from nnchip.hw.specs import load_energy
from nnchip.hw.workload import workload_from_model
from nnchip.models import build
from nnchip.train import evaluate, load_weights
from nnchip.vq import VQConfig, VQTrainConfig, lut_layers, train_vq, vq

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.tar.gz"
LUT_DLA_CNN_DROP_PP = {"l2": (0.1, 3.1), "l1": (0.1, 3.4), "chebyshev": (0.1, 3.8)}  # algorithms reference §8.5
LUT_DLA_TRANSFORMER_DROP_PP = (1.4, 3.0)


def load_reference(name: str) -> nn.Module:
    meta = json.loads((REPO / "benchmarks" / "checkpoints" / f"{name}.json").read_text())
    model = build(meta["model"], num_classes=10, **meta["model_options"])
    return load_weights(model, REPO / "benchmarks" / "checkpoints" / f"{name}.safetensors").eval()


def hardware_ratios(model: nn.Module, converted: list[str], v: int, k: int, metric: str) -> dict[str, float]:
    """Modeled MAC-array / LUT-engine ratios on the converted layers (> 1: the LUT engine is better)."""
    layers = [w for w in workload_from_model(model, torch.randn(1, 3, 32, 32)).layers if w.name in converted]
    spec = load_energy()
    lut = lut_design_cost(lut_workload_from_layers(layers, v=v, k=k, metric=metric, table_bits=8),
                          LUTEngineSpec(engines=4, lanes=16), spec)
    mac = mac_design_cost(layers, 16, 16, spec)
    return {"energy_ratio": mac.energy_pj / lut.energy_pj, "energy_ratio_onchip": mac.energy_onchip_pj /
            lut.energy_onchip_pj, "area_ratio": mac.logic_area_um2 / lut.logic_area_um2,
            "speedup": mac.cycles / lut.cycles, "table_kib": lut.storage_kib, "weight_kib": mac.storage_kib}


def bit_exact_check(qmodel: Any, images: Tensor) -> bool:
    from nnchip.lower import lower, run
    from nnchip.quant.deploy import deploy_forward

    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(images).to(torch.int64)
    interpreted = run(graph, x_int).tensors
    return all(torch.equal(value, interpreted[name]) for name, value in deploy_forward(qmodel, x_int).items())


def run_config(model: nn.Module, train_set: Any, test_set: Any, calib: Tensor, init: VQConfig,
               train: VQTrainConfig, check: bool) -> dict[str, Any]:
    v, k, metric = init.v, init.k, init.metric
    started = time.perf_counter()
    lut_model = vq(model, init, example_inputs=calib[:2], calibration=list(calib.split(128)))
    kmeans_s = time.perf_counter() - started
    kmeans_acc = evaluate(lut_model, test_set, batch_size=100)
    result = train_vq(lut_model, train_set, train, teacher=model)
    lut_acc = evaluate(lut_model, test_set, batch_size=100)
    qmodel = calibrate(quantize(lut_model, QuantConfig(), example_inputs=calib[:2]), list(calib.split(128)))
    q_acc = evaluate(qmodel, test_set, batch_size=100)
    converted = [name for name, _ in lut_layers(lut_model)]
    record = {"v": v, "k": k, "metric": metric, "steps_per_stage": train.max_steps, "backward": train.backward,
              "kmeans_init": init.kmeans_init, "recalibrate": init.recalibrate, "distill_alpha": train.distill_alpha,
              "lut_layers": len(converted), "kmeans_acc": kmeans_acc, "lut_acc": lut_acc, "w8a8_acc": q_acc,
              "train_s": round(kmeans_s + sum(result.seconds.values()), 1), "kmeans_s": round(kmeans_s, 1),
              "stage_s": {stage: round(seconds, 1) for stage, seconds in result.seconds.items()},
              **hardware_ratios(model, converted, v, k, metric)}
    if check:
        record["bit_exact_64"] = bit_exact_check(qmodel, torch.stack([test_set[i][0] for i in range(64)]))
    return record


def print_dse(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The (v, K, table bits, engines, metric) sweep on the ResNet-20 inner layers with the measured accuracies."""
    from nnchip.hw.lut_dse import lut_dse, pareto

    model = load_reference("resnet20_cifar10")
    layers = list(workload_from_model(model, torch.randn(1, 3, 32, 32)).layers[1:-1])
    accuracy = {(r["v"], r["k"], r["metric"]): r["w8a8_acc"] for r in records if r["model"].startswith("resnet20")}
    rows = lut_dse(layers, load_energy(), vs=(4, 8, 16), ks=(8, 16, 32), table_bits=(4, 8), engines=(1, 4, 16),
                   accuracy=accuracy)
    front = pareto(rows)
    print("\nPareto front (energy with DRAM, logic area, cycles) of the LUT design space, MAC array 16×16 INT8:")
    print("| v | K | b_T | engines | metric | E ratio | E on-chip | area ratio | speed-up | tables KiB | top-1 |")
    print("|" + "---|" * 11)
    for r in sorted(front, key=lambda r: -r["energy_ratio"]):
        acc = f"{100 * r['acc']:.2f}" if "acc" in r else "–"
        print(f"| {r['v']} | {r['k']} | {r['table_bits']} | {r['engines']} | {r['metric']} | {r['energy_ratio']:.2f} | "
              f"{r['energy_ratio_onchip']:.2f} | {r['area_ratio']:.2f} | {r['speedup']:.2f} | "
              f"{r['storage_kib']:.0f} | {acc} |")
    return rows


def write_records(out: Path, records: list[dict[str, Any]]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--models", default="resnet20_cifar10")
    parser.add_argument("--configs", default="4x16,8x16", help="v x K pairs")
    parser.add_argument("--metrics", default="l2,l1,chebyshev")
    parser.add_argument("--steps", default="40", help="training steps per stage (batch 32): one, or recon,joint,final")
    parser.add_argument("--backward", default="ste", choices=("soft", "ste"), help="joint-stage gradient")
    parser.add_argument("--train-images", type=int, default=20000)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kmeans-samples", type=int, default=8192, help="sub-vectors per layer for k-means")
    parser.add_argument("--kmeans-iters", type=int, default=25)
    parser.add_argument("--kmeans-init", default="kmeans++", choices=("random", "kmeans++"))
    parser.add_argument("--recalibrate", default="affine", choices=("none", "bias", "affine"))
    parser.add_argument("--kmeans-only", action="store_true", help="stop after stage 1: float and k-means top-1")
    parser.add_argument("--distill-alpha", type=float, default=0.5, help="weight of distillation from the float model")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "vq_cifar.json"))
    parser.add_argument("--dse-from", default=None, help="only print the DSE with the accuracies of this JSON")
    args = parser.parse_args()
    if args.dse_from:
        print_dse(json.loads(Path(args.dse_from).read_text()))
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_cifar10_tar(args.data)
    order = torch.randperm(len(split.train), generator=torch.Generator().manual_seed(0))
    train_set = Subset(split.train, order[: args.train_images].tolist())
    stride = max(1, len(split.test) // args.test_images)  # the test split is ordered by class: take every class
    test_set = Subset(split.test, list(range(0, len(split.test), stride))[: args.test_images])
    calib = torch.stack([split.train[i][0] for i in order[-512:].tolist()])  # (512, 3, 32, 32), disjoint
    steps = tuple(int(s) for s in args.steps.split(","))
    train_config = VQTrainConfig(recon_epochs=1, joint_epochs=1, final_epochs=1, batch_size=32,
                                 max_steps=steps[0] if len(steps) == 1 else steps, joint_lr=5e-4, final_lr=2e-4,
                                 backward=args.backward, distill_alpha=args.distill_alpha, progress=False)
    records = []
    for name in args.models.split(","):
        model = load_reference(name)
        float_acc = evaluate(model, test_set, batch_size=100)
        for index, pair in enumerate(args.configs.split(",")):
            v, k = (int(p) for p in pair.split("x"))
            for metric in args.metrics.split(","):
                init = VQConfig(v=v, k=k, metric=metric, kmeans_samples=args.kmeans_samples,
                                kmeans_iters=args.kmeans_iters, kmeans_init=args.kmeans_init,
                                recalibrate=args.recalibrate)
                if args.kmeans_only:
                    lut_model = vq(model, init, example_inputs=calib[:2], calibration=list(calib.split(128)))
                    print(json.dumps({"model": name, "float_acc": float_acc, "test_images": len(test_set),
                                      **init.to_dict(), "kmeans_acc": evaluate(lut_model, test_set, batch_size=100)}),
                          flush=True)
                    continue
                record = {"model": name, "float_acc": float_acc, "test_images": len(test_set),
                          **run_config(model, train_set, test_set, calib, init, train_config,
                                       check=index == 0 and metric == args.metrics.split(",")[0])}
                record["drop_pp"] = round(100 * (float_acc - record["w8a8_acc"]), 2)
                record["lut_dla_drop_pp"] = (LUT_DLA_TRANSFORMER_DROP_PP if "vit" in name
                                             else LUT_DLA_CNN_DROP_PP[metric])
                records.append(record)
                print(json.dumps(record), flush=True)
                write_records(Path(args.out), records)  # after every configuration: a long run keeps its rows
    if args.kmeans_only:
        return
    print("\n| model | v | K | metric | float % | k-means % | LUT % | W8A8 % | drop pp | LUT-DLA pp | E ratio | "
          "E on-chip | area ratio | train s |")
    print("|" + "---|" * 14)
    for r in records:
        print(f"| {r['model']} | {r['v']} | {r['k']} | {r['metric']} | {100 * r['float_acc']:.2f} | "
              f"{100 * r['kmeans_acc']:.2f} | {100 * r['lut_acc']:.2f} | {100 * r['w8a8_acc']:.2f} | "
              f"{r['drop_pp']:.2f} | {r['lut_dla_drop_pp'][0]}–{r['lut_dla_drop_pp'][1]} | {r['energy_ratio']:.2f} | "
              f"{r['energy_ratio_onchip']:.2f} | {r['area_ratio']:.2f} | {r['train_s']} |")
    print(f"median train s per config: {statistics.median(r['train_s'] for r in records):.1f}")
    print_dse(records)


if __name__ == "__main__":
    main()
