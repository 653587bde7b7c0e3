"""Exact u8×s8 convolution and linear layers on oneDNN's int8 kernels, with a float32 result.

oneDNN multiplies unsigned 8-bit activations by signed 8-bit weights and accumulates in int32; with unit scales
the int32 accumulator (plus a float32 bias) is converted to float32, which is exact while |acc| < 2^24 — the
interpreter only takes this path when the weight-aware bound proves that. Padded positions hold the activation
zero point (they contribute 0), as the integer contract requires.

Exactness needs a CPU whose int8 dot product does not saturate: without VNNI, x86 kernels sum pairs of u8·s8
products in a saturating int16 (vpmaddubsw). The backend is therefore enabled only when /proc/cpuinfo lists
VNNI or AMX-INT8 and a worst-case probe (255 × −128 and 255 × 127 in every pair) reproduces the exact sums.
`NNCHIP_INT8=0` in the environment disables it.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import Tensor

_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _cpu_has_vnni() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in _FLAGS)


def _ops_present() -> bool:
    return all(hasattr(torch.ops.onednn, name) for name in
               ("qconv_prepack", "qconv2d_pointwise", "qlinear_prepack", "qlinear_pointwise"))


class Int8Conv2d:
    """y = conv2d(x − x_zp, w) + bias as float32, x uint8 (N, C, H, W), w int8 (O, C/g, kh, kw)."""

    def __init__(self, weight: Tensor, bias: Tensor, x_zp: int, stride: list[int], padding: list[int],
                 dilation: list[int], groups: int) -> None:
        channels = weight.shape[0]
        self.scales = torch.ones(channels, dtype=torch.float32)
        self.zero_points = torch.zeros(channels, dtype=torch.int64)
        self.bias = bias.to(torch.float32)
        self.x_zp, self.stride, self.padding, self.dilation, self.groups = x_zp, stride, padding, dilation, groups
        self.packed = torch.ops.onednn.qconv_prepack(weight.to(torch.int8), self.scales, 1.0, x_zp, stride, padding,
                                                     dilation, groups, None)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.onednn.qconv2d_pointwise(x, 1.0, self.x_zp, self.packed, self.scales, self.zero_points,
                                                  self.bias, self.stride, self.padding, self.dilation, self.groups,
                                                  1.0, 0, torch.float32, "none", [], "")


class Int8Linear:
    """y = (x − x_zp) @ wᵀ + bias as float32, x uint8 (..., K), w int8 (N, K)."""

    def __init__(self, weight: Tensor, bias: Tensor, x_zp: int) -> None:
        channels = weight.shape[0]
        self.scales = torch.ones(channels, dtype=torch.float32)
        self.zero_points = torch.zeros(channels, dtype=torch.int64)
        self.bias = bias.to(torch.float32)
        self.x_zp = x_zp
        self.packed = torch.ops.onednn.qlinear_prepack(weight.to(torch.int8), None)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.ops.onednn.qlinear_pointwise(x.contiguous(), 1.0, self.x_zp, self.packed, self.scales,
                                                  self.zero_points, self.bias, 1.0, 0, torch.float32, "none", [], "")


def _probe() -> bool:
    """Worst-case pairs for a saturating int16 pair sum; True when conv and linear reproduce the exact sums."""
    channels = 64
    x = torch.full((2, channels, 5, 5), 255, dtype=torch.uint8)
    for value in (-128, 127):
        weight = torch.full((8, channels, 3, 3), value, dtype=torch.int64)
        conv = Int8Conv2d(weight, torch.zeros(8), 0, [1, 1], [0, 0], [1, 1], 1)
        if not torch.equal(conv(x), torch.full((2, 8, 3, 3), 255.0 * value * channels * 9)):
            return False
        linear = Int8Linear(weight.reshape(8, -1)[:, :256], torch.zeros(8), 0)
        if not torch.equal(linear(x.reshape(2, -1)[:, :256]), torch.full((2, 8), 255.0 * value * 256)):
            return False
    return True


@functools.cache
def available() -> bool:
    """True when the int8 kernels are present, the CPU has a non-saturating int8 dot product and the probe agrees."""
    if os.environ.get("NNCHIP_INT8", "1") == "0" or not _ops_present() or not _cpu_has_vnni():
        return False
    try:
        return _probe()
    except RuntimeError:
        return False
