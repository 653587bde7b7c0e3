"""Integer softmax / GELU / LayerNorm: integer-only, close to the real functions, the contract's constants."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from models_for_tests import TransformerViT

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.int_nonlinear import (
    exp_shift_x0,
    int_layernorm_core,
    layernorm_output_scale,
    shift_gelu,
    shiftmax,
    softmax_exp_table,
    table_softmax,
)
from nnchip.core.int_nonlinear_float import int_layernorm_core_float, layernorm_float_is_exact, table_softmax_float
from nnchip.core.qmath import sqnr_db
from nnchip.quant.nonlinear import IntegerLayerNorm, IntegerSoftmax


def test_shiftmax_is_close_to_softmax_and_integer() -> None:
    scale = 0.05
    x = torch.randint(-120, 120, (64, 33))
    y = shiftmax(x, exp_shift_x0(scale), out_bits=8)
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) <= 128
    assert (y / 128.0 - torch.softmax(x * scale, dim=-1)).abs().max() < 0.03
    assert bool((y.sum(dim=-1) <= 128).all())  # floor divisions never overshoot 1.0


def test_table_softmax_is_float_softmax_on_the_output_grid() -> None:
    scale = 0.07
    x = torch.randint(-128, 128, (256, 50))
    table = softmax_exp_table(scale, 255)
    assert table.dtype == torch.int64 and int(table[0]) == 2**20 and int(table[-1]) >= 0
    y = table_softmax(x, table, out_bits=8)
    reference = torch.round(torch.softmax(x.double() * scale, dim=-1) * 128)
    assert int((y - reference).abs().max()) <= 1
    assert float((y == reference).double().mean()) > 0.999  # differs only within ~2^-16 of a rounding tie
    assert torch.equal(y, table_softmax(x - 40, table, out_bits=8))  # shift invariant


def test_table_ends_where_entries_round_to_zero() -> None:
    coarse = softmax_exp_table(0.5, 255)  # exp(−0.5·d)·2^20 < 1/2 beyond d ≈ 29
    assert coarse.numel() < 40 and int(coarse[-1]) == 0
    assert softmax_exp_table(0.001, 255).numel() == 256  # a fine grid: the code range bounds the table


def test_exact_centring_layernorm_beats_the_rounded_mean() -> None:
    torch.manual_seed(0)
    x = torch.randint(-3, 4, (512, 32)) + torch.randint(-100, 100, (512, 1))  # small spread, offset rows
    real = F.layer_norm(x.double(), (32,))
    exact = int_layernorm_core(x) * layernorm_output_scale(32)
    ivit = int_layernorm_core(x, sqrt_mode="ivit") * layernorm_output_scale(32)
    assert (exact - real).abs().max() < 0.01
    assert (exact - real).abs().mean() < (ivit - real).abs().mean() / 5


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


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), length=st.integers(1, 80), bits=st.sampled_from([4, 8, 12]),
       scale=st.floats(0.002, 0.5), out_bits=st.sampled_from([4, 8, 16]), seed=st.integers(0, 2**16))
def test_table_softmax_in_float64_equals_the_int64_contract(rows: int, length: int, bits: int, scale: float,
                                                           out_bits: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    x = torch.randint(low, high + 1, (rows, 3, length), generator=generator)
    x[0, 0, :] = high  # a row of ties
    table = softmax_exp_table(scale, high - low)
    expected = table_softmax(x, table, out_bits=out_bits, dim=-1)
    got = table_softmax_float(x.to(torch.float32), table, out_bits=out_bits, dim=-1)
    assert torch.equal(got.to(torch.int64), expected)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 6), channels=st.integers(1, 400), bits=st.sampled_from([2, 4, 8, 10]),
       seed=st.integers(0, 2**16))
def test_layernorm_core_in_float64_equals_the_int64_contract(rows: int, channels: int, bits: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    assert layernorm_float_is_exact(channels, high - low)
    x = torch.randint(low, high + 1, (rows, channels), generator=generator)
    x[0] = low  # a constant row: std clamps to 1
    if rows > 1:
        x[1, ::2] = high  # the largest spread
        x[1, 1::2] = low
    got = int_layernorm_core_float(x.to(torch.float32))
    assert torch.equal(got.to(torch.int64), int_layernorm_core(x, sqrt_mode="exact"))


def test_integer_softmax_and_layernorm_keep_the_straight_through_values_and_gradients() -> None:
    """The fake-quant ViT's integer softmax (exact grid values, float softmax gradient) with its output quantizer
    passed through, and the in-place LayerNorm blend, give the values and gradients of the plain formulation
    reference + (integer − reference).detach() followed by the fixed quantizer."""
    from nnchip.quant.quantizers.fixed import FixedQuantizer

    torch.manual_seed(0)
    model = TransformerViT().eval()
    x = torch.randn(16, 1, 8, 8)
    qmodel = calibrate(quantize(model, QuantConfig(nonlinear="integer"), example_inputs=x[:2]), [x]).train()
    softmaxes = [m for m in qmodel.gm.modules() if isinstance(m, IntegerSoftmax)]
    fixed = [m for m in qmodel.gm.modules() if isinstance(m, FixedQuantizer)]
    assert softmaxes and len(fixed) == len(softmaxes)
    assert all(f.__dict__.get("_grid_source") is not None for f in fixed)
    params = [p for p in qmodel.parameters() if p.requires_grad]

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = qmodel(x)
        return out.detach(), list(torch.autograd.grad(out.square().sum(), params))

    fast_out, fast_grads = run()
    for m in softmaxes:  # the plain formulation: float softmax plus the detached integer difference
        m.forward = lambda t, m=m: (lambda ref: ref + (m.integer_softmax(t) - ref).detach())(torch.softmax(t, m.dim))
    for f in fixed:
        del f.__dict__["_grid_source"]
    plain_out, plain_grads = run()
    assert torch.equal(fast_out, plain_out)
    for a, b in zip(fast_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_fixed_quantizer_passes_only_grid_values_of_an_active_source() -> None:
    """Linked to an integer softmax, the softmax-output quantizer is skipped only while that softmax runs its
    integer form on the same grid; disabled or calibrating sources fall back to quantizing the float softmax."""
    model = TransformerViT().eval()
    x = torch.randn(8, 1, 8, 8)
    qmodel = quantize(model, QuantConfig(nonlinear="integer"), example_inputs=x[:2])
    softmax = next(m for m in qmodel.gm.modules() if isinstance(m, IntegerSoftmax))
    assert not softmax.output_on_grid(2.0**-7, 0, 255)  # uncalibrated input quantizer: float softmax
    calibrate(qmodel, [x])
    assert softmax.output_on_grid(2.0**-7, 0, 255)
    assert not softmax.output_on_grid(2.0**-6, 0, 255) and not softmax.output_on_grid(2.0**-7, 0, 127)
    softmax._source.enabled = False
    assert not softmax.output_on_grid(2.0**-7, 0, 255)
