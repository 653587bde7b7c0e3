"""Built-in quantizers; each file registers one (explicit imports, no directory scanning)."""

from nnchip.quant.quantizers import fixed, lsq, uniform  # noqa: F401
