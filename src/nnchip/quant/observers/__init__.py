"""Built-in observers; each file registers one (explicit imports, no directory scanning)."""

from nnchip.quant.observers import ema, minmax, mse, percentile  # noqa: F401
