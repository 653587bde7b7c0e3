"""PTQ method "smoothquant" (Xiao et al., ICML 2023, arXiv 2211.10438) for LayerNorm → Linear in transformers.

Where a LayerNorm with affine parameters feeds only Linear layers (through its activation quantizer —
in a pre-norm ViT: LN1 → q/k/v and LN2 → fc1; never a LayerNorm that also feeds a residual add), per
input channel j:
    s_j = max|X_j|^α / max|W_j|^(1−α)          (clamped to ≥ 1e-5)
X_j: LayerNorm output channel j over every calibration token (float network); W_j: column j of the
weights, max over output channels and over every Linear fed by that LayerNorm. Then
    LN.weight /= s,  LN.bias /= s,  W[:, j] *= s_j
which leaves the float function unchanged. It runs on the QModel: the weight quantizers of the touched
Linears are re-initialised from the new weights and, if the activations were already calibrated, the
observers run again on the same data. Run it first (before "calibrate") to avoid that second pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn

from nnchip.quant.base import Quantizer
from nnchip.quant.modules import QLinear
from nnchip.quant.ptq.config import PTQConfig
from nnchip.quant.ptq.data import CalibrationData, is_calibrated, quantization_disabled
from nnchip.quant.ptq.registry import register_ptq_method
from nnchip.quant.quantize import QModel, calibrate

PASS_THROUGH_KINDS = frozenset({"quantize", "identity", "contiguous"})


def smoothable_layernorms(qmodel: QModel) -> list[tuple[nn.LayerNorm, list[QLinear]]]:
    """(LayerNorm, the Linears it alone feeds) for every LayerNorm whose output reaches only Linears."""
    gm = qmodel.gm
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.meta.get("nnchip_kind") != "layernorm":
            continue
        norm = gm.get_submodule(str(node.target))
        if not isinstance(norm, nn.LayerNorm) or norm.weight is None:
            continue
        linears = _linear_consumers(gm, node)
        if linears:
            found.append((norm, linears))
    return found


def _linear_consumers(gm: fx.GraphModule, node: fx.Node) -> list[QLinear]:
    linears: list[QLinear] = []
    frontier = list(node.users)
    while frontier:
        user = frontier.pop()
        module = gm.get_submodule(str(user.target)) if user.op == "call_module" else None
        if isinstance(module, QLinear) and user.args[0] is not node:
            linears.append(module)
        elif user.meta.get("nnchip_kind") in PASS_THROUGH_KINDS and not isinstance(module, QLinear):
            if isinstance(module, Quantizer) and module.role != "act":
                return []
            frontier.extend(user.users)
        else:
            return []
    return list(dict.fromkeys(linears))


@torch.no_grad()
def _channel_absmax(qmodel: QModel, norms: list[nn.LayerNorm], data: CalibrationData) -> list[Tensor]:
    maxima: list[Tensor | None] = [None] * len(norms)

    def make_hook(i: int):  # noqa: ANN202
        def hook(_m: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
            current = output.detach().abs().reshape(-1, output.shape[-1]).amax(dim=0)  # (C,)
            maxima[i] = current if maxima[i] is None else torch.maximum(maxima[i], current)

        return hook

    handles = [norm.register_forward_hook(make_hook(i)) for i, norm in enumerate(norms)]
    try:
        with quantization_disabled(qmodel):
            for part in data.chunks():
                qmodel(part)
    finally:
        for handle in handles:
            handle.remove()
    return [m if m is not None else torch.ones(n.normalized_shape) for m, n in zip(maxima, norms, strict=True)]


@register_ptq_method("smoothquant")
@torch.no_grad()
def smoothquant(qmodel: QModel, data: CalibrationData, config: PTQConfig) -> None:
    groups = smoothable_layernorms(qmodel)
    if not groups:
        return
    was_calibrated = is_calibrated(qmodel)
    x_max = _channel_absmax(qmodel, [norm for norm, _ in groups], data)
    alpha = config.smoothquant_alpha
    for (norm, linears), xm in zip(groups, x_max, strict=True):
        w_max = torch.stack([lin.weight.abs().amax(dim=0) for lin in linears]).amax(dim=0)  # (C_in,)
        s = (xm.clamp(min=1e-5).pow(alpha) / w_max.clamp(min=1e-5).pow(1 - alpha)).clamp(min=1e-5)
        norm.weight.data /= s
        if norm.bias is not None:
            norm.bias.data /= s
        for lin in linears:
            lin.weight.data *= s  # (C_out, C_in) · (C_in,)
            lin.weight_quantizer.initialize_from_tensor(lin.weight.detach())
    if was_calibrated:
        calibrate(qmodel, data.chunks())
