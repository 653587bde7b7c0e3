"""Pure quantization math on real tensors (fake-quant, ranges, STE). Integer-only math is in `intmath`.

Conventions (see docs/integer-semantics.md):
    quantize      q  = clip(round(x / s) + z, qmin, qmax)
    dequantize    x̂  = s · (q − z)
    fake-quant    x̂  = s · (clip(round(x / s) + z, qmin, qmax) − z)
`round` is torch.round (ties to even) unless a function says otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core import fused_fake_quant


def round_ste(x: Tensor) -> Tensor:
    """round(x) in the forward pass, identity gradient in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


def floor_ste(x: Tensor) -> Tensor:
    """floor(x) forward, identity gradient backward."""
    return x + (torch.floor(x) - x).detach()


def grad_scale(x: Tensor, factor: float) -> Tensor:
    """Value of x, gradient multiplied by `factor` (LSQ's step-size gradient scaling)."""
    scaled = x * factor
    return (x - scaled).detach() + scaled


def quantize_affine(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """q = clip(round(x / s) + z, qmin, qmax), returned as an integer-valued float tensor."""
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)


def dequantize_affine(q: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
    """x̂ = s · (q − z)."""
    return scale * (q - zero_point)


class _FakeQuantize(torch.autograd.Function):
    """x̂ = s·(clip(round(x/s) + z, qmin, qmax) − z) with the STE gradients written out, so a QAT step costs a
    few fused passes instead of autograd through every elementwise op:
        ∂x̂/∂x = 1 inside the range, 0 outside
        ∂x̂/∂s = (q − z) − x/s inside, q − z outside (LSQ)
        ∂x̂/∂z = 0 inside, −s outside (LSQ+)
    A fixed integer zero point moves the clip bounds instead of the codes: q − z = clip(round(x/s), qmin − z,
    qmax − z), the same integers without two passes. The range mask is a float 0/1 tensor written by `eq` over
    the unclipped codes' buffer (boolean masks cost several times a float pass on CPU), and the LSQ factor
    (q − z) − m·x/s overwrites x/s: each pass reads or writes one of x's size, and the step is bound by memory
    traffic, not arithmetic. With one torch thread and a per-tensor scale, `fused_fake_quant` computes the same
    in one compiled pass each way."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:  # type: ignore[override]
        ctx.fused = fused_fake_quant.usable(x, scale, zero_point)
        if ctx.fused:  # the same values in one compiled pass; the backward recomputes the mask from x
            shift = float(zero_point)
            ctx.bounds = (float(scale), qmin - shift, qmax - shift)
            ctx.save_for_backward(x, scale)
            return fused_fake_quant.forward(x, *ctx.bounds)
        ratio = x / scale
        rounded = torch.round(ratio)
        codes = _clip(rounded, zero_point, qmin, qmax)  # q − z
        mask = torch.eq(rounded, codes, out=rounded)  # 1 inside the range, 0 outside
        local = torch.addcmul(codes, ratio, mask, value=-1.0, out=ratio) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(mask, local, scale)
        return codes.mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        if ctx.fused:
            x, scale = ctx.saved_tensors
            grad_x, local_sum, inside_sum, total = fused_fake_quant.backward(
                grad, x, *ctx.bounds, with_local=ctx.needs_input_grad[1], with_zero_point=ctx.needs_input_grad[2])
            grad_scale = torch.full_like(scale, local_sum) if ctx.needs_input_grad[1] else None
            grad_zero_point = (torch.full_like(scale, (inside_sum - total) * float(scale))
                               if ctx.needs_input_grad[2] else None)
            return grad_x if ctx.needs_input_grad[0] else None, grad_scale, grad_zero_point, None, None
        mask, local, scale = ctx.saved_tensors
        inside = grad * mask if ctx.needs_input_grad[0] or ctx.needs_input_grad[2] else None
        grad_scale = (local * grad).sum_to_size(scale.shape) if ctx.needs_input_grad[1] else None
        grad_zero_point = None
        if ctx.needs_input_grad[2]:  # −s·grad outside the range
            grad_zero_point = (inside.sum_to_size(scale.shape) - grad.sum_to_size(scale.shape)).mul_(scale)
        return inside if ctx.needs_input_grad[0] else None, grad_scale, grad_zero_point, None, None


def _clip(codes: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """clip(codes + z, qmin, qmax) − z as a new tensor, with z folded into the bounds (exact for integer codes
    and zero points; a per-tensor zero point as Python numbers, since tensor bounds cost several passes)."""
    if torch.compiler.is_compiling():  # no host reads in a compiled graph; the compiler fuses the bounds
        shift = zero_point.detach()
        return torch.minimum(torch.maximum(codes, qmin - shift), qmax - shift)
    if zero_point.numel() == 1:
        shift = float(zero_point)
        return codes.clamp(qmin - shift, qmax - shift)
    if not zero_point.requires_grad and not bool(zero_point.any()):
        return codes.clamp(qmin, qmax)
    shift = zero_point.detach()
    return torch.minimum(torch.maximum(codes, qmin - shift), qmax - shift)


def fake_quantize_affine(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """s · (clip(round_ste(x / s) + z, qmin, qmax) − z): STE inside the range, zero gradient outside.

    Gradients flow to `scale` and (if it requires grad) `zero_point` as LSQ/LSQ+ define them:
    d x̂/d s = round(x/s) − x/s inside the range, qmin−z or qmax−z outside.
    """
    zero_point = torch.as_tensor(zero_point, dtype=x.dtype, device=x.device)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    if not torch.is_grad_enabled() or not (x.requires_grad or scale.requires_grad or zero_point.requires_grad):
        q = torch.round(x / scale).add_(zero_point).clamp_(qmin, qmax)
        return q.sub_(zero_point).mul_(scale)
    return _FakeQuantize.apply(x, scale, zero_point, qmin, qmax)


def range_to_scale_zero_point(
    lo: Tensor, hi: Tensor, qmin: int, qmax: int, *, symmetric: bool, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Scale and integer zero point that map [lo, hi] (widened to contain 0) onto [qmin, qmax].

    symmetric:  z = 0 (or the midpoint code for unsigned grids), s = max(|lo|, |hi|) / Q_P
                where Q_P = qmax for signed grids (narrow or not) — the "divide by Q_P" convention.
    asymmetric: s = (hi − lo) / (qmax − qmin), z = clip(qmin − round(lo / s), qmin, qmax)
    """
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    if symmetric:
        amax = torch.maximum(-lo, hi)
        if qmin < 0:
            scale = torch.clamp(amax / qmax, min=eps)
            return scale, torch.zeros_like(scale)
        # unsigned symmetric: a non-negative tensor, zero point 0, full unsigned range
        scale = torch.clamp(hi / qmax, min=eps)
        return scale, torch.zeros_like(scale)
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=eps)
    zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax)
    return scale, zero_point


def sqnr_db(reference: Tensor, approx: Tensor) -> float:
    """Signal-to-quantization-noise ratio 10·log10(Σ ref² / Σ (ref − approx)²) in dB (inf if equal)."""
    noise = torch.sum((reference.double() - approx.double()) ** 2)
    signal = torch.sum(reference.double() ** 2)
    if noise == 0:
        return float("inf")
    return float(10.0 * torch.log10(signal / noise))
