"""Single-pass compiled fake quantization with a per-tensor scale (the activation quantizers of a QAT step).

The torch chain of `qmath._FakeQuantize` reads and writes a tensor of x's size five times in the forward pass
and three times in the backward pass; on a CPU the QAT step of a transformer, with a quantizer in front of
every matmul operand, is bound by that traffic. These kernels make one pass each way:

    forward   r = x/s;  c = clip(rint(r), qmin − z, qmax − z);  out = c·s;
              mask = [rint(r) == c] (one byte);  local = c − r inside the range, c outside (LSQ's ∂x̂/∂s)
    backward  ∂x = g·mask;  Σ local·g;  Σ g·mask;  Σ g   (the sums in float64)

`out`, `mask`, `local` and ∂x equal the torch chain's bit for bit (the same float32 operations in the same
order, round half to even); the three sums, which the scale and zero-point gradients are made of, are
float64 accumulations and so differ from torch's float32 tree sums only in rounding.
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

    One thread only: with two, torch's chain runs each pass on both cores, and these kernels split across a
    Python thread pool measured no faster in a ViT QAT step (the pool thread shares a core with torch's OpenMP
    worker, which keeps spinning after each torch operation)."""
    return (torch.get_num_threads() == 1 and x.dtype == torch.float32 and x.device.type == "cpu"
            and x.numel() >= MIN_ELEMENTS and x.is_contiguous() and scale.numel() == 1 and zero_point.numel() == 1
            and scale.dtype == torch.float32 and available())


def _forward(x: Any, s: Any, lo: Any, hi: Any, out: Any, mask: Any, local: Any) -> None:  # pragma: no cover
    # selects rather than branches, and the optional output decided outside the loop, so the loop vectorises
    if local.size > 0:
        for i in range(x.size):
            r = x[i] / s
            rounded = np.rint(r)
            c = lo if rounded < lo else rounded
            c = hi if c > hi else c  # NaN stays NaN, and NaN counts as outside
            inside = rounded == c
            mask[i] = inside
            local[i] = c - r if inside else c
            out[i] = c * s
    else:
        for i in range(x.size):
            rounded = np.rint(x[i] / s)
            c = lo if rounded < lo else rounded
            c = hi if c > hi else c
            mask[i] = rounded == c
            out[i] = c * s


def _backward(grad: Any, mask: Any, local: Any, with_zero_point: bool,
              grad_x: Any) -> tuple[float, float, float]:  # pragma: no cover - compiled
    for i in range(grad.size):
        grad_x[i] = grad[i] * np.float32(mask[i])
    local_sum = 0.0
    if local.size > 0:
        for i in range(grad.size):
            local_sum += local[i] * grad[i]
    inside_sum = 0.0
    total = 0.0
    if with_zero_point:
        for i in range(grad.size):
            inside_sum += grad_x[i]
            total += grad[i]
    return local_sum, inside_sum, total


def forward(x: Tensor, scale: float, lo: float, hi: float, with_local: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(out, mask, local) for x (see the module docstring); lo, hi = qmin − z, qmax − z; `local` is empty
    unless `with_local`."""
    out = torch.empty_like(x)
    mask = torch.empty(x.shape, dtype=torch.uint8)
    local = torch.empty_like(x) if with_local else x.new_empty(0)
    compiled(_forward)(x.numpy().reshape(-1), np.float32(scale), np.float32(lo), np.float32(hi),
                       out.numpy().reshape(-1), mask.numpy().reshape(-1), local.numpy().reshape(-1))
    return out, mask, local


def backward(grad: Tensor, mask: Tensor, local: Tensor, with_zero_point: bool) -> tuple[Tensor, float, float, float]:
    """(∂x, Σ local·g, Σ g·mask, Σ g) for the upstream gradient g; the first sum is 0 when `local` is empty, the
    other two unless `with_zero_point`."""
    grad = grad.contiguous() if grad.dtype == torch.float32 else grad.float().contiguous()
    grad_x = torch.empty_like(grad)
    local_sum, inside_sum, total = compiled(_backward, reassociate=True)(
        grad.numpy().reshape(-1), mask.numpy().reshape(-1), local.numpy().reshape(-1), with_zero_point,
        grad_x.numpy().reshape(-1))
    return grad_x, local_sum, inside_sum, total
