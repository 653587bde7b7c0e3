"""`assign_bits(model, base_config, MixedPrecisionConfig, ...)`: one weight bit-width per conv/linear layer.

Sensitivities (sensitivity.py) and costs (weights, MACs from the hardware workload, or the FPGA model's
per-layer latency, latency.py) feed the integer program (ilp.py); the result is `base_config` with one
LayerOverride per layer, ready for quantize().
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor, nn

from nnchip.core.errors import ConfigError
from nnchip.quant.mixed_precision.config import MixedPrecisionConfig
from nnchip.quant.mixed_precision.ilp import choose_bits
from nnchip.quant.mixed_precision.latency import layer_latency, uniform_bits
from nnchip.quant.mixed_precision.sensitivity import hutchinson_traces, quantization_errors
from nnchip.quant.quantize import quantize
from nnchip.quant.spec import LayerOverride, QuantConfig


@dataclass(frozen=True)
class BitAssignment:
    bits: dict[str, int]  # layer path -> weight bits
    avg_bits: float  # Σ params_i b_i / Σ params_i
    bops: int  # Σ MACs_i · b_i · a_bits per sample
    sensitivity: dict[str, dict[int, float]]
    latency_us: float  # modelled by the FPGA model of the config (latency.py), whatever the budget

    def to_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "avg_bits": self.avg_bits, "bops": self.bops, "latency_us": self.latency_us}


def assign_bits(model: nn.Module, base: QuantConfig, config: MixedPrecisionConfig, *, calib_inputs: Tensor,
                batches: Sequence[tuple[Tensor, Tensor]] = (),
                sensitivity: dict[str, dict[int, float]] | None = None) -> tuple[QuantConfig, BitAssignment]:
    """(QuantConfig with per-layer weight bits, the assignment); `calib_inputs` (N, ...) measure the output
    error, `batches` of (x, y) feed the Hessian trace; `sensitivity` (an earlier BitAssignment's, same model,
    base and candidates) skips measuring it again, e.g. to sweep budgets."""
    from nnchip.hw.workload import workload_from_model

    if sensitivity is None:
        sensitivity = layer_sensitivity(model, base, config, calib_inputs, batches)
    elif any(set(config.candidates) - set(per) for per in sensitivity.values()):
        raise ConfigError("assign_bits: the given sensitivity lacks some of mixed_precision.candidates")
    paths = list(sensitivity)
    params = {path: model.get_submodule(path).weight.numel() for path in paths}
    workload = workload_from_model(model, calib_inputs[:1])
    macs = {layer.name: layer.macs for layer in workload.layers}
    a_bits = base.act.bits
    reference = int(config.avg_bits) if config.budget == "latency" and config.latency_us is None else None
    latency = layer_latency(workload, paths, base, config, extra_bits=(reference,) if reference else ())
    unit, name = "", f"mixed_precision.avg_bits {config.avg_bits:g}"
    if config.budget == "size":
        cost = {p: {b: float(params[p] * b) for b in config.candidates} for p in paths}
        budget = config.avg_bits * sum(params.values())
    elif config.budget == "bops":
        cost = {p: {b: float(macs[p] * b * a_bits) for b in config.candidates} for p in paths}
        budget = config.avg_bits * a_bits * sum(macs[p] for p in paths)
    else:
        cost = {p: {b: latency.per_bits_us[p][b] for b in config.candidates} for p in paths}
        if reference is None:
            budget, name = float(config.latency_us or 0.0), f"mixed_precision.latency_us {config.latency_us:g}"
        else:
            budget = latency.total_us(uniform_bits(workload, paths, base, reference))
            name = f"mixed_precision.budget latency of uniform {reference}-bit weights"
        budget, unit = budget - latency.constant_us, " µs"  # the program sees the assigned layers only
    bits = choose_bits(sensitivity, cost, budget, budget_name=name, unit=unit, offset=latency.constant_us
                       if unit else 0.0)
    overrides = tuple(LayerOverride(path=p, weight=replace(base.weight, bits=b)) for p, b in bits.items())
    avg = sum(params[p] * b for p, b in bits.items()) / sum(params.values())
    assignment = BitAssignment(bits, avg, sum(macs[p] * b * a_bits for p, b in bits.items()), sensitivity,
                               latency.total_us(bits))
    return replace(base, overrides=overrides), assignment


def layer_sensitivity(model: nn.Module, base: QuantConfig, config: MixedPrecisionConfig, calib_inputs: Tensor,
                      batches: Sequence[tuple[Tensor, Tensor]]) -> dict[str, dict[int, float]]:
    """Ω_i(b) of every quantized layer i and candidate b, by `config.sensitivity` (sensitivity.py)."""
    if config.sensitivity == "hessian" and not batches:
        raise ConfigError("mixed_precision.sensitivity 'hessian' needs labelled batches")
    errors, output_errors = quantization_errors(model, base, config.candidates, calib_inputs)
    if config.sensitivity != "hessian":
        return output_errors
    params = {path: model.get_submodule(path).weight.numel() for path in errors}
    # the trace of the weights that are quantized: BatchNorm folded, as E_i(b) is (a BN scale s_c scales the
    # folded weight by s_c and its Hessian by 1/s_c², so an unfolded trace would mis-weigh layers by up to 10×)
    folded = quantize(model, replace(base, first_last_bits=None, overrides=()), example_inputs=calib_inputs[:1])
    for _, quantizer in folded.quantizers():
        quantizer.enabled = False
    traces = hutchinson_traces(folded.gm, batches, list(errors), config.hutchinson_samples)
    # a negative trace estimate (a non-convex point) counts as flat: the layer's error then costs nothing
    return {p: {b: max(traces[p], 0.0) / params[p] * e for b, e in per.items()} for p, per in errors.items()}
