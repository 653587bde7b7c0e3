"""Design-space exploration: precision × accelerator parameters → the most accurate design meeting a frame rate.

VAQF's rule (hardware reference §9.4): among the precisions whose best design meets the target FPS within the
device, take the most accurate — without accuracy points the highest activation bits, then the highest weight
bits; with measured points (records holding w_bits, a_bits, acc) the best accuracy. Among the designs of that
precision that meet the target, the one using the fewest resources (mean LUT/FF/DSP/BRAM fraction) wins; ties
between equally accurate precisions go the same way. The sweep is the full grid of the design file's search
space (≥ 1e6 points for all 20 precisions), evaluated precision by precision in vectorized chunks.

Pareto front over (FPS ↑, resource use ↓, energy ↓, accuracy ↑ when given) of the designs that fit: per
precision, energy and accuracy are constants, so that precision's front is the 2-D (FPS, resource) staircase
(sort + running minimum); the union of those staircases is then filtered exactly in all objectives.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnchip.core.errors import ConfigError, DataError
from nnchip.hw.fpga import CostTable, DesignConstants, FPGACost, fpga_cost, limiting_factor
from nnchip.hw.specs import EnergySpec, FPGASpec


class InfeasibleError(ConfigError):
    """No design meets the target: the message gives the best achievable FPS and what limits it."""


@dataclass(frozen=True)
class DesignPoint:
    device: str
    w_bits: int
    a_bits: int
    t_m: int
    t_n: int
    t_a: int
    t_b: int
    fps: float
    lut: int
    ff: int
    dsp: int
    bram36: int
    resource_use: float
    energy_mj: float
    accuracy: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesignPoint:
        return cls(**dict(data))


@dataclass(frozen=True)
class DSEResult:
    chosen: DesignPoint
    best_per_precision: tuple[DesignPoint, ...]  # the fastest fitting design of every searched precision
    pareto: tuple[DesignPoint, ...]
    points: int  # design points evaluated
    seconds: float
    target_fps: float
    limiter: str = ""  # what keeps the chosen precision's fastest design from going faster
    notes: tuple[str, ...] = field(default=())

    @property
    def points_per_second(self) -> float:
        return self.points / self.seconds


def load_accuracy(path: str | Path) -> dict[tuple[int, int], float]:
    """Accuracy points from JSON: a list of records (or {"records": [...]}) with w_bits, a_bits, acc."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"accuracy file not found: {source}")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a list of records with w_bits, a_bits, acc")
    points: dict[tuple[int, int], float] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict) or any(record.get(key) is None for key in ("w_bits", "a_bits", "acc")):
            continue  # rows of other kinds (float baselines, mixed precision) carry no (w_bits, a_bits) point
        try:
            key, acc = (int(record["w_bits"]), int(record["a_bits"])), float(record["acc"])
        except (TypeError, ValueError):
            raise DataError(f"{source}: record {i} has non-numeric w_bits/a_bits/acc") from None
        points[key] = max(acc, points.get(key, -np.inf))
    if not points:
        raise DataError(f"{source}: no record holds w_bits, a_bits and acc")
    return points


def _precisions(design: DesignConstants, w_bits: int | None, a_bits: int | None) -> list[tuple[int, int]]:
    for name, value in (("w_bits", w_bits), ("a_bits", a_bits)):
        if value is not None and not 1 <= value <= 16:
            raise ConfigError(f"{name} must be in 1..16, got {value}")
    ws = [w_bits] if w_bits is not None else [int(v) for v in design.grid("w_bits")]
    As = [a_bits] if a_bits is not None else [int(v) for v in design.grid("a_bits")]
    return [(w, a) for w in ws for a in As]


def _grid(design: DesignConstants) -> tuple[np.ndarray, ...]:
    mesh = np.meshgrid(*(design.grid(k) for k in ("t_m", "t_n", "t_a", "t_b")), indexing="ij")
    return tuple(x.ravel() for x in mesh)  # 4 × (G,)


def _point(cost: FPGACost, params: tuple[np.ndarray, ...], i: int, device: FPGASpec, w: int, a: int,
           acc: float | None) -> DesignPoint:
    t_m, t_n, t_a, t_b = (int(p[i]) for p in params)
    return DesignPoint(device.name, w, a, t_m, t_n, t_a, t_b, float(cost.fps[i]), int(round(cost.lut[i])),
                       int(round(cost.ff[i])), int(cost.dsp[i]), int(cost.bram36[i]), float(cost.resource_use[i]),
                       float(cost.energy_mj[i]), acc)


def _staircase(fps: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Indices of the 2-D Pareto staircase: FPS high, resource use low (sort + running minimum)."""
    order = np.lexsort((use, -fps))
    best = np.minimum.accumulate(use[order])
    keep = np.ones(order.size, dtype=bool)
    keep[1:] = use[order][1:] < best[:-1]
    return order[keep]


def pareto_filter(objectives: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of (N, D) objectives, all to be minimised (exact, O(N²·D) in numpy)."""
    le = (objectives[:, None, :] <= objectives[None, :, :]).all(axis=2)  # le[i, j]: i no worse than j
    lt = (objectives[:, None, :] < objectives[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)
    return ~dominated


def explore(table: CostTable, device: FPGASpec, design: DesignConstants, energy: EnergySpec, target_fps: float, *,
            w_bits: int | None = None, a_bits: int | None = None,
            accuracy: Mapping[tuple[int, int], float] | None = None) -> DSEResult:
    """Sweep every precision × accelerator parameter point; choose as VAQF does (module docstring)."""
    if not target_fps > 0:
        raise ConfigError(f"target FPS must be positive, got {target_fps}")
    precisions = _precisions(design, w_bits, a_bits)
    notes: list[str] = []
    if accuracy is not None:
        missing = [p for p in precisions if p not in accuracy]
        precisions = [p for p in precisions if p in accuracy]
        if not precisions:
            raise DataError("the accuracy file has no point for the searched precisions "
                            f"(w_bits={w_bits or 'any'}, a_bits={a_bits or 'any'})")
        if missing:
            notes.append("precisions without an accuracy point are not considered: "
                         + ", ".join(f"W{w}A{a}" for w, a in missing))
    params = _grid(design)
    start = time.perf_counter()
    best: list[DesignPoint] = []
    cheapest: dict[tuple[int, int], DesignPoint] = {}
    front: list[DesignPoint] = []
    limiters: dict[tuple[int, int], str] = {}
    for w, a in precisions:
        cost = fpga_cost(table, device, design, energy, *params, w, a)  # (G,)
        acc = accuracy[(w, a)] if accuracy is not None else None
        fit = np.flatnonzero(cost.fits)
        if fit.size == 0:
            continue
        i_best = fit[np.argmax(cost.fps[fit])]
        best.append(_point(cost, params, i_best, device, w, a, acc))
        limiters[(w, a)] = limiting_factor(cost, device, design, int(i_best))
        meets = fit[cost.fps[fit] >= target_fps]
        if meets.size:
            order = np.lexsort((-cost.fps[meets], cost.resource_use[meets]))
            cheapest[(w, a)] = _point(cost, params, int(meets[order[0]]), device, w, a, acc)
        front.extend(_point(cost, params, int(fit[j]), device, w, a, acc)
                     for j in _staircase(cost.fps[fit], cost.resource_use[fit]))
    if not best:
        raise InfeasibleError(f"no design of the search space fits {device.name} "
                              f"(utilisation ceiling {design.utilisation_ceiling:.0%})")
    if front:
        columns = [[-p.fps for p in front], [p.resource_use for p in front], [p.energy_mj for p in front]]
        if accuracy is not None:
            columns.append([-float(p.accuracy or 0.0) for p in front])
        mask = pareto_filter(np.array(columns).T)
        front = sorted((p for p, keep in zip(front, mask, strict=True) if keep), key=lambda p: -p.fps)
    seconds = time.perf_counter() - start
    points = len(precisions) * params[0].size
    if not cheapest:
        top = max(best, key=lambda p: p.fps)
        raise InfeasibleError(
            f"no design meets {target_fps:g} FPS on {device.name}: best achievable {top.fps:.1f} FPS "
            f"(W{top.w_bits}A{top.a_bits}, T_m={top.t_m}, T_n={top.t_n}, T_a={top.t_a}, T_b={top.t_b}), "
            f"limited by {limiters[(top.w_bits, top.a_bits)]}")

    def rank(p: DesignPoint) -> tuple[float, ...]:
        if accuracy is not None:
            return (-float(p.accuracy or 0.0), p.resource_use)
        return (-p.a_bits, -p.w_bits)

    chosen = min(cheapest.values(), key=rank)
    return DSEResult(chosen, tuple(best), tuple(front), points, seconds, target_fps,
                     limiters[(chosen.w_bits, chosen.a_bits)], tuple(notes))
