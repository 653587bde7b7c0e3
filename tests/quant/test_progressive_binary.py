"""VAQF-style progressive binarisation of a tiny ViT on sklearn digits (uses the registered "binary" quantizer)."""

from __future__ import annotations

import pytest
import torch
from models_for_tests import TransformerViT
from torch import nn

from nnchip.core.errors import ConfigError
from nnchip.quant import QUANTIZERS, QuantConfig, quantize
from nnchip.quant.qat import ProgressiveBinaryConfig, attention_projection_layers, progressive_binarize


def test_attention_projections_found_from_structure() -> None:
    qmodel = quantize(TransformerViT().eval(), QuantConfig(), example_inputs=torch.randn(1, 1, 8, 8))
    found = {p.rsplit(".", 1)[-1] for p in attention_projection_layers(qmodel)}
    assert found == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert len(attention_projection_layers(qmodel)) == 8  # two layers


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        ProgressiveBinaryConfig(epochs=(1, 2))
    with pytest.raises(ConfigError, match="act_bits"):
        ProgressiveBinaryConfig(act_bits=1)


@pytest.mark.skipif("binary" not in QUANTIZERS, reason="the 'binary' weight quantizer is not registered yet")
def test_progressive_binary_vit_on_digits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    train_x, train_y, test_x, test_y = x[:1400], y[:1400], x[1400:], y[1400:]
    torch.manual_seed(0)
    model = TransformerViT(dim=32, depth=2, heads=4)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(6):
        for idx in torch.randperm(1400).split(64):
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    config = ProgressiveBinaryConfig(act_bits=8, epochs=(1, 2, 2))
    qmodel = progressive_binarize(model, (train_x, train_y), config, example_inputs=train_x[:2])
    layers = qmodel.layers()
    edges = {layers[0][0], layers[-1][0]}
    for path, layer in layers:
        if path in edges:
            continue
        assert layer.weight_quantizer.spec.quantizer == "binary" and layer.weight_quantizer.enabled, path
        with torch.no_grad():
            w = layer.quantized_weight()  # (C_out, C_in): ±α per output channel
        assert torch.allclose(w.abs(), w.abs().amax(dim=1, keepdim=True).expand_as(w)), path
    with torch.no_grad():
        accuracy = (qmodel(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1; measured ≈ 0.8 (float ≈ 0.83)
