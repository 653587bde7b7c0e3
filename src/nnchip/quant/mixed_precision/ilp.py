"""The integer program that picks one bit-width per layer (HAWQ-V3 style, general candidate set).

    variables   x_{i,b} ∈ {0, 1},  Σ_b x_{i,b} = 1 for every layer i
    objective   min Σ_{i,b} Ω_i(b) · x_{i,b}
    constraint  Σ_{i,b} cost_i(b) · x_{i,b} ≤ budget
solved exactly by scipy.optimize.milp (HiGHS).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from nnchip.core.errors import ConfigError


def choose_bits(sensitivity: dict[str, dict[int, float]], cost: dict[str, dict[int, float]], budget: float,
                *, budget_name: str = "budget", unit: str = "", offset: float = 0.0) -> dict[str, int]:
    """The assignment layer → bits minimising total sensitivity with total cost ≤ budget; `offset` is a cost
    outside the program, added to the budget and the minimum that an error message states."""
    layers = list(sensitivity)
    pairs = [(layer, bits) for layer in layers for bits in sorted(sensitivity[layer])]  # one variable each
    cheapest = sum(min(cost[layer].values()) for layer in layers)
    if cheapest > budget * (1 + 1e-12):
        raise ConfigError(f"{budget_name}: no bit-width assignment meets the budget {budget + offset:.6g}{unit} "
                          f"(the minimum achievable is {cheapest + offset:.6g}{unit})")
    scale = max(abs(v) for per in sensitivity.values() for v in per.values()) or 1.0
    objective = np.array([sensitivity[layer][bits] / scale for layer, bits in pairs])
    one_per_layer = np.array([[1.0 if layer == row else 0.0 for layer, _ in pairs] for row in layers])
    unit_budget = budget if budget > 0 else 1.0
    costs = np.array([[cost[layer][bits] / unit_budget for layer, bits in pairs]])  # normalised
    constraints = [LinearConstraint(one_per_layer, 1, 1), LinearConstraint(costs, -np.inf, budget / unit_budget)]
    result = milp(objective, integrality=np.ones(len(pairs)), bounds=Bounds(0, 1), constraints=constraints,
                  options={"mip_rel_gap": 0.0})  # proven optimal, not within HiGHS's default 0.01 %
    if result.x is None:
        raise ConfigError(f"{budget_name}: the integer program found no assignment ({result.message})")
    chosen = {layer: bits for (layer, bits), x in zip(pairs, result.x, strict=True) if x > 0.5}
    return {layer: chosen[layer] for layer in layers}
