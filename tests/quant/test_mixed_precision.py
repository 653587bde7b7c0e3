"""Layer-wise mixed precision: exact ILP, Hutchinson trace, budgets, the lowered mixed model, CLI and errors."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.cli.main import main
from nnchip.core.errors import ConfigError
from nnchip.hw.workload import workload_from_model
from nnchip.lower import lower, run
from nnchip.models import build
from nnchip.quant import default_act_spec, default_weight_spec
from nnchip.quant.mixed_precision import MixedPrecisionConfig, assign_bits, choose_bits, hutchinson_traces
from nnchip.quant.mixed_precision.api import layer_sensitivity
from nnchip.quant.mixed_precision.latency import layer_latency, uniform_bits
from nnchip.quant.mixed_precision.sensitivity import quantization_errors

W4A4 = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))


def test_ilp_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    layers, bits = ["a", "b", "c", "d"], [2, 4, 8]
    for _ in range(5):
        sens = {layer: {b: float(torch.rand(1, generator=generator)) * 2.0 ** -b for b in bits} for layer in layers}
        size = {layer: float(torch.randint(10, 100, (1,), generator=generator)) for layer in layers}
        cost = {layer: {b: size[layer] * b for b in bits} for layer in layers}
        budget = 4.0 * sum(size.values())
        best = min((combo for combo in itertools.product(bits, repeat=len(layers))
                    if sum(cost[la][b] for la, b in zip(layers, combo, strict=True)) <= budget),
                   key=lambda combo: sum(sens[la][b] for la, b in zip(layers, combo, strict=True)))
        chosen = choose_bits(sens, cost, budget)
        assert sum(sens[la][chosen[la]] for la in layers) == pytest.approx(
            sum(sens[la][b] for la, b in zip(layers, best, strict=True)))


def test_budget_no_assignment_meets_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^x: no bit-width assignment meets the budget 10 \(the minimum achievable "
                                          r"is 20\)$"):
        choose_bits({"a": {2: 1.0, 4: 0.1}}, {"a": {2: 20.0, 4: 40.0}}, 10.0, budget_name="x")


def test_hutchinson_trace_matches_the_exact_hessian() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(32, 3), torch.randint(0, 3, (32,))
    estimate = hutchinson_traces(model, [(x, y)], ["0", "2"], samples=400)
    for path in ("0", "2"):
        weight = model.get_submodule(path).weight

        def loss_of(w: torch.Tensor, path: str = path, weight: torch.Tensor = weight) -> torch.Tensor:
            params = {f"{path}.weight": w}
            return nn.functional.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

        hessian = torch.autograd.functional.hessian(loss_of, weight.detach())
        exact = float(hessian.reshape(weight.numel(), weight.numel()).diagonal().sum())
        assert estimate[path] == pytest.approx(exact, rel=0.15, abs=1e-3)


@pytest.mark.parametrize(("budget", "sensitivity"), [("size", "quant_error"), ("bops", "hessian")])
def test_assignment_meets_its_budget_and_lowers_exactly(budget: str, sensitivity: str) -> None:
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    config = MixedPrecisionConfig(candidates=(2, 3, 4, 6, 8), sensitivity=sensitivity, budget=budget, avg_bits=4.0)
    quant, assignment = assign_bits(model, W4A4, config, calib_inputs=x, batches=[(x, y)])
    params = {p: model.get_submodule(p).weight.numel() for p in assignment.bits}
    if budget == "size":
        assert assignment.avg_bits <= 4.0 + 1e-9
    else:
        macs = {w.name: w.macs for w in workload_from_model(model, x[:1]).layers}
        assert assignment.bops <= 4.0 * 4 * sum(macs.values())
    assert set(assignment.bits) == set(params)
    qmodel = calibrate(quantize(model, quant, example_inputs=x[:2]), [x])
    assert {p: layer.weight_quantizer.spec.bits for p, layer in qmodel.layers()} == assignment.bits
    graph = lower(qmodel)
    bits = {str(n.attrs["source"]).split(" ")[0]: n.attrs["weight_bits"] for n in graph.nodes
            if "weight_bits" in n.attrs}
    assert bits == assignment.bits
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    assert run(graph, x_int).tensors[graph.outputs[0]].shape == (64, 10)


def test_weight_error_is_measured_with_the_quantizer_on() -> None:
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    weight_errors, _ = quantization_errors(model, W4A4, (2, 4, 8), torch.randn(8, 1, 8, 8))
    for per in weight_errors.values():  # ‖Q_b(W) − W‖² > 0, shrinking about 4× per extra bit
        assert per[2] > 4 * per[4] > 16 * per[8] > 0


def test_hessian_sensitivity_is_taken_on_the_folded_weights() -> None:
    # the same folded model two ways: conv weight 4W with BN scale 1, or W with BN scale 4 → the same Ω
    def net(weight_scale: float, bn_scale: float) -> nn.Module:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))
        with torch.no_grad():
            model[0].weight.mul_(weight_scale)
            model[0].bias.mul_(weight_scale)
            model[1].weight.fill_(bn_scale)
            model[1].running_var.fill_(1 - model[1].eps)
        return model.eval()

    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    config = MixedPrecisionConfig(candidates=(2, 4), sensitivity="hessian", hutchinson_samples=8)
    a, b = (layer_sensitivity(net(w, s), A4_ONLY, config, x, [(x, y)]) for w, s in ((4.0, 1.0), (1.0, 4.0)))
    assert torch.allclose(net(4.0, 1.0)(x), net(1.0, 4.0)(x), atol=1e-5)
    for path in a:
        for bits in (2, 4):
            assert a[path][bits] == pytest.approx(b[path][bits], rel=1e-3)
    assert a["0"][2] > a["0"][4] > 0


def test_measured_error_prefers_more_bits_where_it_matters() -> None:
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    x = torch.randn(64, 1, 8, 8)
    _, assignment = assign_bits(model, W4A4, MixedPrecisionConfig(candidates=(2, 8), avg_bits=8.0), calib_inputs=x)
    assert set(assignment.bits.values()) == {8}  # the budget allows everything at 8 bits: least error
    errors = assignment.sensitivity
    assert all(errors[p][2] > errors[p][8] for p in errors)


@pytest.mark.parametrize(("changes", "message"), [
    ({"candidates": (1, 4)}, "mixed_precision.candidates: 1 is not an integer in 2..16"),
    ({"budget": "energy"}, "mixed_precision.budget must be one of size, bops, latency"),
    ({"budget": "latency", "avg_bits": 3.5}, "mixed_precision.avg_bits must be a whole number for a latency budget"),
    ({"latency_us": -1.0}, "mixed_precision.latency_us must be a positive number"),
    ({"t_a": 0}, "mixed_precision.t_a must be a positive integer"),
    ({"device": "zcu999"}, "mixed_precision.device: unknown device 'zcu999'"),
    ({"avg_bits": 0}, "mixed_precision.avg_bits must be a positive number"),
    ({"sensitivity": "magic"}, "mixed_precision.sensitivity must be one of quant_error, hessian"),
])
def test_bad_config(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        MixedPrecisionConfig(**changes)


# Three 3×3 convs on a 4×8×8 input (M = 64 output positions each), 4-bit inputs everywhere (first_last_bits None),
# ZCU102 (DSP48E2: 4 products per DSP at ≤ 4 bits, 2 at ≤ 8), DSP engine T_a = 8, T_b = 16, 150 MHz, DDR
# 19.2 GB/s × 0.7 = 89.6 bytes per cycle; every layer is compute-bound (its bytes ÷ 89.6 < compute).
#   conv 0 (K 36, N 32):  compute = 64 · ceil(36/16) · ceil(32/(8·pack)) = 192 (pack 4), 384 (pack 2)
#   conv 2, 4 (K 288):    compute = 64 · 18 · ceil(32/(8·pack))          = 1152,          2304
#   each layer adds the pipeline fill 32 and the first tile (16·4 + 8·pack·16·b bits) / 8 / 89.6 cycles
def three_convs() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1)).eval()


def cycles(compute: int, pack: int, bits: int) -> float:
    return compute + 32 + (16 * 4 + 8 * pack * 16 * bits) / 8 / 89.6


A4_ONLY = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"), first_last_bits=None)


def test_latency_budget_hand_checked() -> None:
    model, x = three_convs(), torch.randn(16, 4, 8, 8)
    minimum_us = (cycles(192, 4, 2) + 2 * cycles(1152, 4, 2)) / 150  # every layer at 2 bits: 17.3104 µs
    with pytest.raises(ConfigError, match=rf"^mixed_precision\.latency_us 17: no bit-width assignment meets the "
                                          rf"budget 17 µs \(the minimum achievable is {minimum_us:.6g} µs\)$"):
        assign_bits(model, A4_ONLY, MixedPrecisionConfig(candidates=(2, 4, 8), budget="latency", latency_us=17.0),
                    calib_inputs=x)
    uniform4_us = (cycles(192, 4, 4) + 2 * cycles(1152, 4, 4)) / 150
    config = MixedPrecisionConfig(candidates=(2, 4, 8), budget="latency", avg_bits=4)
    _, assignment = assign_bits(model, A4_ONLY, config, calib_inputs=x)
    assert assignment.latency_us <= uniform4_us * (1 + 1e-12)
    assert assignment.bits == {"0": 4, "2": 4, "4": 4}  # 8 bits halves the packing: no room; 4 beats 2 for free
    # room for conv 0 at 8 bits (+192 cycles, +1.28 µs) but not for a K = 288 layer (+1152 cycles, +7.68 µs)
    budget_us = uniform4_us + 3.0
    _, roomy = assign_bits(model, A4_ONLY, replace(config, latency_us=budget_us), calib_inputs=x)
    assert roomy.bits == {"0": 8, "2": 4, "4": 4}
    assert roomy.latency_us == pytest.approx((cycles(384, 2, 8) + 2 * cycles(1152, 4, 4)) / 150, rel=1e-12)
    assert roomy.latency_us <= budget_us


def test_latency_budget_is_met_on_the_zoo_cnn() -> None:
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    x = torch.randn(64, 1, 8, 8)
    for latency_us in (2.0, 3.0, 5.0):
        config = MixedPrecisionConfig(candidates=(2, 3, 4, 6, 8), budget="latency", latency_us=latency_us, t_a=4,
                                      t_b=4)
        try:
            _, assignment = assign_bits(model, W4A4, config, calib_inputs=x)
        except ConfigError as error:
            assert "the minimum achievable is" in str(error)
            continue
        assert assignment.latency_us <= latency_us


TINY = {
    "model": {"name": "cnn_tiny", "num_classes": 10, "in_channels": 1, "image_size": 8, "width": 8},
    "data": {"kind": "digits", "calib_images": 64},
    "pretrain": {"epochs": 1, "lr": 0.05, "batch_size": 64, "optimizer": "sgd", "progress": False},
    "mixed_precision": {"candidates": [2, 4, 8], "avg_bits": 4.0},
    "quant": {"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 4, "quantizer": "lsq"}},
}


def test_cli_writes_avg_bits_and_a_verified_export(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["mixed-precision", str(recipe), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["w_bits"] is None and record["avg_bits"] <= 4.0 and record["bit_exact"] is True
    assert set(record["bits"].values()) <= {2, 4, 8}


def test_cli_latency_budget(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "mixed_precision": {"candidates": [2, 4, 8], "budget": "latency",
                                                                  "avg_bits": 4, "t_a": 4, "t_b": 4}}))
    assert main(["mixed-precision", str(recipe), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    workload = workload_from_model(model, torch.zeros(1, 1, 8, 8))
    paths = [layer.name for layer in workload.layers]
    config = MixedPrecisionConfig(candidates=(2, 4, 8), budget="latency", avg_bits=4, t_a=4, t_b=4)
    uniform_us = layer_latency(workload, paths, W4A4, config).total_us(uniform_bits(workload, paths, W4A4, 4))
    assert record["bit_exact"] is True and record["latency_us"] <= uniform_us * (1 + 1e-12)
    assert record["mixed_precision"]["budget"] == "latency"


def test_cli_infeasible_budget_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    bad = {**TINY, "mixed_precision": {"candidates": [4, 8], "avg_bits": 3.0}}
    del bad["pretrain"]  # untrained weights: whether a budget is feasible does not depend on them
    recipe.write_text(yaml.safe_dump(bad))
    assert main(["mixed-precision", str(recipe), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the untrained-weights warning
    assert error.startswith("nnchip mixed-precision: error: mixed_precision.avg_bits 3: no bit-width assignment "
                            "meets the budget")


def test_committed_mixed_precision_recipes_parse() -> None:
    from nnchip.cli.mixed_precision import mixed_precision_recipe_from_dict

    paths = sorted((Path(__file__).resolve().parents[2] / "recipes" / "mixed_precision").glob("*.yaml"))
    budgets = {mixed_precision_recipe_from_dict(yaml.safe_load(p.read_text()))[1].budget for p in paths}
    assert budgets == {"size", "latency"}
