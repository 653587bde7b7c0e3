"""Lowering of a LUT layer (`nnchip.vq.LUTLayer`) into two IntGraph nodes (docs/vq.md):

    vq_encode  x (int)            -> idx (unsigned, ceil(log2 K) bits): integer distance to every centroid of
                                     each codebook, nearest index, ties -> lowest index; conv layers encode
                                     the im2col view (channel-major (c, i, j), borders padded with x's zero
                                     point) and give idx (B, OH, OW, C); linear layers give idx (..., C)
    lut_gemm   idx               -> y (int): acc = Σ_c T_int[c, idx_c, :] + bias, requantized per channel onto
                                     y's grid; conv outputs (B, M, OH, OW)
The codebook is stored on x's grid (`codebook_bits` = x's bits), the tables at `table_bits`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import fx

from nnchip.core.errors import ConversionError
from nnchip.core.intspec import IntSpec
from nnchip.lower.intgraph import IntNode, IntTensor
from nnchip.vq.integer import integer_bias, integer_codebooks, integer_tables
from nnchip.vq.layer import LUTLayer
from nnchip.vq.metrics import int_bound

if TYPE_CHECKING:
    from nnchip.lower.lowering import _Lowerer


def emit_vq_lut(lowerer: _Lowerer, name: str, node: fx.Node, out: IntTensor, lo: int, hi: int) -> None:
    layer: LUTLayer = lowerer.module(node)
    where = lowerer.where(node)
    x = lowerer.input_tensor(node.args[0], node)
    codebook = integer_codebooks(layer.codebooks, x.scale, x.zero_point, x.spec.qmin, x.spec.qmax)  # (C, K, v)
    tables, scales = integer_tables(layer.flat_weight(), layer.codebooks, layer.table_bits,
                                    layer.table_granularity)  # (C, K, M), (M,)
    bias = integer_bias(layer.bias, scales)
    channels = layer.num_codebooks
    index_bits = max(1, (layer.k - 1).bit_length())
    if layer.is_conv:
        index_shape = (out.shape[0], out.shape[2], out.shape[3], channels)  # (B, OH, OW, C)
    else:
        index_shape = (*x.shape[:-1], channels)
    index_name = f"{name}_idx"
    lowerer.tensors[index_name] = IntTensor(index_name, index_shape, IntSpec(index_bits, signed=False), 0, 1.0)
    dist_bound = int_bound(layer.metric, layer.v, x.spec.qmax - x.spec.qmin)
    encode_attrs = {"layer": "conv2d" if layer.is_conv else "linear", "metric": layer.metric, "v": layer.v,
                    "k": layer.k, "tie_break": "lowest_index", "index_bits": index_bits,
                    "codebook_bits": x.spec.bits, "dist_bits": max(1, dist_bound.bit_length()),
                    "source": where}
    if layer.is_conv:
        encode_attrs.update(kernel=list(layer.kernel_size), stride=list(layer.stride), padding=list(layer.padding),
                            dilation=list(layer.dilation), pad_value=x.zero_point)
    lowerer.nodes.append(IntNode(index_name, "vq_encode", [x.name], index_name, {"codebook": codebook.numpy()},
                                 encode_attrs))
    bound = int(tables.abs().amax(dim=1).sum(dim=0).max() + bias.abs().max())
    acc_bits = 1 + math.ceil(math.log2(bound + 1))
    if acc_bits > lowerer.acc_bits:
        raise ConversionError(f"{where}: LUT accumulator needs {acc_bits} bits, more than the declared "
                              f"{lowerer.acc_bits}")
    params = {"table": tables.numpy(), "bias": bias.numpy(),
              **lowerer.requant_params((scales / out.scale).numpy(), where)}
    lowerer.nodes.append(IntNode(name, "lut_gemm", [index_name], name, params,
                                 {"layer": encode_attrs["layer"], "out_zero_point": out.zero_point, "lo": lo, "hi": hi,
                                  "acc_bits": acc_bits, "declared_acc_bits": lowerer.acc_bits, "rounding": "half_up",
                                  "table_bits": layer.table_bits, "source": where}))
