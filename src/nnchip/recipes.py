"""YAML recipes for `nnchip quantize`: each section maps 1:1 onto a config (docs/recipes.md).

    model:  {name: resnet20, num_classes: 10, checkpoint: path.safetensors, ...}   → ModelRecipe
            or a bare zoo name (`model: resnet20`, as `nnchip dse --emit-recipe` writes)
    data:   {kind: digits|cifar10_tar|imagefolder|cifar10_bin|mnist_idx, path: ..., ...} → DataRecipe
    quant:  QuantConfig.from_dict (weight/act specs start from default_weight_spec/default_act_spec)
    ptq:    {methods: [calibrate, ...], calib_images: 512, batch_size: 256, options: {method: {...}}} → PTQRecipe
    pretrain: TrainConfig fields — float training when the model has no checkpoint (optional)
    qat:    TrainConfig fields — quantization-aware training after PTQ (optional)
    out:    output directory (the CLI's --out wins)
    seed:   integer seed of everything

Every unknown key raises ConfigError naming its full path (e.g. `quant.act.bitz`); missing files raise
DataError naming the path. Loading is safe: yaml.safe_load, safetensors or torch.load(weights_only=True).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnchip.core.errors import ConfigError, DataError
from nnchip.core.intspec import MAX_BITS
from nnchip.quant.spec import LayerOverride, QuantConfig, QuantSpec

RECIPE_KEYS = ("model", "data", "quant", "ptq", "pretrain", "qat", "out", "seed")
DATA_KINDS = ("digits", "cifar10_tar", "imagefolder", "cifar10_bin", "mnist_idx")
DATA_KINDS_WITH_PATH = tuple(k for k in DATA_KINDS if k != "digits")
# PTQ methods when nnchip.quant.ptq has no registry to ask (kept in step with issue 2's list).
FALLBACK_PTQ_METHODS = ("calibrate", "bias_correction", "adaround", "brecq", "qdrop", "smoothquant")


@dataclass(frozen=True)
class ModelRecipe:
    """A zoo model (`name` + build options) and/or a float checkpoint to load into it."""

    name: str | None = None
    checkpoint: str | None = None
    options: tuple[tuple[str, Any], ...] = ()  # extra keyword arguments of nnchip.models.build

    def build_kwargs(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class DataRecipe:
    """Where the images come from and how many are used for calibration / evaluation."""

    kind: str = "digits"
    path: str | None = None
    seed: int = 0
    batch_size: int = 256
    calib_images: int = 512
    train_limit: int | None = None  # use only the first N training images (quick runs)
    test_limit: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {self.kind!r}")
        if self.kind in DATA_KINDS_WITH_PATH and not self.path:
            raise ConfigError(f"data.path is required for data.kind {self.kind!r}")
        for name in ("seed", "batch_size", "calib_images", "train_limit", "test_limit"):
            value = getattr(self, name)
            if value is None and name in ("train_limit", "test_limit"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ConfigError(f"data.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class PTQRecipe:
    """PTQ methods run in order on the same calibration images; `options[method]` are its keyword arguments."""

    methods: tuple[str, ...] = ("calibrate",)
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def method_options(self, method: str) -> dict[str, Any]:
        return dict(dict(self.options).get(method, ()))


@dataclass(frozen=True)
class Recipe:
    model: ModelRecipe
    data: DataRecipe
    quant: QuantConfig
    ptq: PTQRecipe
    pretrain: Any = None  # TrainConfig or None
    qat: Any = None  # TrainConfig or None
    out: str | None = None
    seed: int = 0
    source: str | None = field(default=None, compare=False)


# ---- loading ---------------------------------------------------------------------------------------
def read_recipe_yaml(path: Path) -> Any:
    """The parsed YAML of a recipe file (safe_load); a missing file or bad YAML is a one-line error."""
    if not path.is_file():
        raise DataError(f"recipe not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; relative data/checkpoint paths are relative to the file's directory."""
    path = Path(path)
    data = read_recipe_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the recipe is empty")
    return recipe_from_dict(data, base_dir=path.parent, source=str(path))


def recipe_from_dict(data: Any, *, base_dir: Path | None = None, source: str | None = None) -> Recipe:
    if not isinstance(data, Mapping):
        raise ConfigError(f"a recipe must be a mapping of {', '.join(RECIPE_KEYS)}, got {type(data).__name__}")
    _reject_unknown(data, RECIPE_KEYS, "")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    out = data.get("out")
    return Recipe(
        model=_model_recipe(data.get("model"), base_dir),
        data=_data_recipe(data.get("data") or {"kind": "digits"}, base_dir, seed),
        quant=quant_config_from_dict(data.get("quant") or {}),
        ptq=_ptq_recipe(data.get("ptq") or {}),
        pretrain=train_config_from_dict(data["pretrain"], "pretrain") if data.get("pretrain") else None,
        qat=train_config_from_dict(data["qat"], "qat") if data.get("qat") else None,
        out=str(out) if out is not None else None,
        seed=seed,
        source=source,
    )


def _reject_unknown(data: Mapping[str, Any], known: tuple[str, ...] | set[str], where: str) -> None:
    for key in data:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown recipe key {path!r}; known here: {', '.join(sorted(known))}")


def _resolve(path: str, base_dir: Path | None) -> str:
    """A relative path in a recipe file is relative to the file's directory."""
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p)


def _model_recipe(data: Any, base_dir: Path | None) -> ModelRecipe:
    if data is None:
        raise ConfigError("model is required: a zoo name (model: resnet20) or {name: ..., checkpoint: ...}")
    if isinstance(data, str):
        return ModelRecipe(name=data)
    if not isinstance(data, Mapping):
        raise ConfigError(f"model must be a zoo name or a mapping, got {type(data).__name__}")
    name, checkpoint = data.get("name"), data.get("checkpoint")
    if name is None and checkpoint is None:
        raise ConfigError("model needs a name (zoo model) or a checkpoint")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"model.name must be a string, got {name!r}")
    if checkpoint is not None:
        checkpoint = _resolve(str(checkpoint), base_dir)
        if not Path(checkpoint).is_file():
            raise DataError(f"model.checkpoint not found: {checkpoint}")
    options = {k: v for k, v in data.items() if k not in ("name", "checkpoint")}
    _check_build_options(name, options)
    return ModelRecipe(name=name, checkpoint=checkpoint, options=tuple(sorted(options.items())))


def _check_build_options(name: str | None, options: Mapping[str, Any]) -> None:
    """Reject options the zoo builder cannot take (only checked when its signature is explicit)."""
    import inspect

    try:
        from nnchip.models import build
    except ImportError:
        return
    params = inspect.signature(build).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    _reject_unknown(options, {p for p in params if p != "name"} | {"name", "checkpoint"}, "model")


def _data_recipe(data: Any, base_dir: Path | None, seed: int) -> DataRecipe:
    if isinstance(data, str):
        data = {"kind": data}
    if not isinstance(data, Mapping):
        raise ConfigError(f"data must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(DataRecipe)}
    _reject_unknown(data, known, "data")
    values = {"seed": seed, **data}
    if values.get("path") is not None:
        values["path"] = _resolve(str(values["path"]), base_dir)
        if not Path(values["path"]).exists():
            raise DataError(f"data.path not found: {values['path']}")
    return DataRecipe(**values)


def _ptq_recipe(data: Any) -> PTQRecipe:
    if not isinstance(data, Mapping):
        raise ConfigError(f"ptq must be a mapping, got {type(data).__name__}")
    _reject_unknown(data, ("methods", "options"), "ptq")
    methods = data.get("methods", ["calibrate"])
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) for m in methods):
        raise ConfigError(f"ptq.methods must be a list of method names, got {methods!r}")
    known = ptq_method_names()
    for i, method in enumerate(methods):
        if method not in known:
            raise ConfigError(f"ptq.methods[{i}]: unknown PTQ method {method!r}; known: {', '.join(known)}")
    options = data.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError("ptq.options must map a method name to its options")
    for method, opts in options.items():
        if method not in methods:
            raise ConfigError(f"ptq.options.{method}: {method!r} is not in ptq.methods")
        if not isinstance(opts, Mapping):
            raise ConfigError(f"ptq.options.{method} must be a mapping")
    frozen = tuple(sorted((m, tuple(sorted(dict(o).items()))) for m, o in options.items()))
    return PTQRecipe(methods=tuple(methods), options=frozen)


def ptq_method_names() -> list[str]:
    """Names of the registered PTQ methods (nnchip.quant.ptq's registry when it has one)."""
    try:
        import nnchip.quant.ptq as ptq_module
    except ImportError:
        return sorted(FALLBACK_PTQ_METHODS)
    for attr in ("PTQ_METHODS", "METHODS"):
        registry = getattr(ptq_module, attr, None)
        if registry is not None:
            names = registry.names() if hasattr(registry, "names") else list(registry)
            return sorted({"calibrate", *names})
    return sorted(FALLBACK_PTQ_METHODS)


# ---- quant: QuantConfig.from_dict with full key paths in errors ------------------------------------
_SPEC_KEYS = {f.name for f in dataclasses.fields(QuantSpec)}
_CONFIG_KEYS = {f.name for f in dataclasses.fields(QuantConfig)} | {"version"}
_OVERRIDE_KEYS = {f.name for f in dataclasses.fields(LayerOverride)}


def quant_config_from_dict(data: Any, where: str = "quant") -> QuantConfig:
    """QuantConfig.from_dict after a key-by-key check, so an error names e.g. `quant.act.bitz`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    _reject_unknown(data, _CONFIG_KEYS, where)
    for role in ("weight", "act"):
        if role in data:
            _check_spec(data[role], f"{where}.{role}")
    for i, override in enumerate(data.get("overrides") or ()):
        if not isinstance(override, Mapping):
            raise ConfigError(f"{where}.overrides[{i}] must be a mapping")
        _reject_unknown(override, _OVERRIDE_KEYS, f"{where}.overrides[{i}]")
        for role in ("weight", "act"):
            if override.get(role):
                _check_spec(override[role], f"{where}.overrides[{i}].{role}")
    for name in ("other_bits", "softmax_bits", "output_bits", "first_last_bits"):
        if name in data and data[name] is not None:
            _check_bits(data[name], f"{where}.{name}")
    try:
        return QuantConfig.from_dict(data, where=where)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_spec(spec: Any, where: str) -> None:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping of {', '.join(sorted(_SPEC_KEYS))}")
    _reject_unknown(spec, _SPEC_KEYS, where)
    if "bits" in spec:
        _check_bits(spec["bits"], f"{where}.bits")


def _check_bits(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BITS:
        raise ConfigError(f"{where} must be an integer in 1..{MAX_BITS}, got {value!r}")


# ---- pretrain / qat: TrainConfig fields ------------------------------------------------------------
def train_config_from_dict(data: Any, where: str) -> Any:
    """nnchip.train.TrainConfig(**data) with unknown fields named as `where.field`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping of TrainConfig fields, got {type(data).__name__}")
    try:
        from nnchip.train import TrainConfig
    except ImportError as exc:
        raise ConfigError(f"{where}: training is not available ({exc})") from None
    if dataclasses.is_dataclass(TrainConfig):
        _reject_unknown(data, {f.name for f in dataclasses.fields(TrainConfig)}, where)
    try:
        return TrainConfig(**dict(data))
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else f"{where}.{message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
