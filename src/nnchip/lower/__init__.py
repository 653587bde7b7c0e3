"""Integer lowering: IntGraph, `lower(qmodel)`, and the exact interpreter `run(graph, inputs)`."""

from nnchip.lower.interpreter import RunResult, run
from nnchip.lower.intgraph import IntGraph, IntNode, IntTensor
from nnchip.lower.lowering import lower

__all__ = ["IntGraph", "IntNode", "IntTensor", "RunResult", "lower", "run"]
