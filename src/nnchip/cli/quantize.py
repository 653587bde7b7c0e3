"""`nnchip quantize RECIPE.yaml [--out DIR]`: model → (float training) → quantize → PTQ → (QAT) → summary.

The steps are plain functions that the demo reuses row by row:
  load_data(DataRecipe) -> DataBundle          train/test datasets of (image (C, H, W), label)
  build_float_model(ModelRecipe, bundle)       zoo model, checkpoint loaded safely
  quantize_and_ptq(model, QuantConfig, PTQRecipe, bundle) -> QModel
  qat(qmodel, TrainConfig, bundle, teacher=)   short quantization-aware training
  top1(model, dataset) -> float                eval mode, real-valued scales
Writes DIR/summary.json (a list with one record) and DIR/qmodel.safetensors, both atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from nnchip.cli.common import add_out_argument, atomic_write, format_table, resolve_out, set_determinism, write_summary
from nnchip.core.errors import ConfigError, DataError
from nnchip.quant import QModel, QuantConfig, calibrate, quantize
from nnchip.recipes import DataRecipe, ModelRecipe, PTQRecipe, Recipe, load_recipe

DEFAULT_OUT = "nnchip-out/quantize"
EVAL_BATCH = 1024


# ---- data ------------------------------------------------------------------------------------------
@dataclass
class DataBundle:
    """Train and test sets of (image (C, H, W) float, label int) and what a model needs to know of them."""

    train: Dataset
    test: Dataset
    in_channels: int
    image_size: int
    num_classes: int
    batch_size: int = 256
    calib_images: int = 512
    seed: int = 0

    def calibration_inputs(self) -> Tensor:
        """The first `calib_images` training images in a seeded random order: (N, C, H, W)."""
        n = min(self.calib_images, len(self.train))
        order = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(self.seed))[:n]
        loader = DataLoader(Subset(self.train, order.tolist()), batch_size=EVAL_BATCH)
        return torch.cat([batch[0] for batch in loader])

    def calibration_batches(self) -> list[Tensor]:
        x = self.calibration_inputs()
        return list(x.split(self.batch_size))

    def test_tensors(self) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*DataLoader(self.test, batch_size=EVAL_BATCH), strict=True)
        return torch.cat(xs), torch.cat(ys)


def _as_tensor_dataset(obj: Any, where: str) -> Dataset:
    if isinstance(obj, Dataset):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = (torch.as_tensor(v) for v in obj)
        return TensorDataset(x.float(), y.long())
    raise DataError(f"{where}: expected a Dataset or an (images, labels) pair, got {type(obj).__name__}")


def _split_parts(split: Any, where: str) -> tuple[Dataset, Dataset]:
    """(train, test) from what a nnchip.data loader returns: an object with .train/.test, a pair, or 4 arrays."""
    if hasattr(split, "train") and hasattr(split, "test"):
        return _as_tensor_dataset(split.train, where), _as_tensor_dataset(split.test, where)
    if hasattr(split, "x_train"):
        return (_as_tensor_dataset((split.x_train, split.y_train), where),
                _as_tensor_dataset((split.x_test, split.y_test), where))
    if isinstance(split, (tuple, list)) and len(split) == 4:
        return _as_tensor_dataset(split[:2], where), _as_tensor_dataset(split[2:], where)
    if isinstance(split, (tuple, list)) and len(split) == 2:
        return _as_tensor_dataset(split[0], where), _as_tensor_dataset(split[1], where)
    raise DataError(f"{where}: unexpected split type {type(split).__name__}")


def load_data(recipe: DataRecipe) -> DataBundle:
    """Read the data a recipe names (digits are embedded; the other kinds need `path`)."""
    import nnchip.data as data

    if recipe.kind == "digits":
        train, test = _split_parts(data.load_digits_split(seed=recipe.seed), "data")
    else:
        path = Path(str(recipe.path))
        if not path.exists():
            raise DataError(f"data.path not found: {path}")
        train, test = _split_parts(_call_reader(data, recipe.kind, path, recipe.seed), f"data.path {path}")
    if recipe.train_limit:
        train = Subset(train, range(min(recipe.train_limit, len(train))))
    if recipe.test_limit:
        test = Subset(test, range(min(recipe.test_limit, len(test))))
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"data ({recipe.kind}): empty train or test split")
    x0 = train[0][0]
    labels = _labels(train)
    return DataBundle(train=train, test=test, in_channels=int(x0.shape[0]), image_size=int(x0.shape[-1]),
                      num_classes=int(labels.max()) + 1, batch_size=recipe.batch_size,
                      calib_images=recipe.calib_images, seed=recipe.seed)


READERS = {  # data.kind -> candidate function names in nnchip.data, first found wins
    "cifar10_tar": ("load_cifar10_tar", "load_imagefolder_tar", "load_imagefolder"),
    "imagefolder": ("load_imagefolder", "load_imagefolder_tar"),
    "cifar10_bin": ("load_cifar10_bin", "load_cifar10_binary"),
    "mnist_idx": ("load_mnist_idx", "load_mnist"),
}


def _call_reader(data_module: Any, kind: str, path: Path, seed: int) -> Any:
    for name in READERS[kind]:
        reader = getattr(data_module, name, None)
        if reader is not None:
            try:
                return reader(path, seed=seed)
            except TypeError:
                return reader(path)
    raise ConfigError(f"data.kind {kind!r}: no reader in nnchip.data (looked for {', '.join(READERS[kind])})")


def _labels(dataset: Dataset) -> Tensor:
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if targets is not None:
        return torch.as_tensor(targets)
    return torch.cat([b[1] for b in DataLoader(dataset, batch_size=EVAL_BATCH)])


# ---- model -----------------------------------------------------------------------------------------
def build_float_model(recipe: ModelRecipe, bundle: DataBundle) -> nn.Module:
    """The zoo model shaped for the data (unless the recipe says otherwise), checkpoint loaded safely."""
    from nnchip.models import build

    kwargs = {"num_classes": bundle.num_classes, "in_channels": bundle.in_channels,
              "image_size": bundle.image_size, **recipe.build_kwargs()}
    name = recipe.name
    state = None
    if recipe.checkpoint is not None:
        state, meta = load_state_dict(recipe.checkpoint)
        if name is None:
            name = meta.get("model")
            kwargs = {**kwargs, **meta.get("model_kwargs", {}), **recipe.build_kwargs()}
        if name is None:
            raise ConfigError(f"model.name is required: {recipe.checkpoint} does not say which zoo model it holds")
    try:
        model = build(str(name), **kwargs)
    except TypeError as exc:
        raise ConfigError(f"model: {exc}") from None
    if state is not None:
        _load_into(model, state, str(recipe.checkpoint))
    return model.eval()


def load_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A state dict from safetensors or a `weights_only` torch file (never unpickled), plus nnchip metadata."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            return state, json.loads(meta.get("nnchip", "{}"))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any reader failure means the file is unusable)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"corrupt or unreadable checkpoint {path}: {reason[:200]}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise DataError(f"checkpoint {path} does not hold a state dict of tensors")
    return obj, {}


def _load_into(model: nn.Module, state: dict[str, Tensor], path: str) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        missing = set(model.state_dict()) - set(state)
        extra = set(state) - set(model.state_dict())
        detail = f"missing {sorted(missing)[:3]}" if missing else f"unexpected {sorted(extra)[:3]}" if extra else first
        raise DataError(f"checkpoint {path} does not fit the model: {detail}") from None


def save_checkpoint(path: Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """state_dict → safetensors with nnchip metadata (JSON under key 'nnchip'), written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"nnchip": json.dumps(metadata, sort_keys=True)}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


# ---- quantize, PTQ, QAT, evaluate --------------------------------------------------------------------
def quantize_and_ptq(model: nn.Module, config: QuantConfig, ptq_recipe: PTQRecipe, calib: list[Tensor]) -> QModel:
    """quantize(model, config), then each PTQ method of the recipe on the calibration batches."""
    qmodel = quantize(model, config, example_inputs=calib[0][:1])
    qmodel.eval()
    for method in ptq_recipe.methods:
        run_ptq_method(qmodel, calib, method, ptq_recipe.method_options(method))
    return qmodel


def run_ptq_method(qmodel: QModel, calib: list[Tensor], method: str, options: dict[str, Any]) -> None:
    try:
        from nnchip.quant.ptq import ptq
    except ImportError:
        ptq = None
    if ptq is None:
        if method != "calibrate":
            raise ConfigError(f"ptq method {method!r} is not available (nnchip.quant.ptq has no ptq())")
        calibrate(qmodel, calib)
        return
    ptq(qmodel, calib, method, **options)


def qat(qmodel: QModel, config: Any, bundle: DataBundle, teacher: nn.Module | None = None) -> QModel:
    """Quantization-aware training with nnchip.train; returns the model in eval mode."""
    from nnchip.train import train

    train(qmodel, bundle.train, config, eval_data=None, teacher=teacher)
    return qmodel.eval()


def pretrain(model: nn.Module, config: Any, bundle: DataBundle) -> nn.Module:
    from nnchip.train import train

    train(model, bundle.train, config, eval_data=None)
    return model.eval()


def top1(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy (fraction) in eval mode; the model's mode is restored."""
    from nnchip.train import evaluate

    return evaluate(model, dataset, batch_size=EVAL_BATCH)


def run_recipe(recipe: Recipe, out_dir: Path, *, log: Any = print,
               export_formats: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run a recipe; with `export_formats`, also lower, export to out_dir/export and verify (int_acc, bit_exact)."""
    set_determinism(recipe.seed, threads=torch.get_num_threads())
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bundle = load_data(recipe.data)
    timings["data_s"] = time.perf_counter() - t0
    model = build_float_model(recipe.model, bundle)
    if recipe.model.checkpoint is None:
        if recipe.pretrain is None:
            print("nnchip quantize: warning: model has no checkpoint and the recipe no `pretrain`: "
                  "quantizing untrained weights", file=sys.stderr)
        else:
            t = time.perf_counter()
            pretrain(model, recipe.pretrain, bundle)
            timings["pretrain_s"] = time.perf_counter() - t
    float_acc = top1(model, bundle.test)
    calib = bundle.calibration_batches()
    t = time.perf_counter()
    qmodel = quantize_and_ptq(model, recipe.quant, recipe.ptq, calib)
    timings["ptq_s"] = time.perf_counter() - t
    ptq_acc = top1(qmodel, bundle.test)
    acc, method = ptq_acc, "ptq"
    if recipe.qat is not None:
        t = time.perf_counter()
        qat(qmodel, recipe.qat, bundle, teacher=model)
        timings["qat_s"] = time.perf_counter() - t
        acc, method = top1(qmodel, bundle.test), "qat"
    name = recipe.model.name or Path(str(recipe.model.checkpoint)).stem
    record = {
        "row_id": f"{name}-w{recipe.quant.weight.bits}a{recipe.quant.act.bits}-{method}",
        "model": name, "method": method, "ptq_methods": list(recipe.ptq.methods),
        "w_bits": recipe.quant.weight.bits, "a_bits": recipe.quant.act.bits,
        "first_last_bits": recipe.quant.first_last_bits, "weight_quantizer": recipe.quant.weight.quantizer,
        "act_quantizer": recipe.quant.act.quantizer,
        "acc": acc, "ptq_acc": ptq_acc, "float_acc": float_acc, "n_test": len(bundle.test),
        "n_calib": sum(len(c) for c in calib), "data": recipe.data.kind, "recipe": recipe.source,
        "checkpoint": "qmodel.safetensors", "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    meta = {"model": recipe.model.name, "model_kwargs": dict(recipe.model.options),
            "quant": recipe.quant.to_dict(), "record": {k: record[k] for k in ("row_id", "acc", "float_acc")}}
    save_checkpoint(out_dir / "qmodel.safetensors", qmodel, meta)
    if export_formats is not None:
        from nnchip.lower.demo_stage import lower_export_verify

        test_x, test_y = bundle.test_tensors()
        record.update(lower_export_verify(qmodel, torch.cat(calib), test_x, test_y, out_dir / "export",
                                          formats=export_formats))
        log(f"integer model: top-1 {100 * record['int_acc']:.2f} %, bit-exact export: {record['bit_exact']} "
            f"({record['export_dir']})")
    write_summary(out_dir, [record])
    log(format_table(["model", "method", "bits", "acc %", "Δ vs float"],
                     [[name, method, f"W{record['w_bits']}A{record['a_bits']}", 100 * acc,
                       100 * (acc - float_acc)]]))
    log(f"wrote {out_dir / 'summary.json'} and {out_dir / 'qmodel.safetensors'}")
    return record


def _run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    out_dir = resolve_out(args, fallback=recipe.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_recipe(recipe, out_dir)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("quantize", help="run a quantization recipe (YAML)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("recipe", metavar="RECIPE.yaml", help="recipe file (see docs/recipes.md)")
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.set_defaults(func=_run)


__all__ = [
    "DataBundle", "add_parser", "build_float_model", "load_data", "load_state_dict", "pretrain", "qat",
    "quantize_and_ptq", "run_recipe", "save_checkpoint", "top1",
]
