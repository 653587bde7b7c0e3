"""Run SCALE-Sim 3.0.0 (the `bench` extra) on GEMM layers and read its COMPUTE_REPORT "Total Cycles" column.

The configuration is SCALE-Sim's default bandwidth mode (InterfaceBandwidth: CALC, stall-free) with large
scratchpads, one run per (dataflow, array) over a GEMM topology file (name, M, N, K). Files go to a temp dir.
SCALE-Sim 3.0.0 calls int() on 1-element arrays, which NumPy >= 2.4 rejects; `_compat_max` makes the `max`
it uses in its memory model return a scalar (values unchanged).
"""

from __future__ import annotations

import csv
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# (name, M, K, N) per sample: rows, reduction, columns. ResNet-20 (CIFAR), ResNet-18 (ImageNet), ViT-Tiny
# (CIFAR, 65 tokens, dim 128, 4 heads) and DeiT-B attention shapes — small enough for SCALE-Sim at 8×8.
GOLDEN_LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("resnet20.conv1", 1024, 27, 16),
    ("resnet20.layer1.conv", 1024, 144, 16),
    ("resnet20.layer2.conv_s2", 256, 144, 32),
    ("resnet20.layer3.conv", 64, 288, 64),
    ("resnet20.fc", 1, 64, 10),
    ("resnet18.layer4.downsample", 49, 256, 512),
    ("vit_tiny.qkv_q", 65, 128, 128),
    ("vit_tiny.fc1", 65, 128, 256),
    ("vit_tiny.attn_qk", 65, 32, 65),
    ("vit_tiny.attn_av", 65, 65, 32),
    ("deit_base.attn_qk_head", 197, 64, 197),
)
ARRAYS = (8, 32, 128)
DATAFLOWS = ("os", "ws", "is")

_CONFIG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 6144
FilterSramSzkB: 6144
OfmapSramSzkB: 2048
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Dataflow: {dataflow}
Bandwidth: 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def _compat_max(*args: Any) -> Any:
    values = args[0] if len(args) == 1 else args
    return np.max(np.concatenate([np.ravel(np.asarray(v)) for v in values]))


def run_scalesim(layers: tuple[tuple[str, int, int, int], ...], rows: int, cols: int,
                 dataflow: str) -> tuple[list[int], float]:
    """SCALE-Sim "Total Cycles" per layer (M, K, N) and the wall time of the simulation."""
    import scalesim.memory.double_buffered_scratchpad_mem as scratchpad
    from scalesim.scale_sim import scalesim

    scratchpad.max = _compat_max  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory(prefix="nnchip-scalesim-") as tmp:
        root = Path(tmp)
        name = f"run_{dataflow}_{rows}x{cols}"
        (root / "config.cfg").write_text(_CONFIG.format(name=name, rows=rows, cols=cols, dataflow=dataflow))
        topo = "Layer, M, N, K,\n" + "".join(f"{n}, {m}, {nn}, {k},\n" for n, m, k, nn in layers)
        (root / "topology.csv").write_text(topo)
        (root / "layout.csv").write_text("Layer,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(root / "config.cfg"),
                       topology=str(root / "topology.csv"), layout=str(root / "layout.csv"), input_type_gemm=True)
        start = time.perf_counter()
        sim.run_scale(top_path=str(root / "out"))
        seconds = time.perf_counter() - start
        with open(root / "out" / name / "COMPUTE_REPORT.csv", newline="") as f:
            table = list(csv.reader(f))
    header = [h.strip() for h in table[0]]
    column = header.index("Total Cycles")
    return [int(float(row[column])) for row in table[1:] if row], seconds
