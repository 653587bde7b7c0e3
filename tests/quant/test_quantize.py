"""quantize(): placement rules, SQNR floors against float, config validation, calibration errors."""

from __future__ import annotations

import pytest
import torch
from models_for_tests import TinyResNet, TransformerViT, randomize_batchnorm
from torch import nn

from nnchip import QuantConfig, QuantSpec, calibrate, quantize
from nnchip.core.errors import ConfigError, DataError
from nnchip.core.qmath import sqnr_db
from nnchip.quant import LayerOverride, default_act_spec, default_weight_spec
from nnchip.quant.modules import QConv2d, QLinear


def config(bits: int, quantizer: str = "minmax", **kw: object) -> QuantConfig:
    return QuantConfig(weight=default_weight_spec(bits, quantizer), act=default_act_spec(bits, quantizer), **kw)


def quantized(model: nn.Module, x: torch.Tensor, cfg: QuantConfig):
    qmodel = quantize(model, cfg, example_inputs=x[:2])
    return calibrate(qmodel, [x])


def test_resnet_w8a8_sqnr_floor_and_placement() -> None:
    model = randomize_batchnorm(TinyResNet()).eval()
    x = torch.randn(32, 3, 16, 16)
    qmodel = quantized(model, x, config(8))
    with torch.no_grad():
        assert sqnr_db(model(x), qmodel(x)) > 30.0
    layers = qmodel.layers()
    assert len(layers) == 9 and all(isinstance(m, (QConv2d, QLinear)) for _, m in layers)
    nodes = {n.name: n for n in qmodel.graph.nodes}
    # the quantizer after a ReLU sees only non-negative values: zero point 0, unsigned
    relu_q = qmodel.gm.get_submodule(next(n.target for n in nodes.values() if n.name.endswith("relu_aq")))
    assert float(relu_q.get_zero_point()) == 0.0 and not relu_q.int_spec.signed
    assert all(n.meta["nnchip_kind"] != "batchnorm" for n in qmodel.graph.nodes)


def test_first_and_last_layers_use_first_last_bits() -> None:
    model = TinyResNet().eval()
    qmodel = quantize(model, config(4), example_inputs=torch.randn(2, 3, 16, 16))
    bits = [m.weight_quantizer.spec.bits for _, m in qmodel.layers()]
    assert bits[0] == 8 and bits[-1] == 8 and set(bits[1:-1]) == {4}
    input_q = qmodel.gm.get_submodule("x_aq")
    assert input_q.spec.bits == 8


def test_vit_placement_and_sqnr() -> None:
    model = TransformerViT().eval()
    x = torch.randn(32, 1, 8, 8)
    qmodel = quantized(model, x, config(8))
    with torch.no_grad():
        assert sqnr_db(model(x), qmodel(x)) > 15.0  # random ViT: a tiny cls token shares the 8-bit grid
    graph = qmodel.graph
    for node in graph.nodes:
        if node.meta["nnchip_kind"] == "softmax":
            (user,) = node.users
            q = qmodel.gm.get_submodule(user.target)
            assert q.spec.quantizer == "fixed" and float(q.get_scale()) == 2.0**-7 and not q.int_spec.signed
        if node.meta["nnchip_kind"] == "matmul":
            for arg in node.all_input_nodes:
                source = arg
                while source.meta["nnchip_kind"] != "quantize":
                    source = source.all_input_nodes[0]
                q = qmodel.gm.get_submodule(source.target)
                assert float(q.get_zero_point()) == 0.0  # Q, K, V and P symmetric / zero point 0


def test_w4a4_qat_gradients_reach_weights_and_steps() -> None:
    model = TinyResNet().train()
    x = torch.randn(8, 3, 16, 16)
    qmodel = quantized(model.eval(), x, config(4, "lsq"))
    qmodel.train()
    qmodel(x).sum().backward()
    steps = [p for name, p in qmodel.named_parameters() if name.endswith("step")]
    weights = [m.weight for _, m in qmodel.layers()]
    assert steps and all(p.grad is not None and torch.isfinite(p.grad).all() for p in steps)
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in weights)


def test_keep_float_and_overrides_are_explicit_choices() -> None:
    model = TinyResNet().eval()
    x = torch.randn(2, 3, 16, 16)
    cfg = config(4, keep_float=("fc",), overrides=(LayerOverride("layer1.0.conv1", weight=default_weight_spec(2)),))
    qmodel = quantize(model, cfg, example_inputs=x)
    assert isinstance(qmodel.gm.get_submodule("fc"), nn.Linear) and not isinstance(qmodel.gm.fc, QLinear)
    assert qmodel.gm.get_submodule("layer1.0.conv1").weight_quantizer.spec.bits == 2
    with pytest.raises(ConfigError, match="no layer at path 'nope'"):
        quantize(model, config(4, keep_float=("nope",)), example_inputs=x)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: QuantSpec(bits=0), "bits must be an integer in 1..16"),
        (lambda: QuantSpec(bits=17), "bits must be an integer in 1..16"),
        (lambda: QuantSpec(bits=4, quantizer="nope"), "unknown quantizer 'nope'"),
        (lambda: QuantSpec(bits=4, observer="nope"), "unknown observer 'nope'"),
        (lambda: QuantSpec(bits=4, granularity="row"), "granularity must be one of"),
        (lambda: QuantConfig(act=QuantSpec(bits=4, granularity="channel")), "act.granularity 'channel'"),
        (lambda: QuantConfig.from_dict({"act": {"bitz": 4}}), r"quant.act: unknown field\(s\) bitz"),
    ],
)
def test_bad_configs_get_one_line_errors(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_group_size_must_divide_the_layer() -> None:
    spec = QuantSpec(bits=4, granularity="group", group_size=3, narrow=True)
    with pytest.raises(ConfigError, match=r"group_size 3 does not divide .* conv1 \(nnchip.quant.modules|conv1"):
        quantize(TinyResNet(), QuantConfig(weight=spec), example_inputs=torch.randn(1, 3, 8, 8))


def test_group_granularity_shares_scales_within_groups() -> None:
    spec = QuantSpec(bits=4, granularity="group", group_size=2, narrow=True)
    cfg = QuantConfig(weight=spec, first_last_bits=None)
    qmodel = quantize(TinyResNet(), cfg, example_inputs=torch.randn(1, 3, 8, 8))
    scale = qmodel.gm.get_submodule("layer1.0.conv1").weight_quantizer.get_scale().flatten()
    assert torch.equal(scale.reshape(-1, 2), scale.reshape(-1, 2)[:, :1].expand(-1, 2))
    assert not torch.equal(scale[0::2], scale[0::2].roll(1))


def test_per_token_scales_are_refused_where_the_axis_is_reduced() -> None:
    cfg = QuantConfig(act=QuantSpec(bits=8, granularity="token", signed=False, symmetric=False))
    with pytest.raises(ConfigError, match="per-token scales are only lowerable"):
        quantize(TransformerViT(), cfg, example_inputs=torch.randn(1, 1, 8, 8))


def test_config_round_trips_through_dict() -> None:
    cfg = config(4, "lsq", overrides=(LayerOverride("fc", act=default_act_spec(8)),))
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("batches", [[], [torch.full((2, 3, 8, 8), float("nan"))], [torch.empty(0, 3, 8, 8)]])
def test_calibration_rejects_empty_or_nan_data(batches: list[torch.Tensor]) -> None:
    qmodel = quantize(TinyResNet(), config(8), example_inputs=torch.randn(1, 3, 8, 8))
    with pytest.raises(DataError):
        calibrate(qmodel, batches)
