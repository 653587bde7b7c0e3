"""PTQ methods on small models trained here on sklearn digits: each improves or preserves SQNR vs plain
calibration at W4A4; AdaRound's integers are reproduced by int_values; bad input gives one-line errors."""

from __future__ import annotations

import pytest
import torch
from models_for_tests import TinyResNet, TransformerViT
from torch import Tensor, nn

from nnchip.core.errors import ConfigError, DataError
from nnchip.core.qmath import sqnr_db
from nnchip.quant import QuantConfig, default_act_spec, default_weight_spec, quantize
from nnchip.quant.ptq import PTQ_METHODS, PTQConfig, ptq
from nnchip.quant.ptq.blocks import partition_blocks
from nnchip.quant.ptq.data import quantization_disabled
from nnchip.quant.ptq.rounding import AdaRoundWeight, freeze

ITERATIONS = 100


def _digits() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    return x, torch.tensor(digits.target)


def _train(model: nn.Module, x: Tensor, y: Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor, Tensor]:
    x, y = _digits()
    return x[:1400], y[:1400], x[1400:]


@pytest.fixture(scope="module")
def trained(digits: tuple[Tensor, Tensor, Tensor]) -> dict[str, nn.Module]:
    torch.set_num_threads(1)
    x, y, _ = digits
    torch.manual_seed(0)
    cnn = _train(_small_cnn(), x, y, 4)
    torch.manual_seed(0)
    vit = _train(TransformerViT(dim=32, depth=2, heads=4), x, y, 6)
    return {"cnn": cnn, "vit": vit}


def _w4a4(model: nn.Module, example: Tensor):  # noqa: ANN202
    config = QuantConfig(weight=default_weight_spec(4), act=default_act_spec(4), first_last_bits=8)
    return quantize(model, config, example_inputs=example).eval()


def _sqnr_after(model: nn.Module, digits: tuple[Tensor, Tensor, Tensor], methods: list[str]) -> float:
    x, _, test = digits
    qmodel = _w4a4(model, x[:2])
    ptq(qmodel, [x[:128], x[128:256]], methods, iterations=ITERATIONS)
    with torch.no_grad():
        return sqnr_db(model(test), qmodel(test))


@pytest.mark.parametrize("model_name", ["cnn", "vit"])
@pytest.mark.parametrize("method", ["bias_correction", "adaround", "brecq", "qdrop"])
def test_method_improves_or_preserves_sqnr(trained: dict, digits: tuple, model_name: str, method: str) -> None:
    base = _sqnr_after(trained[model_name], digits, ["calibrate"])
    after = _sqnr_after(trained[model_name], digits, ["calibrate", method])
    assert after >= base - 0.25, (model_name, method, base, after)
    if model_name == "cnn" and method != "bias_correction":  # learned rounding gains a lot on the CNN
        assert after > base + 3.0, (method, base, after)


def test_smoothquant_keeps_float_function_and_helps_vit(trained: dict, digits: tuple) -> None:
    x, _, test = digits
    vit = trained["vit"]
    qmodel = _w4a4(vit, x[:2])
    ptq(qmodel, [x[:256]], ["smoothquant", "calibrate"])
    with torch.no_grad(), quantization_disabled(qmodel):
        torch.testing.assert_close(qmodel(test), vit(test), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        smoothed = sqnr_db(vit(test), qmodel(test))
    assert smoothed >= _sqnr_after(vit, digits, ["calibrate"]) - 0.25


def test_smoothquant_after_calibration_recalibrates(trained: dict, digits: tuple) -> None:
    x, _, test = digits
    first = _w4a4(trained["vit"], x[:2])
    ptq(first, [x[:256]], ["smoothquant", "calibrate"])
    second = _w4a4(trained["vit"], x[:2])
    ptq(second, [x[:256]], ["calibrate", "smoothquant"])
    with torch.no_grad():
        torch.testing.assert_close(first(test), second(test))


def test_adaround_integers_are_reproduced_by_int_values(trained: dict, digits: tuple) -> None:
    x, _, _ = digits
    model = trained["cnn"]
    qmodel = _w4a4(model, x[:2])
    nearest = {path: layer.weight_quantizer.int_values(layer.weight).clone() for path, layer in qmodel.layers()}
    ptq(qmodel, [x[:256]], ["calibrate", "adaround"], iterations=ITERATIONS, weight_scale_search=False)
    changed = 0
    for path, layer in qmodel.layers():
        q = layer.weight_quantizer.int_values(layer.weight)
        scale = layer.weight_quantizer.get_scale()
        assert torch.equal(layer.weight.detach(), (scale * q).to(layer.weight.dtype)), path  # weight on the grid
        assert (q - nearest[path]).abs().max() <= 1, path  # rounding up or down, never further
        changed += int((q != nearest[path]).sum())
    assert changed > 0  # the learned rounding differs from round-to-nearest somewhere


def test_freeze_reproduces_learned_integers_exactly() -> None:
    from nnchip.quant.modules import QLinear
    from nnchip.quant.registry import QUANTIZERS

    linear = nn.Linear(24, 8)
    spec = default_weight_spec(3)
    quantizer = QUANTIZERS.get("minmax")(spec, role="weight", channel_axis=0, channels=8, ndim=2)
    quantizer.initialize_from_tensor(linear.weight.detach())
    layer = QLinear(linear, quantizer).eval()
    rounding = AdaRoundWeight(quantizer, layer.weight)
    with torch.no_grad():
        rounding.V.normal_()  # an arbitrary learned state
    learned = rounding.integers()
    freeze(layer, rounding)
    assert torch.equal(quantizer.int_values(layer.weight), learned)


def test_blocks_follow_residual_and_attention_structure() -> None:
    resnet = quantize(TinyResNet().eval(), QuantConfig(), example_inputs=torch.randn(1, 3, 16, 16))
    layers = [[p for p, _ in b.layers] for b in partition_blocks(resnet)]
    assert layers[0] == ["conv1"] and layers[-1] == ["fc"]
    assert ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0"] in layers
    vit = quantize(TransformerViT().eval(), QuantConfig(), example_inputs=torch.randn(1, 1, 8, 8))
    names = [[p.rsplit(".", 1)[-1] for p, _ in b.layers] for b in partition_blocks(vit)]
    assert names.count(["q_proj", "k_proj", "v_proj", "out_proj"]) == 2
    assert names.count(["linear1", "linear2"]) == 2


def test_registry_and_config() -> None:
    assert {"calibrate", "bias_correction", "adaround", "brecq", "qdrop", "smoothquant"} <= set(PTQ_METHODS)
    config = PTQConfig(methods=("smoothquant", "calibrate", "adaround"), iterations=10)
    assert PTQConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"methods": ("calibrate", "adaroundd")}, "adaroundd"),
    ({"iterations": 0}, "iterations"),
    ({"qdrop_prob": 1.5}, "qdrop_prob"),
    ({"smoothquant_alpha": -0.1}, "smoothquant_alpha"),
    ({"methods": ()}, "methods"),
])
def test_bad_config_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as info:
        PTQConfig(**kwargs)
    assert "\n" not in str(info.value)


def test_bad_calibration_data_is_one_line_error() -> None:
    qmodel = _w4a4(_small_cnn().eval(), torch.randn(2, 1, 8, 8))
    for batches, pattern in (([], "empty"), ([torch.full((2, 1, 8, 8), float("nan"))], "NaN"),
                             ([torch.empty(0, 1, 8, 8)], "empty")):
        with pytest.raises(DataError, match=pattern) as info:
            ptq(qmodel, batches, "calibrate")
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="unknown PTQ method 'gptq'"):
        ptq(qmodel, [torch.randn(4, 1, 8, 8)], "gptq")
