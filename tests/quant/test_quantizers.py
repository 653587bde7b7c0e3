"""Every registered quantizer: fake-quant equals scale·(integer − zero point), integers lie on the declared
grid, gradients reach weights and learned parameters; property tests for the uniform grid."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnchip.core.errors import ConfigError
from nnchip.quant import QUANTIZERS, QuantSpec

WEIGHT_CASES = [("minmax", 4), ("minmax", 8), ("lsq", 4), ("sawb", 4), ("sawb", 2), ("dorefa", 3), ("dorefa", 1),
                ("binary", 1), ("ternary", 2), ("pot", 4), ("lsq+", 4), ("esb", 4), ("esb", 6)]
ACT_CASES = [("minmax", 4, False), ("minmax", 8, True), ("lsq", 4, False), ("lsq+", 4, False), ("pact", 4, False),
             ("dorefa", 4, False), ("log2", 4, False), ("twin_uniform", 6, False)]


def make(name: str, bits: int, role: str, per_channel: bool, **spec: object):
    narrow = role == "weight" and name in ("minmax", "lsq", "sawb", "lsq+")
    options = tuple(spec.pop("options", ()))  # type: ignore[arg-type]
    quantizer_spec = QuantSpec(bits=bits, quantizer=name, granularity="channel" if per_channel else "tensor",
                               narrow=narrow, options=options, **spec)  # type: ignore[arg-type]
    return QUANTIZERS.get(name)(quantizer_spec, role=role, channel_axis=0 if per_channel else None, channels=6,
                                ndim=2)


def check_integer_form(q, x: torch.Tensor) -> None:
    q.eval()
    with torch.no_grad():
        fake = q(x)
        ints = q.int_values(x)
    assert torch.equal(ints, torch.round(ints)), "integer values must be integers"
    grid = q.grid
    assert int(ints.min()) >= grid.qmin and int(ints.max()) <= grid.qmax
    if grid.values is not None:
        allowed = torch.tensor(grid.values, dtype=ints.dtype)
        assert bool(torch.isin(ints, allowed).all()), "integer values must be in grid.values"
    recon = q.get_scale() * (ints - q.get_zero_point())
    assert torch.allclose(fake, recon, rtol=1e-5, atol=1e-6 * float(q.get_scale().detach().max()))


@pytest.mark.parametrize(("name", "bits"), WEIGHT_CASES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_weight_quantizers_integer_form_and_gradients(name: str, bits: int, per_channel: bool) -> None:
    w = (torch.randn(6, 40) * 0.3).requires_grad_(True)
    q = make(name, bits, "weight", per_channel)
    q.initialize_from_tensor(w.detach())
    check_integer_form(q, w.detach())
    q.train()
    q(w).pow(2).sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    for _, param in q.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()


@pytest.mark.parametrize(("name", "bits", "signed"), ACT_CASES)
def test_activation_quantizers_calibrate_integer_form_and_gradients(name: str, bits: int, signed: bool) -> None:
    x = torch.randn(64, 6).abs() if name in ("log2", "twin_uniform", "pact", "dorefa") else torch.randn(64, 6) + 0.5
    if name == "log2":
        x = torch.softmax(torch.randn(64, 6) * 3, dim=-1)
    q = make(name, bits, "act", False, signed=signed, symmetric=signed)
    q.calibrating = True
    q(x)
    q.finish_calibration()
    check_integer_form(q, x)
    if not signed and name not in ("log2",):
        assert float(q.get_zero_point()) == round(float(q.get_zero_point()))
    q.train()
    xg = x.clone().requires_grad_(True)
    q(xg).sum().backward()
    assert xg.grad is not None
    for pname, param in q.named_parameters():
        assert param.grad is not None, pname


def test_binary_and_ternary_value_sets() -> None:
    w = torch.tensor([[0.5, -0.2, 0.0, -0.9, 0.05, 0.6]])
    binary = make("binary", 1, "weight", False)
    assert binary.int_values(w).tolist() == [[1, -1, 1, -1, 1, 1]]
    assert torch.allclose(binary(w), w.abs().mean() * binary.int_values(w))
    ternary = make("ternary", 2, "weight", False)
    ternary(w)
    assert ternary.int_values(w).tolist() == [[1, 0, 0, -1, 0, 1]]  # Δ = 0.7·mean|w| = 0.3
    assert float(ternary.get_scale()) == pytest.approx((0.5 + 0.9 + 0.6) / 3)


def test_power_of_two_levels() -> None:
    q = make("pot", 3, "weight", False)  # 3 exponents: 0, ±1, ±2, ±4
    w = torch.tensor([[4.0, 3.1, 2.9, 1.4, 0.4, -0.6, -6.0]])
    q.initialize_from_tensor(w)
    assert q.grid.values == (-4, -2, -1, 0, 1, 2, 4)
    assert float(q.get_scale()) == 1.5  # max|w| = 6 ↦ the largest level 4
    assert (q.int_values(w) + 0.0).tolist() == [[2, 2, 2, 1, 0, 0, -4]]  # midpoints 0.5, 1.5, 3


def test_esb_value_set_spans_power_of_two_to_fixed_point() -> None:
    four_bit = make("esb", 4, "weight", False, options=(("significant_bits", 2),))
    assert [v for v in four_bit.grid.values if v >= 0] == [0, 1, 2, 3, 4, 6, 8, 12]  # ≤ 2 significant bits
    assert four_bit.grid.encoding == "esb" and four_bit.grid.storage_bits == 4
    one_bit = make("esb", 4, "weight", False, options=(("significant_bits", 1),))
    assert one_bit.grid.values == make("pot", 4, "weight", False).grid.values  # k = 1 is power-of-two
    fixed = make("esb", 4, "weight", False, options=(("significant_bits", 3),))
    assert [v for v in fixed.grid.values if v >= 0] == list(range(8))  # k = b − 1 is sign-magnitude fixed point
    for value in make("esb", 8, "weight", False, options=(("significant_bits", 5),)).grid.values:
        magnitude = abs(value)
        assert magnitude == 0 or (magnitude >> (magnitude & -magnitude).bit_length() - 1).bit_length() <= 5


def test_esb_refuses_value_sets_beyond_16_bits() -> None:
    with pytest.raises(ConfigError, match="reach magnitude 245760"):  # 4 exponent bits: octaves up to 2^14
        make("esb", 8, "weight", False, options=(("significant_bits", 4),))
    with pytest.raises(ConfigError, match="significant_bits must be in 1..3"):
        make("esb", 4, "weight", False, options=(("significant_bits", 4),))


@pytest.mark.parametrize(("high", "sp2"), [(0.25, 0.25), (0.25, 0.0), (0.0, 1.0)])
def test_row_mixed_formats_follow_the_ratios_and_their_value_sets(high: float, sp2: float) -> None:
    from nnchip.core.intspec import sp2_magnitudes

    torch.manual_seed(0)
    w = (torch.randn(6, 30) * torch.linspace(0.1, 1, 6)[:, None]).requires_grad_(True)
    q = make("row_mixed", 4, "weight", True, options=(("high_ratio", high), ("sp2_ratio", sp2)))
    q.initialize_from_tensor(w.detach())
    counts = torch.bincount(q.row_format, minlength=3).tolist()
    assert counts == [round(6 * high), 6 - round(6 * high) - round(6 * sp2), round(6 * sp2)]
    ints = q.int_values(w.detach())
    sp2_levels = torch.tensor(sorted(set(sp2_magnitudes(4))), dtype=ints.dtype)
    for row, row_format in zip(ints, q.row_format.tolist(), strict=True):
        if row_format == 2:
            assert bool(torch.isin(row.abs(), sp2_levels).all())
        else:
            assert int(row.abs().max()) <= (127 if row_format == 0 else 7)
    check_integer_form(q, w.detach())
    q.train()
    q(w).sum().backward()
    assert w.grad is not None and torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_row_mixed_gives_high_precision_to_the_rows_that_need_it() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 64)
    w[3, :2] = 12.0  # an outlier row: 4-bit fixed point crushes the rest of it
    q = make("row_mixed", 4, "weight", True, options=(("high_ratio", 1 / 6), ("sp2_ratio", 0.0)))
    q.initialize_from_tensor(w)
    assert q.row_format.tolist() == [1, 1, 1, 0, 1, 1]
    with pytest.raises(ConfigError, match="granularity 'channel'"):
        make("row_mixed", 4, "weight", False)
    with pytest.raises(ConfigError, match="sum of at most 1"):
        make("row_mixed", 4, "weight", True, options=(("high_ratio", 0.6), ("sp2_ratio", 0.6)))


def test_esb_scale_search_beats_max_scaling() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 200)
    q = make("esb", 4, "weight", True)
    q.initialize_from_tensor(w)
    searched = float((q(w) - w).pow(2).sum())
    q.set_params(w.abs().amax(dim=1, keepdim=True) / q.max_magnitude, torch.zeros(6, 1))
    assert searched < float((q(w) - w).pow(2).sum())


@pytest.mark.parametrize(
    ("name", "bits", "role", "match"),
    [("binary", 2, "weight", "needs bits 1"), ("ternary", 3, "weight", "needs bits 2"),
     ("pot", 8, "weight", "supports 2..5 bits"), ("log2", 8, "act", "supports 2..4 bits"),
     ("binary", 1, "act", "weights only"), ("sawb", 11, "weight", "has coefficients for"),
     ("esb", 8, "act", "weights only")],
)
def test_unsupported_bit_widths_are_named(name: str, bits: int, role: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make(name, bits, role, False)


@settings(max_examples=60, deadline=None)
@given(bits=st.integers(2, 16), signed=st.booleans(), symmetric=st.booleans(),
       values=st.lists(st.floats(-50, 50, allow_nan=False, width=32), min_size=2, max_size=64))
def test_uniform_grid_properties(bits: int, signed: bool, symmetric: bool, values: list[float]) -> None:
    x = torch.tensor(values)
    spec = QuantSpec(bits=bits, signed=signed, symmetric=symmetric)
    q = QUANTIZERS.get("minmax")(spec, role="act")
    q.calibrating = True
    q(x)
    q.finish_calibration()
    q.eval()
    y = q(x)
    ints = q.int_values(x)
    grid = q.grid
    assert int(ints.min()) >= grid.qmin and int(ints.max()) <= grid.qmax
    assert torch.allclose(q(y), y, atol=float(q.get_scale()) * 1e-3)  # idempotent
    zero = q(torch.zeros(1))
    assert float(zero) == 0.0 or not (grid.qmin <= float(q.get_zero_point()) <= grid.qmax)  # 0 is exact
    assert float(q.get_zero_point()) == round(float(q.get_zero_point()))


@pytest.mark.parametrize("factor", [1.0, 0.17677669529663687, 0.3])
def test_integer_input_codes_are_the_same_inside_a_compiled_graph(factor: float) -> None:
    """The integer LayerNorm's input codes, computed with a tensor scale while compiling (no graph break), equal
    the eager ones bit for bit, ties included, for exact and inexact scale factors."""
    from nnchip.quant.nonlinear import _IntegerInput
    from nnchip.quant.quantizers.lsq import LSQQuantizer

    source = LSQQuantizer(QuantSpec(bits=8, quantizer="lsq", signed=True, symmetric=False), role="act")
    source.initialize_from_tensor(torch.randn(4, 65, 128) * 3)
    with torch.no_grad():
        source.step.mul_(1.000731)
    integer_input = _IntegerInput(source, factor)
    codes = torch.compile(integer_input.codes, fullgraph=True)
    x = torch.randn(4, 65, 128) * 3
    scale = float(source.get_scale().detach()) * factor
    x.view(-1)[:1000] = (torch.arange(1000) - 500 + 0.5) * scale  # halfway between codes
    assert torch.equal(codes(x), integer_input.integer_values(x)[0])
