"""Built-in observers; each file registers one (explicit imports, no directory scanning)."""

from nnchip.quant.observers import minmax  # noqa: F401
