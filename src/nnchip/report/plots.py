"""Matplotlib pictures of results (Agg backend, PNG files written atomically)."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nnchip.report.layer_sqnr import LayerSQNR  # noqa: E402

SQNR_CAP_DB = 80.0  # identical outputs (infinite SQNR) are drawn at this height


def _save(fig: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_accuracy_vs_bits(records: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """Top-1 against weight bit-width: one line per (model, method), the float accuracy dashed per model.

    Records need `model`, `method`, `w_bits`, `a_bits`, `acc`, `float_acc` (accuracies as fractions or %)."""
    rows = [r for r in records if r.get("w_bits") is not None and r.get("acc") is not None]
    models = sorted({str(r["model"]) for r in rows})
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(5.0 * max(1, len(models)), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=False):
        mine = [r for r in rows if r["model"] == model]
        for method in sorted({str(r["method"]) for r in mine}):
            pts = sorted((int(r["w_bits"]), 100.0 * float(r["acc"]), int(r.get("a_bits") or 0))
                         for r in mine if r["method"] == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            for w, acc, a in pts:
                ax.annotate(f"W{w}A{a}", (w, acc), textcoords="offset points", xytext=(4, -10), fontsize=7)
        float_acc = 100.0 * float(mine[0]["float_acc"])
        ax.axhline(float_acc, color="gray", linestyle="--", label=f"float {float_acc:.1f}%")
        bits = sorted({int(r["w_bits"]) for r in mine})
        ax.set_xticks(bits)
        ax.set_xlabel("weight bits")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{model}{' — ' + title if title else ''}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_layer_sqnr(per_row: Mapping[str, Sequence[LayerSQNR]], path: Path,
                    model_of: Mapping[str, str] | None = None) -> Path:
    """Per-layer output SQNR (dB) against float, layers in graph order: one panel per model, one line per
    quantized variant (row). A drop from one layer to the next marks the layer that hurts; each line's
    lowest layer is circled. `model_of` maps row → model (default: the row id up to its first '-')."""
    model_of = dict(model_of or {})
    groups: dict[str, list[tuple[str, Sequence[LayerSQNR]]]] = {}
    for row, vals in per_row.items():
        if vals:
            groups.setdefault(model_of.get(row, row.split("-")[0]), []).append((row, vals))
    n = max(1, len(groups))
    widest = max((len(v) for rows in groups.values() for _, v in rows), default=4)
    fig, axes = plt.subplots(n, 1, figsize=(max(6.0, 0.45 * widest + 2.5), 3.6 * n), squeeze=False)
    for ax, (model, rows) in zip(axes[:, 0], groups.items(), strict=False):
        labels: list[str] = []
        for row, vals in rows:
            heights = [min(v.sqnr_db, SQNR_CAP_DB) if math.isfinite(v.sqnr_db) else SQNR_CAP_DB for v in vals]
            line = ax.plot(range(len(vals)), heights, marker="o", markersize=3, label=row)[0]
            worst = min(range(len(heights)), key=heights.__getitem__)
            ax.scatter([worst], [heights[worst]], s=90, facecolors="none", edgecolors=line.get_color())
            if len(vals) > len(labels):
                labels = [v.target for v in vals]
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("SQNR vs float (dB)")
        ax.set_title(f"{model}: per-layer output SQNR (circled: lowest layer of each model)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)
