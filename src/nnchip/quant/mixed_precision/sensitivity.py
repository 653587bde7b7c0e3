"""Per-layer sensitivity to weight quantization (algorithms.md §4.1).

    weight error:    E_i(b) = ‖Q_b(W_i) − W_i‖²₂   with the very quantizer quantize() builds (BatchNorm folded)
    output error:    D_i(b) = mean_x ‖f(x; W_i ← Q_b(W_i)) − f(x)‖²₂ over calibration images: only layer i's
                     weight quantized, everything else (activations included) in float — what "measured
                     quantization error" means for the integer program (it sees how much each layer matters)
    Hutchinson:      Tr(H_i) ≈ (1/m) Σ_t z_tᵀ H_i z_t,  z_t Rademacher on layer i's weight, H·z by double
                     back-propagation of the cross-entropy loss; api.layer_sensitivity takes it on the
                     BatchNorm-folded weights, the ones E_i(b) measures
    HAWQ-V2 score:   Ω_i(b) = Tr(H_i) / n_i · E_i(b)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from nnchip.quant.quantize import quantize
from nnchip.quant.spec import QuantConfig


@torch.no_grad()
def quantization_errors(model: nn.Module, base: QuantConfig, candidates: Sequence[int],
                        inputs: Tensor) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """(E_i(b), D_i(b)) for every quantized conv/linear (path in the captured model) and every candidate b;
    `inputs` (N, ...) are calibration images."""
    weight_errors: dict[str, dict[int, float]] = {}
    output_errors: dict[str, dict[int, float]] = {}
    for bits in candidates:
        config = replace(base, weight=replace(base.weight, bits=bits), first_last_bits=None, overrides=())
        qmodel = quantize(model, config, example_inputs=inputs[:1]).eval()
        quantizers = [q for _, q in qmodel.quantizers()]
        for quantizer in quantizers:
            quantizer.enabled = False
        reference = qmodel(inputs)  # (N, classes): the folded float model
        for path, layer in qmodel.layers():
            layer.weight_quantizer.enabled = True  # Q_b(W_i) needs the quantizer on (off, it returns W_i)
            weight = layer.weight.detach()
            weight_errors.setdefault(path, {})[bits] = float(((layer.quantized_weight() - weight) ** 2).sum())
            output_errors.setdefault(path, {})[bits] = float(((qmodel(inputs) - reference) ** 2).sum(-1).mean())
            layer.weight_quantizer.enabled = False
    return weight_errors, output_errors


def hutchinson_traces(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]], paths: Sequence[str],
                      samples: int, seed: int = 0) -> dict[str, float]:
    """Tr(H_i) of the cross-entropy loss w.r.t. the weight of each layer in `paths` (float model, eval mode)."""
    was_training = model.training
    model.eval()
    weights = [model.get_submodule(path).weight for path in paths]
    generator = torch.Generator().manual_seed(seed)
    traces = torch.zeros(len(paths), dtype=torch.float64)
    try:
        for x, y in batches:
            loss = nn.functional.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, weights, create_graph=True)
            for _ in range(samples):
                probes = [torch.randint(0, 2, w.shape, generator=generator).to(w.dtype) * 2 - 1 for w in weights]
                hv = torch.autograd.grad(grads, weights, grad_outputs=probes, retain_graph=True)
                traces += torch.stack([(h * z).sum().double() for h, z in zip(hv, probes, strict=True)])
    finally:
        model.train(was_training)
    traces /= samples * max(1, len(batches))
    return {path: float(t) for path, t in zip(paths, traces, strict=True)}
