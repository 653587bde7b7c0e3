import torch
from torch import nn

from nnchip import QuantConfig, Quantizer, QuantSpec, calibrate, quantize, register_quantizer


@register_quantizer("pow2_scale")
class PowerOfTwoScaleQuantizer(Quantizer):
    """Uniform grid whose scale is rounded up to a power of two, so rescaling is a pure shift."""

    def initialize_from_range(self, lo: torch.Tensor, hi: torch.Tensor) -> None:
        super().initialize_from_range(lo, hi)  # the usual scale and zero point for this grid ...
        self.set_params(2.0 ** torch.ceil(torch.log2(self.scale)), self.zero_point)  # ... then 2^ceil(log2 s)


model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)).eval()
spec = QuantSpec(bits=4, quantizer="pow2_scale", granularity="channel", narrow=True)
qmodel = quantize(model, QuantConfig(weight=spec, first_last_bits=None), example_inputs=torch.randn(1, 1, 8, 8))
calibrate(qmodel, [torch.randn(16, 1, 8, 8)])
print(qmodel(torch.randn(2, 1, 8, 8)).shape)
