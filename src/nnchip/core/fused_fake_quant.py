"""Single-pass compiled fake quantization with a per-tensor scale (the activation quantizers of a QAT step).

The torch chain of `qmath._FakeQuantize` reads and writes a tensor of x's size five times in the forward pass
and three times in the backward pass, and allocates three; on a CPU the QAT step of a transformer, with a
quantizer on every matmul operand, is bound by that traffic. These kernels make one pass each way and keep
x for the backward pass instead of a range mask and the LSQ factor (x is the quantizer's own input, which a
captured graph gives to no other consumer; an in-place change of it is caught by autograd's version check):

    forward   c = clip(rint(x/s), qmin − z, qmax − z);  out = c·s
    backward  recomputes r = x/s and c, inside = [rint(r) == c];  ∂x = g·inside;
              Σ g·(c − r if inside else c) (LSQ's ∂x̂/∂s);  Σ g·inside and Σ g (LSQ+'s ∂x̂/∂z)

`out` and ∂x equal the torch chain's bit for bit (the same float32 operations in the same order, round half
to even); the sums, which the scale and zero-point gradients are made of, accumulate in float64 and so
differ from torch's float32 tree sums only in rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from nnchip.core.compiled import available, compiled

MIN_ELEMENTS = 4096  # below this, the call overhead outweighs the saved passes


def usable(x: Tensor, scale: Tensor, zero_point: Tensor) -> bool:
    """The kernels apply: numba is on, torch runs on one thread, x is a contiguous float32 CPU tensor of at
    least MIN_ELEMENTS, and the scale and zero point are single float32 values.

    One thread only: with two, a W4A4 ViT QAT step measured the same with and without the kernels (torch's
    chain runs each pass on both cores), and slower with the kernels split across a Python thread pool (the
    pool thread shares a core with torch's OpenMP worker, which keeps spinning after each torch operation)."""
    if torch.compiler.is_compiling():
        return False
    return (torch.get_num_threads() == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.numel() >= MIN_ELEMENTS and x.is_contiguous() and scale.numel() == 1
            and zero_point.numel() == 1 and scale.dtype == torch.float32 and available())


def _forward(x: Any, s: Any, lo: Any, hi: Any, out: Any) -> None:  # pragma: no cover - compiled
    for i in range(x.size):
        rounded = np.rint(x[i] / s)
        c = lo if rounded < lo else rounded  # selects, not branches: the loop vectorises
        c = hi if c > hi else c  # NaN stays NaN
        out[i] = c * s


def _backward(grad: Any, x: Any, s: Any, lo: Any, hi: Any, with_local: bool, with_zero_point: bool,
              grad_x: Any) -> tuple[float, float, float]:  # pragma: no cover - compiled
    local_sum = 0.0
    inside_sum = 0.0
    total = 0.0
    for i in range(grad.size):
        g = grad[i]
        r = x[i] / s
        rounded = np.rint(r)
        c = lo if rounded < lo else rounded
        c = hi if c > hi else c
        inside = rounded == c  # NaN counts as outside
        passed = g * np.float32(inside)
        grad_x[i] = passed
        if with_local:
            local_sum += (c - r if inside else c) * g
        if with_zero_point:
            inside_sum += passed
            total += g
    return local_sum, inside_sum, total


def forward(x: Tensor, scale: float, lo: float, hi: float) -> Tensor:
    """s·clip(rint(x/s), lo, hi) for x (lo, hi = qmin − z, qmax − z)."""
    out = torch.empty_like(x)
    compiled(_forward)(x.numpy().reshape(-1), np.float32(scale), np.float32(lo), np.float32(hi),
                       out.numpy().reshape(-1))
    return out


def backward(grad: Tensor, x: Tensor, scale: float, lo: float, hi: float, *, with_local: bool,
             with_zero_point: bool) -> tuple[Tensor, float, float, float]:
    """(∂x, Σ g·local, Σ g·inside, Σ g) for the upstream gradient g of `forward(x, scale, lo, hi)`; the first
    sum is 0 unless `with_local`, the other two unless `with_zero_point`."""
    grad = grad.contiguous() if grad.dtype == torch.float32 else grad.float().contiguous()
    grad_x = torch.empty_like(grad)
    local_sum, inside_sum, total = compiled(_backward, reassociate=True)(
        grad.numpy().reshape(-1), x.numpy().reshape(-1), np.float32(scale), np.float32(lo), np.float32(hi),
        with_local, with_zero_point, grad_x.numpy().reshape(-1))
    return grad_x, local_sum, inside_sum, total
