"""Built-in quantizers; each file registers one (explicit imports, no directory scanning)."""

from nnchip.quant.quantizers import (  # noqa: F401
    binary,
    dorefa,
    esb,
    fixed,
    log2,
    lsq,
    lsq_plus,
    pact,
    pot,
    row_mixed,
    sawb,
    ternary,
    twin_uniform,
    uniform,
)
