"""Integer primitives: bit-exact against exact rational arithmetic and the contract's worked examples."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnchip.core.errors import ConversionError
from nnchip.core.intmath import (
    Rounding,
    div_floor,
    isqrt,
    quantize_multiplier,
    requantize,
    round_shift,
)


def reference_round(value: Fraction, mode: Rounding) -> int:
    floor = math.floor(value)
    frac = value - floor
    if mode is Rounding.FLOOR:
        return floor
    if frac != Fraction(1, 2):
        return floor + (1 if frac > Fraction(1, 2) else 0)
    if mode is Rounding.HALF_UP:
        return floor + 1
    if mode is Rounding.HALF_AWAY:
        return floor + 1 if value > 0 else floor
    return floor if floor % 2 == 0 else floor + 1  # HALF_EVEN


@pytest.mark.parametrize(
    ("v", "n", "expected"),
    [(5, 1, (3, 3, 2, 2)), (-5, 1, (-2, -3, -2, -3)), (-3, 1, (-1, -2, -2, -2)), (-6, 2, (-1, -2, -2, -2)),
     (-7, 2, (-2, -2, -2, -2))],
)
def test_round_shift_table_of_the_contract(v: int, n: int, expected: tuple[int, int, int, int]) -> None:
    modes = (Rounding.HALF_UP, Rounding.HALF_AWAY, Rounding.HALF_EVEN, Rounding.FLOOR)
    got = tuple(int(round_shift(torch.tensor([v]), n, m)) for m in modes)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**52), 2**52), st.integers(0, 40), st.sampled_from(list(Rounding)))
def test_round_shift_matches_exact_rational_rounding(v: int, n: int, mode: Rounding) -> None:
    expected = v if n == 0 else reference_round(Fraction(v, 2**n), mode)
    assert int(round_shift(torch.tensor([v], dtype=torch.int64), n, mode)) == expected


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-9, 1e3, allow_nan=False), st.sampled_from([16, 32]))
def test_quantize_multiplier_precision(real: float, mult_bits: int) -> None:
    m0, n = quantize_multiplier(real, mult_bits)
    assert 1 <= n <= 62 and 0 <= m0 < 2 ** (mult_bits - 1)
    if n < 62:
        assert abs(m0 * 2.0**-n - real) <= 2.0 ** (-n - 1) * (1 + 1e-12)


def test_requantize_worked_example_of_the_contract() -> None:
    m0, n = quantize_multiplier(0.0235 * 0.00392 / 0.0471)
    assert (m0, n) == (1_075_233_664, 39)
    acc = torch.tensor([9_813 + 4_017, -30_911 + 4_017, 80_000 + 4_017])
    y = requantize(acc, m0, n, out_zero_point=-5, lo=-128, hi=127)
    assert y.tolist() == [22, -58, 127]


def test_average_pool_worked_example() -> None:
    m0, n = quantize_multiplier(0.02 / (49 * 0.015))
    assert (m0, n) == (1_869_917_734, 36)
    assert int(requantize(torch.tensor([2_719]), m0, n, lo=-128, hi=127)) == 74


def test_quantize_multiplier_rejects_bad_values() -> None:
    with pytest.raises(ConversionError):
        quantize_multiplier(float("nan"))
    with pytest.raises(ConversionError):
        quantize_multiplier(2.0**40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**62 - 1), min_size=1, max_size=20))
def test_isqrt_is_exact_floor_sqrt(values: list[int]) -> None:
    got = isqrt(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [math.isqrt(v) for v in values]


def test_div_floor_rounds_towards_minus_infinity() -> None:
    assert div_floor(torch.tensor([-7, 7]), 2).tolist() == [-4, 3]


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**31), 2**31 - 1), st.floats(1e-6, 0.99), st.integers(-128, 127))
def test_requantize_is_within_one_lsb_of_the_real_value(acc: int, real: float, zp: int) -> None:
    m0, n = quantize_multiplier(real)
    y = int(requantize(torch.tensor([acc]), m0, n, out_zero_point=zp, lo=-(2**40), hi=2**40))
    assert abs((y - zp) - acc * real) <= 0.5 + abs(acc) * real * 2.0**-30 + 1e-9


@pytest.mark.parametrize("learned_zero_point", [True, False])
@pytest.mark.parametrize("zero", [0.0, 3.0])
@pytest.mark.parametrize("scale_shape", [(), (4, 1)])
def test_fake_quantize_gradients_are_the_straight_through_ones(scale_shape: tuple[int, ...], zero: float,
                                                               learned_zero_point: bool, kernels: str) -> None:
    """The hand-written backward equals autograd through the reference expression (LSQ / LSQ+ gradients), for
    per-tensor and per-row scales, zero and non-zero, learned and fixed zero points, on the compiled kernels
    (per-tensor scales; the tensor is large enough for them) and on torch operations; a second backward through
    the same graph (retain_graph) gives the same gradients (the backward leaves its saved tensors intact)."""
    from nnchip.core.qmath import fake_quantize_affine, round_ste

    torch.manual_seed(0)
    x = (torch.randn(4, 1250) * 3).requires_grad_(True)
    x.data[0, :4] = torch.tensor([-8.5, -7.5, 6.5, 7.5]) * 0.5  # rounding ties at the clip bounds (scale 0.5)
    scale = torch.full(scale_shape, 0.5).add_(torch.rand(scale_shape) * (0 if scale_shape == () else 1))
    scale.requires_grad_(True)
    zero_point = torch.full(scale_shape, zero, requires_grad=learned_zero_point)
    params = [x, scale, zero_point] if learned_zero_point else [x, scale]
    upstream = torch.randn(4, 1250)
    reference = scale * (torch.clamp(round_ste(x / scale) + zero_point, -8, 7) - zero_point)
    expected = torch.autograd.grad((reference * upstream).sum(), params)
    value = fake_quantize_affine(x, scale, zero_point, -8, 7)
    assert torch.equal(value, reference)
    loss = (value * upstream).sum()
    first = torch.autograd.grad(loss, params, retain_graph=True)
    second = torch.autograd.grad(loss, params)
    for a, b, c in zip(first, second, expected, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-4)
