"""Device specs as validated data; energy by bit-width on the 45 nm table."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnchip.core.errors import ConfigError
from nnchip.hw import LayerWork, load_energy, load_fpga, mac_energy_pj, workload_energy, workload_from_model
from nnchip.hw.workload import Workload
from nnchip.models import build


@pytest.mark.parametrize(("device", "dsp"), [("zcu102", 2520), ("zcu104", 1728), ("z7020", 220), ("z7045", 900),
                                             ("u250", 12288)])
def test_shipped_devices(device: str, dsp: int) -> None:
    spec = load_fpga(device)
    assert spec.dsp == dsp and spec.lut > 0 and spec.clock_mhz > 0 and spec.ddr_gbps > 0


def test_bad_specs_name_the_culprit(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown device 'zcu999'.*zcu102"):
        load_fpga("zcu999")
    bad = tmp_path / "boards.yaml"
    bad.write_text("myboard: {part: X, lut: 10, ff: 10, dsp: 4, dsp_type: DSP48E2, bram36: 2, uram: 0, "
                   "clock_mhz: 100}\n")
    with pytest.raises(ConfigError, match=r"boards.yaml: entry 'myboard' is missing field 'ddr_gbps'"):
        load_fpga("myboard", bad)
    bad.write_text("myboard: {part: X, lut: -1, ff: 10, dsp: 4, dsp_type: D, bram36: 2, uram: 0, clock_mhz: 1, "
                   "ddr_gbps: 1}\n")
    with pytest.raises(ConfigError, match="myboard.lut must be a non-negative number"):
        load_fpga("myboard", bad)


def test_mac_energy_follows_the_scaling_rules() -> None:
    spec = load_energy()
    assert mac_energy_pj(spec, 8, 8, 2**16) == pytest.approx(0.2 + 0.03 * 32 / 8)  # INT8 MAC, 32-bit accumulate
    assert mac_energy_pj(spec, 4, 4, 2**8) == pytest.approx(0.2 / 4 + 0.03 * 16 / 8)
    assert mac_energy_pj(spec, 1, 8, 2**7) == pytest.approx(0.03 * 16 / 8)  # binary weights: an add only


def test_lower_precision_and_sparsity_cost_less_energy() -> None:
    spec = load_energy()
    model = build("resnet20")
    w8 = workload_energy(workload_from_model(model, torch.randn(1, 3, 32, 32), w_bits=8, a_bits=8), spec)
    w4 = workload_energy(workload_from_model(model, torch.randn(1, 3, 32, 32), w_bits=4, a_bits=4), spec)
    assert w4.total_pj < w8.total_pj and w4.compute_pj < w8.compute_pj / 2
    dense = Workload((LayerWork("fc", "linear", 64, 256, 256, 1, 8, 8),))
    sparse = Workload((LayerWork("fc", "linear", 64, 256, 256, 1, 8, 8, weight_density=0.5),))
    assert workload_energy(sparse, spec, zero_skipping=True).compute_pj == pytest.approx(
        workload_energy(dense, spec).compute_pj / 2)
    assert workload_energy(sparse, spec).compute_pj == workload_energy(dense, spec).compute_pj
