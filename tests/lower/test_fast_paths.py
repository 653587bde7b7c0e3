"""The interpreter's fast kernels equal the core integer primitives exactly."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nnchip.core.intmath import requantize
from nnchip.lower.fast_paths import Conv2dFn, exact_gemm, linear_fn, matmul_exact, requantize_inplace


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), acc_bits=st.integers(2, 40), per_channel=st.booleans(),
       zp=st.integers(-128, 127), shift_lo=st.integers(1, 62))
def test_inplace_requantization_equals_the_core_primitive(seed: int, acc_bits: int, per_channel: bool, zp: int,
                                                          shift_lo: int) -> None:
    g = torch.Generator().manual_seed(seed)
    acc = torch.randint(-(2 ** (acc_bits - 1)), 2 ** (acc_bits - 1), (4, 3, 5), generator=g)
    shape = (1, 3, 1) if per_channel else (1,)
    shift = torch.randint(shift_lo, min(63 - 0, shift_lo + 8), shape, generator=g).clamp(max=62)
    limit = 2 ** min(31, 63 - acc_bits) - 1  # |acc·M0| < 2^63
    multiplier = torch.randint(0, max(1, limit), shape, generator=g)
    expected = requantize(acc, multiplier, shift, out_zero_point=zp, lo=-128, hi=127)
    assert torch.equal(requantize_inplace(acc.clone(), multiplier, shift, zp, -128, 127), expected)


def test_float_reductions_are_exact_and_chunking_kicks_in_beyond_float64() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (2, 6, 7, 7), generator=g)
    w = torch.randint(-127, 128, (4, 6, 3, 3), generator=g)
    b = torch.randint(-1000, 1000, (4,), generator=g)
    reference = torch.zeros(2, 4, 5, 5, dtype=torch.int64)
    cols = F.unfold(x.double(), 3).long()  # exact integers in float64 here (tiny)
    reference = (torch.einsum("ok,bkl->bol", w.reshape(4, -1), cols) + b[None, :, None]).reshape(2, 4, 5, 5)
    fn = Conv2dFn([1, 1], [0, 0], [1, 1], 1)
    for acc_bits in (25, 40, 60):  # float32, float64, int64-added float64 chunks
        assert torch.equal(exact_gemm(fn, x, w, b, acc_bits, split_axis=1), reference)
    big_x = torch.randint(-(2**20), 2**20, (3, 64), generator=g)
    big_w = torch.randint(-(2**20), 2**20, (5, 64), generator=g)
    exact = big_x @ big_w.T  # int64 matmul: ~2^46 per product, sums need more than float64's 53 bits
    assert torch.equal(exact_gemm(linear_fn, big_x, big_w, None, 60, split_axis=-1), exact)
    assert torch.equal(matmul_exact(big_x, big_w.T, 60), exact)
