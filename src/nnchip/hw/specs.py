"""Hardware specs as data: shipped YAML files (FPGA devices, ASIC energy tables) or a user's own file.

Every field is required; a missing or non-positive field is an error naming the field, the entry and the file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from nnchip.core.errors import ConfigError

SPEC_DIR = Path(__file__).resolve().parent / "specs"


@dataclass(frozen=True)
class FPGASpec:
    name: str
    part: str
    lut: int
    ff: int
    dsp: int
    dsp_type: str
    bram36: int
    uram: int
    clock_mhz: float
    ddr_gbps: float


@dataclass(frozen=True)
class EnergySpec:
    name: str
    mult_8bit_pj: float
    add_8bit_pj: float
    sram_64bit_8kb_pj: float
    sram_64bit_32kb_pj: float
    sram_64bit_1mb_pj: float
    dram_pj_per_bit: float


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def _build(cls: type, name: str, entry: Any, path: Path) -> Any:
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: entry {name!r} must be a mapping")
    values: dict[str, Any] = {"name": name, **entry}
    for f in fields(cls):
        if f.name not in values:
            raise ConfigError(f"{path}: entry {name!r} is missing field {f.name!r}")
        if f.type in ("int", "float") and (not isinstance(values[f.name], (int, float)) or values[f.name] < 0):
            raise ConfigError(f"{path}: {name}.{f.name} must be a non-negative number, got {values[f.name]!r}")
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ConfigError(f"{path}: entry {name!r} has unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**values)


def load_fpga(device: str, path: str | Path | None = None) -> FPGASpec:
    """A device from the shipped table (or from `path`); unknown names list the known ones."""
    source = Path(path) if path else SPEC_DIR / "fpga.yaml"
    table = _read_yaml(source)
    if not isinstance(table, dict) or device not in table:
        known = ", ".join(sorted(table)) if isinstance(table, dict) else "none"
        raise ConfigError(f"unknown device {device!r} in {source}; known: {known}")
    return _build(FPGASpec, device, table[device], source)


def load_energy(path: str | Path | None = None) -> EnergySpec:
    source = Path(path) if path else SPEC_DIR / "asic_45nm.yaml"
    entry = _read_yaml(source)
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: must be a mapping")
    name = str(entry.get("name", source.stem))
    return _build(EnergySpec, name, {k: v for k, v in entry.items() if k != "name"}, source)
