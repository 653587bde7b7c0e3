"""Log2 quantizer for post-softmax probabilities (as in FQ-ViT / RepQ-ViT's log2 quantizer).

A b-bit code c gives 0 for c = 0 and 2^-(K − c) … where K = 2^b − 2, i.e. the real values
{0} ∪ {2^−k : k = 0 … K}. Integer form on the fixed scale 2^−K: q ∈ {0} ∪ {2^j : j = 0 … K}, encoding
POWER_OF_TWO (unsigned; code 0 → 0, code c ≥ 1 → 2^(c−1)). x ↦ 2^−round(−log2 x), values below 2^−K·√½
become 0. Supported for 2..4 bits, so that the integers fit 16 bits; input must be non-negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nnchip.core.errors import ConfigError
from nnchip.core.intspec import Encoding, IntSpec
from nnchip.quant.base import IntGrid, Quantizer
from nnchip.quant.registry import register_quantizer


@register_quantizer("log2")
class Log2Quantizer(Quantizer):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not 2 <= self.spec.bits <= 4:
            raise ConfigError(f"bits: quantizer 'log2' supports 2..4 bits, got {self.spec.bits}")
        self.set_params(torch.full_like(self.scale, 2.0 ** -self.max_exponent), torch.zeros_like(self.zero_point))

    @property
    def max_exponent(self) -> int:
        return 2**self.spec.bits - 2

    @property
    def grid(self) -> IntGrid:
        values = (0,) + tuple(2**j for j in range(self.max_exponent + 1))
        return IntGrid(IntSpec(self.max_exponent + 1, signed=False), Encoding.POWER_OF_TWO, values,
                       code_bits=self.spec.bits)

    def initialize_from_range(self, lo: Tensor, hi: Tensor) -> None:
        return None

    def initialize_from_tensor(self, x: Tensor) -> None:
        return None

    def _values(self, x: Tensor) -> Tensor:
        k = torch.round(-torch.log2(torch.clamp(x, min=2.0 ** -(self.max_exponent + 8))))
        k = torch.clamp(k, min=0)
        return torch.where(k > self.max_exponent, torch.zeros_like(x), torch.pow(2.0, -k))

    def fake_quant(self, x: Tensor) -> Tensor:
        return x + (self._values(x) - x).detach()

    @torch.no_grad()
    def int_values(self, x: Tensor) -> Tensor:
        return torch.round(self._values(x) / self.get_scale())
