"""Layer-wise mixed precision: exact ILP, Hutchinson trace, budgets, the lowered mixed model, CLI and errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.cli.main import main
from nnchip.core.errors import ConfigError
from nnchip.lower import lower, run
from nnchip.models import build
from nnchip.quant import default_act_spec, default_weight_spec
from nnchip.quant.mixed_precision import MixedPrecisionConfig, assign_bits, choose_bits, hutchinson_traces

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
    with pytest.raises(ConfigError, match=r"^x: no bit-width assignment meets the budget 10 \(the cheapest costs 20"):
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
        from nnchip.hw.workload import workload_from_model

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


def test_measured_error_prefers_more_bits_where_it_matters() -> None:
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8).eval()
    x = torch.randn(64, 1, 8, 8)
    _, assignment = assign_bits(model, W4A4, MixedPrecisionConfig(candidates=(2, 8), avg_bits=8.0), calib_inputs=x)
    assert set(assignment.bits.values()) == {8}  # the budget allows everything at 8 bits: least error
    errors = assignment.sensitivity
    assert all(errors[p][2] > errors[p][8] for p in errors)


@pytest.mark.parametrize(("changes", "message"), [
    ({"candidates": (1, 4)}, "mixed_precision.candidates: 1 is not an integer in 2..16"),
    ({"budget": "latency"}, "mixed_precision.budget must be one of size, bops"),
    ({"avg_bits": 0}, "mixed_precision.avg_bits must be a positive number"),
    ({"sensitivity": "magic"}, "mixed_precision.sensitivity must be one of quant_error, hessian"),
])
def test_bad_config(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        MixedPrecisionConfig(**changes)


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


def test_cli_infeasible_budget_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "r.yaml"
    bad = {**TINY, "mixed_precision": {"candidates": [4, 8], "avg_bits": 3.0}}
    del bad["pretrain"]  # untrained weights: whether a budget is feasible does not depend on them
    recipe.write_text(yaml.safe_dump(bad))
    assert main(["mixed-precision", str(recipe), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the untrained-weights warning
    assert error.startswith("nnchip mixed-precision: error: mixed_precision.avg_bits 3: no bit-width assignment "
                            "meets the budget")
