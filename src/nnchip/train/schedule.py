"""Learning-rate schedules as pure functions of the step (so resuming needs only the step number)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak_lr: float, schedule: str, warmup_steps: int = 0) -> float:
    """cosine: linear warm-up then cosine decay to 0; onecycle: 30 % linear ramp from peak/25 then cosine
    annealing to peak/1e4 (Smith's one-cycle, as torch's OneCycleLR defaults); constant: peak."""
    if schedule == "constant":
        return peak_lr
    progress = min(step, total_steps) / max(1, total_steps)
    if schedule == "onecycle":
        rise = 0.3
        start, end = peak_lr / 25.0, peak_lr / 1e4
        if progress < rise:
            return start + (peak_lr - start) * progress / rise
        t = (progress - rise) / (1 - rise)
        return end + (peak_lr - end) * 0.5 * (1 + math.cos(math.pi * t))
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
