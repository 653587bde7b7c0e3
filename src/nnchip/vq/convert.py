"""`vq(model, config, example_inputs=, calibration=)`: replace Linear/Conv2d layers by k-means-initialised LUT layers.

The model is captured and its BatchNorms folded (as `quantize` does), so a LUT layer replaces the folded
layer; the selected layers (`VQConfig.layers` / `include` / `exclude`, matched on module types and graph
order, never on names) become `LUTLayer`s whose centroids are initialised by k-means on the layer's inputs
recorded over the calibration batches (stage 1 of the multistage training; `train_vq` runs the others);
with `VQConfig.recalibrate`, each LUT layer's output moments are then restored to the float layer's
(`nnchip.vq.recalibrate`, on the first calibration batch).
The result is a GraphModule that `quantize` accepts like any model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, fx, nn

from nnchip.core.capture import capture, module_path_and_type
from nnchip.core.errors import ConfigError, DataError, UnsupportedError
from nnchip.core.fold_batchnorm import fold_batchnorm
from nnchip.vq.config import VQConfig
from nnchip.vq.integer import im2col_rows
from nnchip.vq.kmeans import kmeans
from nnchip.vq.layer import LUTLayer
from nnchip.vq.recalibrate import channel_moments, recalibrate

LAYER_KINDS = ("conv2d", "linear")


def vq(model: nn.Module, config: VQConfig, *, example_inputs: Tensor | tuple[Tensor, ...],
       calibration: Iterable[object]) -> fx.GraphModule:
    """The captured model with the selected layers as LUT layers (centroids from k-means on `calibration`)."""
    if not isinstance(config, VQConfig):
        raise ConfigError(f"config must be a VQConfig, got {type(config).__name__}")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    gm = capture(model, inputs).gm
    fold_batchnorm(gm)
    nodes = select_layers(gm, config)
    for node in nodes:
        _check_layer(gm, node, config)
    samples, moments, first = _record_inputs(gm, nodes, calibration, config)
    generator = torch.Generator().manual_seed(config.seed)
    for node in nodes:
        path = str(node.target)
        layer = LUTLayer(gm.get_submodule(path), v=config.v, k=config.k, metric=config.metric,
                         table_bits=config.table_bits, table_granularity=config.table_granularity)
        groups = layer.groups(samples[path])  # (C, N, v)
        centroids, nearest = kmeans(groups, config.k, config.metric, config.kmeans_iters, generator,
                                    init=config.kmeans_init)
        with torch.no_grad():
            layer.codebooks.copy_(centroids)
            layer.log_tau.fill_(float(torch.log(nearest.median().clamp_min(1e-6))))
        parent, _, name = path.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, layer)
        node.meta["nnchip_kind"] = LUTLayer.nnchip_kind
    gm.recompile()
    recalibrate(gm, moments, first, config.recalibrate)
    return gm.train(model.training)


def select_layers(gm: fx.GraphModule, config: VQConfig) -> list[fx.Node]:
    """The conv/linear nodes to convert, in graph order (errors name unknown or unsupported paths)."""
    modules = {str(n.target): n for n in gm.graph.nodes if n.op == "call_module"}
    layers = [n for n in gm.graph.nodes if n.meta.get("nnchip_kind") in LAYER_KINDS]
    for where, paths in (("include", config.include), ("exclude", config.exclude)):
        for path in paths:
            if path not in modules:
                raise ConfigError(f"vq.{where}: no module at path {path!r} in the captured model")
    if config.include:
        chosen = [modules[p] for p in config.include]
        for node in chosen:
            if node.meta.get("nnchip_kind") not in LAYER_KINDS:
                raise UnsupportedError(f"vq: {module_path_and_type(gm, node)} cannot become a LUT layer "
                                       "(only nn.Linear and nn.Conv2d)")
        chosen.sort(key=layers.index)
    else:
        chosen = layers[1:-1] if config.layers == "inner" else list(layers)
    return [n for n in chosen if str(n.target) not in config.exclude]


def _check_layer(gm: fx.GraphModule, node: fx.Node, config: VQConfig) -> None:
    layer = gm.get_submodule(str(node.target))
    where = module_path_and_type(gm, node)
    if type(layer) not in (nn.Linear, nn.Conv2d):
        raise UnsupportedError(f"vq: {where} cannot become a LUT layer (only nn.Linear and nn.Conv2d)")
    if isinstance(layer, nn.Conv2d) and (layer.groups != 1 or layer.padding_mode != "zeros"
                                         or isinstance(layer.padding, str)):
        raise UnsupportedError(f"vq: {where} has groups={layer.groups}, padding={layer.padding!r}, padding_mode="
                               f"{layer.padding_mode!r}; LUT layers need groups=1 and explicit zero padding")
    width = int(layer.weight[0].numel())
    if width % config.v:
        raise ConfigError(f"vq.v = {config.v} does not divide the input width D = {width} of {where}")


def _rows(layer: nn.Module, x: Tensor) -> Tensor:
    """A layer's input as rows (N, D): linear (..., D); conv im2col, channel-major (c, i, j)."""
    width = int(layer.weight[0].numel())
    if isinstance(layer, nn.Conv2d):
        return im2col_rows(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation).reshape(-1, width)
    return x.reshape(-1, width)


def _record_inputs(gm: fx.GraphModule, nodes: list[fx.Node], calibration: Iterable[object], config: VQConfig
                   ) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]], Tensor]:
    """Rows (N, D) of every selected layer's input (at most `kmeans_samples` per batch, then subsampled), the
    per-channel (mean, std) (M,) of its float output over all batches, and the first batch of images."""
    generator = torch.Generator().manual_seed(config.seed)
    rows: dict[str, list[Tensor]] = {str(n.target): [] for n in nodes}
    sums: dict[str, list[Tensor]] = {}  # path -> [count, Σ mean·count, Σ (std² + mean²)·count] per channel
    hooks = []
    for node in nodes:
        path = str(node.target)
        layer = gm.get_submodule(path)

        def pre_hook(module: nn.Module, args: tuple[Tensor, ...], path: str = path) -> None:
            found = _rows(module, args[0].detach())  # (N, D)
            keep = torch.randperm(found.shape[0], generator=generator)[:config.kmeans_samples]
            rows[path].append(found[keep])

        def hook(module: nn.Module, args: tuple[Tensor, ...], y: Tensor, path: str = path) -> None:
            mean, std = channel_moments(y.double(), isinstance(module, nn.Conv2d))
            count = torch.tensor(y.numel() / mean.numel(), dtype=torch.float64)
            parts = [count, mean * count, (std.pow(2) + mean.pow(2)) * count]
            sums[path] = parts if path not in sums else [a + b for a, b in zip(sums[path], parts, strict=True)]

        hooks += [layer.register_forward_pre_hook(pre_hook), layer.register_forward_hook(hook)]
    was_training = gm.training
    gm.eval()
    first: Tensor | None = None
    try:
        with torch.no_grad():
            for batch in calibration:
                images = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(images, Tensor) or images.numel() == 0:
                    raise DataError("vq calibration batch is empty or not a tensor")
                first = images if first is None else first
                gm(images)
    finally:
        for handle in hooks:
            handle.remove()
        gm.train(was_training)
    if first is None:
        raise DataError("vq calibration data is empty: no batch was provided")
    result, moments = {}, {}
    for path, found in rows.items():
        every = torch.cat(found)
        result[path] = every[torch.randperm(every.shape[0], generator=generator)[:config.kmeans_samples]]
        count, total, squares = sums[path]
        mean = total / count
        moments[path] = (mean.float(), (squares / count - mean.pow(2)).clamp_min(0).sqrt().float())
    return result, moments, first
