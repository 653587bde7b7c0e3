"""Integer softmax / GELU / LayerNorm: integer-only, close to the real functions, the contract's constants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from models_for_tests import TransformerViT

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.int_nonlinear import (
    exp_shift_x0,
    int_layernorm_core,
    layernorm_output_scale,
    shift_gelu,
    shiftmax,
)
from nnchip.core.qmath import sqnr_db
from nnchip.quant.nonlinear import IntegerLayerNorm, IntegerSoftmax


def test_shiftmax_is_close_to_softmax_and_integer() -> None:
    scale = 0.05
    x = torch.randint(-120, 120, (64, 33))
    y = shiftmax(x, exp_shift_x0(scale), out_bits=8)
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 128
    assert (y / 128.0 - torch.softmax(x * scale, dim=-1)).abs().max() < 0.03
    assert bool((y.sum(dim=-1) <= 128).all())  # floor divisions never overshoot 1.0


def test_shiftmax_is_shift_invariant() -> None:
    x = torch.randint(-50, 50, (4, 9))
    assert torch.equal(shiftmax(x, -20), shiftmax(x + 37, -20))


def test_shift_gelu_and_layernorm_track_the_real_functions() -> None:
    scale = 0.04
    x = torch.randint(-100, 100, (8, 64))
    gelu = shift_gelu(x, exp_shift_x0(1.702 * scale)) * scale / 128
    assert (gelu - F.gelu(x * scale)).abs().max() < 0.05 * 4.0 + 0.02  # x·σ(1.702x) with σ on a 1/128 grid
    z = int_layernorm_core(x) * layernorm_output_scale(64)
    assert (z - F.layer_norm(x.double(), (64,))).abs().max() < 0.01


def test_ivit_square_root_mode_differs_where_the_contract_says() -> None:
    x = torch.tensor([[0, 0, 0, 0, 10, -10, 0, 0]])  # var = Σ(x − μ)² = 200: I-ViT's sqrt has not converged
    exact, ivit = int_layernorm_core(x), int_layernorm_core(x, sqrt_mode="ivit")
    assert not torch.equal(exact, ivit)


def test_fake_quant_vit_runs_the_integer_operators_with_gradients() -> None:
    model = TransformerViT().eval()
    x = torch.randn(32, 1, 8, 8)
    qmodel = calibrate(quantize(model, QuantConfig(nonlinear="integer"), example_inputs=x[:2]), [x])
    kinds = {type(m) for m in qmodel.gm.modules()}
    assert {IntegerSoftmax, IntegerLayerNorm} <= kinds
    with torch.no_grad():
        assert sqnr_db(model(x), qmodel(x)) > 12.0
    qmodel.train()
    qmodel(x).sum().backward()
    norms = [m for m in qmodel.gm.modules() if isinstance(m, IntegerLayerNorm)]
    assert all(m.weight.grad is not None for m in norms)
