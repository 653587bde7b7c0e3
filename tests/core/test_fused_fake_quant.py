"""The compiled single-pass fake quantization equals the torch chain it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nnchip.core import compiled, fused_fake_quant
from nnchip.core.qmath import fake_quantize_affine


def _fake_quant_with_grads(x: torch.Tensor, scale: float, zero_point: float, qmin: int, qmax: int,
                           upstream: torch.Tensor, fused: bool, monkeypatch: pytest.MonkeyPatch
                           ) -> tuple[torch.Tensor, ...]:
    """Output and the gradients of x, the scale and a learned zero point, on the kernels or on torch ops."""
    monkeypatch.setenv("NNCHIP_FUSED", "1" if fused else "0")
    compiled.refresh()
    try:
        x = x.clone().requires_grad_(True)
        s = torch.tensor(scale, requires_grad=True)
        z = torch.tensor(zero_point, requires_grad=True)
        assert fused_fake_quant.usable(x, s, z) == fused
        out = fake_quantize_affine(x, s, z, qmin, qmax)
        out.backward(upstream)
        return out.detach(), x.grad, s.grad, z.grad
    finally:
        monkeypatch.delenv("NNCHIP_FUSED")
        compiled.refresh()


grids = st.tuples(st.integers(1, 16), st.booleans()).map(
    lambda bits_signed: (-(2 ** (bits_signed[0] - 1)), 2 ** (bits_signed[0] - 1) - 1) if bits_signed[1]
    else (0, 2 ** bits_signed[0] - 1))


@settings(max_examples=60, deadline=None)
@given(grid=grids, scale_exp=st.integers(-20, 10), mantissa=st.floats(1.0, 2.0), zero_frac=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**31 - 1))
def test_kernels_equal_the_torch_chain(grid: tuple[int, int], scale_exp: int, mantissa: float, zero_frac: float,
                                       seed: int) -> None:
    """Values and ∂x bit for bit, the scale and zero-point gradients to float32 rounding, for every grid of
    1–16 bits, scales over 30 octaves, integer zero points, inputs with ties, clip-bound values, ±inf and NaN,
    and the LSQ+ gradient of a learned zero point."""
    if not compiled.available():
        pytest.skip("numba is not installed")
    monkeypatch = pytest.MonkeyPatch()
    qmin, qmax = grid
    scale = float(np.float32(mantissa * 2.0**scale_exp))
    zero_point = float(round(qmin + zero_frac * (qmax - qmin)))
    generator = torch.Generator().manual_seed(seed)
    codes = torch.randint(qmin - 3, qmax + 4, (2, 3000), generator=generator).float() - zero_point
    ties = codes + 0.5 * torch.randint(0, 2, codes.shape, generator=generator)  # exact halves on the grid
    x = torch.where(torch.rand(codes.shape, generator=generator) < 0.5, ties * scale,
                    torch.randn(codes.shape, generator=generator) * scale * (qmax - qmin + 1))
    x[0, :6] = torch.tensor([float("inf"), -float("inf"), float("nan"), (qmin - zero_point) * scale,
                             (qmax - zero_point) * scale, 0.0])
    upstream = torch.randn(x.shape, generator=generator)
    fused = _fake_quant_with_grads(x, scale, zero_point, qmin, qmax, upstream, True, monkeypatch)
    reference = _fake_quant_with_grads(x, scale, zero_point, qmin, qmax, upstream, False, monkeypatch)
    assert torch.equal(fused[0].nan_to_num(7.0), reference[0].nan_to_num(7.0))
    assert torch.equal(fused[1], reference[1])
    for ours, theirs in zip(fused[2:], reference[2:], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * float(upstream.abs().sum()) * scale,
                                   equal_nan=True)


def test_kernels_apply_only_where_they_are_exact() -> None:
    """Per-channel scales, other dtypes, non-contiguous and small tensors, and more than one torch thread keep
    the torch operations."""
    x = torch.randn(64, 128)
    one = torch.tensor(0.1)
    zero = torch.tensor(0.0)
    available = compiled.available()
    assert fused_fake_quant.usable(x, one, zero) == available
    assert not fused_fake_quant.usable(x, torch.full((64, 1), 0.1), zero)
    assert not fused_fake_quant.usable(x.double(), one.double(), zero.double())
    assert not fused_fake_quant.usable(x.t(), one, zero)
    assert not fused_fake_quant.usable(x[:8], one, zero)
    torch.set_num_threads(2)
    try:
        assert not fused_fake_quant.usable(x, one, zero)
    finally:
        torch.set_num_threads(1)


def test_a_vit_qat_step_is_the_same_on_the_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """One LSQ QAT step of a W4A4 ViT: every activation the kernels fake-quantize, and the logits, bit for bit as
    on torch operations; every parameter gradient to float32 rounding (the scale gradients are sums)."""
    if not compiled.available():
        pytest.skip("numba is not installed")
    from nnchip.models import vit_tiny
    from nnchip.quant import QuantConfig, QuantSpec, default_weight_spec, quantize

    config = QuantConfig(weight=default_weight_spec(4, "lsq"), other_bits=8, first_last_bits=8,
                         act=QuantSpec(bits=4, quantizer="lsq", signed=False, symmetric=False))
    x = torch.randn(32, 3, 32, 32)
    labels = torch.randint(0, 10, (32,))
    model = quantize(vit_tiny(in_channels=3, image_size=32), config, example_inputs=x[:2])
    with torch.no_grad():
        model.eval()
        model(x)  # initialise every quantizer
    model.train()
    calls: list[int] = []
    kernel = fused_fake_quant.forward
    monkeypatch.setattr(fused_fake_quant, "forward",
                        lambda x, *args, **kw: calls.append(x.numel()) or kernel(x, *args, **kw))
    results = []
    for fused in (True, False):
        monkeypatch.setenv("NNCHIP_FUSED", "1" if fused else "0")
        compiled.refresh()
        model.zero_grad(set_to_none=True)
        logits = model(x)
        torch.nn.functional.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                          if p.grad is not None}))
    monkeypatch.delenv("NNCHIP_FUSED")
    compiled.refresh()
    assert len(calls) >= 20  # the activations went through the kernels
    (fused_logits, fused_grads), (torch_logits, torch_grads) = results
    assert torch.equal(fused_logits, torch_logits)
    assert fused_grads.keys() == torch_grads.keys() and len(fused_grads) > 50
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, torch_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_changing_the_input_in_place_before_the_backward_is_an_error(kernels: str) -> None:
    """The kernels keep x for the backward pass: editing it in place afterwards raises instead of giving wrong
    gradients (the torch chain keeps its own tensors and is unaffected)."""
    x = torch.randn(8192, requires_grad=True)
    produced = x * 1.0
    out = fake_quantize_affine(produced, torch.tensor(0.1, requires_grad=True), torch.tensor(0.0), -8, 7)
    produced.add_(1.0)
    if kernels == "fused":
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
    else:
        out.sum().backward()
        assert x.grad is not None
