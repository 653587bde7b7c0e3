"""IntGraph: the typed integer graph that every reader after `lower` uses (interpreter, export, hardware).

Tensors carry an integer type (bits, signed, narrow), a zero point and — as metadata only — a real scale.
Nodes carry integer parameters (weights, biases, multipliers, shifts, clamp bounds) and attributes
(strides, padding value, rounding, accumulator width). No float takes part in integer computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnchip.core.intspec import IntSpec

INTEGER_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32)


@dataclass
class IntTensor:
    """An integer tensor: shape (batch dimension first, as traced), type, zero point, real scale (metadata)."""

    name: str
    shape: tuple[int, ...]
    spec: IntSpec
    zero_point: int
    scale: float  # metadata: real value = scale · (q − zero_point); never read by integer computation

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), **self.spec.to_dict(), "zero_point": self.zero_point,
                "scale": self.scale}


@dataclass
class IntNode:
    """One integer operation: `op` on `inputs` (tensor names) producing `output`."""

    name: str
    op: str
    inputs: list[str]
    output: str
    params: dict[str, np.ndarray] = field(default_factory=dict)  # integer arrays only
    attrs: dict[str, Any] = field(default_factory=dict)  # ints, bools, strings, lists of ints; "source" = path

    def __post_init__(self) -> None:
        for key, value in self.params.items():
            if not isinstance(value, np.ndarray) or value.dtype not in INTEGER_DTYPES:
                raise TypeError(f"{self.name}: parameter {key} must be an integer numpy array")


@dataclass
class IntGraph:
    """Nodes in topological order; `inputs`/`outputs` name tensors; `tensors` types every tensor."""

    tensors: dict[str, IntTensor]
    nodes: list[IntNode]
    inputs: list[str]
    outputs: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def tensor(self, name: str) -> IntTensor:
        return self.tensors[name]

    def producer(self, tensor_name: str) -> IntNode | None:
        return next((n for n in self.nodes if n.output == tensor_name), None)
