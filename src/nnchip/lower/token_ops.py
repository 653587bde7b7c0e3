"""Token selection (EViT-style token pruning, nnchip.prune.token) in the IntGraph: lowering and reference run.

IntGraph op `token_select`, inputs [x (B, T, C), probs (B, H, T, T)]: `nnchip.core.token_select` on
x − in_zero_point and the block's integer attention probabilities, then every token (kept ones and the package
token) requantized onto the output grid: requant(t; M0, n, 0, out_zero_point, lo, hi), M = S_x / S_y.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor, fx

from nnchip.core.errors import ConversionError
from nnchip.core.intmath import requantize
from nnchip.core.token_select import token_select
from nnchip.lower.intgraph import IntNode, IntTensor

if TYPE_CHECKING:
    from nnchip.lower.lowering import _Lowerer


def emit_token_select(lowerer: _Lowerer, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
    x, probs = (lowerer.input_tensor(arg, node) for arg in node.args[:2])
    if probs.zero_point != 0 or probs.spec.signed:
        raise ConversionError(f"{lowerer.where(node)}: token selection needs unsigned attention probabilities with "
                              f"zero point 0 (a softmax output), got zero point {probs.zero_point}")
    params = lowerer.requant_params(np.array([x.scale / out.scale]), lowerer.where(node))
    keep = int(lowerer.module(node).keep)
    lowerer.nodes.append(IntNode(name, "token_select", [x.name, probs.name], name, params,
                                 {"keep": keep, "in_zero_point": x.zero_point, "out_zero_point": out.zero_point,
                                  "lo": lo, "hi": hi, "rounding": "half_up", "source": lowerer.where(node)}))


def run_token_select(node: IntNode, x: Tensor, probs: Tensor) -> Tensor:
    """The reference evaluation (int64 in, int64 out)."""
    selected = token_select(x - int(node.attrs["in_zero_point"]), probs, int(node.attrs["keep"]))
    return requantize(selected, int(node.params["multiplier"][0]), int(node.params["shift"][0]),
                      out_zero_point=int(node.attrs["out_zero_point"]), lo=int(node.attrs["lo"]),
                      hi=int(node.attrs["hi"]))

