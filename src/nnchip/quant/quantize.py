"""`quantize(model, config, example_inputs=...)`: a float model → a fake-quant QModel on the captured graph.

Placement rule (one quantized tensor per producer, shared by all its users):
  * every conv/linear weight gets a weight quantizer inside a Q-layer (QConv2d / QLinear);
  * every tensor consumed by an integer op (conv, linear, matmul, add, mul, cat, pooling, mean,
    LayerNorm, softmax, GELU & co, the model output) is quantized right after the node that produces its
    values — found by walking back through value-preserving ops (layout ops, max-pool, positive scalings),
    so `conv → relu → flatten → linear` quantizes after the ReLU (unsigned, zero point 0);
  * softmax outputs get the contract's fixed grid (unsigned, zero point 0, scale 2^-(softmax_bits-1));
  * matmul operands (Q, K, V, P) are symmetric; bits follow the consumers: conv/linear/matmul inputs use
    `act.bits` (first/last layer: `first_last_bits`), tensors consumed only by other ops use `other_bits`.
BatchNorm is folded into the preceding conv/linear first (docs/quantization.md explains the QAT choice).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, fx, nn

from nnchip.core.capture import capture, module_path_and_type
from nnchip.core.errors import ConfigError, UnsupportedError
from nnchip.core.fold_batchnorm import fold_batchnorm
from nnchip.core.mask import copy_weight_parametrizations
from nnchip.core.op_kinds import ELEMENTWISE_KINDS, LAYOUT_KINDS
from nnchip.quant.base import Quantizer
from nnchip.quant.modules import Q_LAYER_TYPES, QConv2d, QLinear
from nnchip.quant.nonlinear import use_integer_nonlinear
from nnchip.quant.registry import QUANTIZERS
from nnchip.quant.spec import QuantConfig, QuantSpec

LAYER_KINDS = ("conv2d", "linear")
LUT_KINDS = ("vq_lut",)  # nnchip.vq LUT layers: kept as they are, their input quantized like a layer's
NEEDS_QUANTIZED_INPUT = frozenset(
    {"conv2d", "linear", "matmul", "add", "mul", "cat", "mean", "avgpool2d", "adaptive_avgpool2d", "batchnorm",
     "layernorm", "softmax", "output", "token_select"} | ELEMENTWISE_KINDS | set(LUT_KINDS)
)
# Clamps (CLAMP_KINDS: relu, relu6, hardtanh) are not value-preserving: the quantizer goes after them.
VALUE_PRESERVING = LAYOUT_KINDS | {"maxpool2d", "scale"}


class QModel(nn.Module):
    """A fake-quant model: the captured graph with Q-layers and quantizer nodes, plus its config."""

    def __init__(self, gm: fx.GraphModule, config: QuantConfig, example_inputs: tuple[Tensor, ...]) -> None:
        super().__init__()
        self.gm = gm
        self.config = config
        self.example_inputs = tuple(t.detach().clone() for t in example_inputs)

    @property
    def graph(self) -> fx.Graph:
        return self.gm.graph

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.gm(*inputs)

    def quantizers(self) -> list[tuple[str, Quantizer]]:
        return [(name, m) for name, m in self.gm.named_modules() if isinstance(m, Quantizer)]

    def activation_quantizers(self) -> list[tuple[str, Quantizer]]:
        return [(name, m) for name, m in self.quantizers() if m.role == "act"]

    def layers(self) -> list[tuple[str, QConv2d | QLinear]]:
        return [(name, m) for name, m in self.gm.named_modules() if isinstance(m, (QConv2d, QLinear))]


def quantize(model: nn.Module, config: QuantConfig, *, example_inputs: Tensor | tuple[Tensor, ...]) -> QModel:
    """Capture `model` and return its fake-quant version (weights initialised, activations uncalibrated)."""
    if not isinstance(config, QuantConfig):
        raise ConfigError(f"config must be a QuantConfig, got {type(config).__name__}")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    gm = capture(model, inputs).gm
    fold_batchnorm(gm)
    layer_nodes = [n for n in gm.graph.nodes if n.meta["nnchip_kind"] in LAYER_KINDS]
    _check_paths(gm, config)
    edge_nodes = {layer_nodes[0], layer_nodes[-1]} if layer_nodes and config.first_last_bits is not None else set()
    overrides = {o.path: o for o in config.overrides}
    for node in layer_nodes:
        if node.target in config.keep_float:
            continue
        _replace_layer(gm, node, _weight_spec(config, node, edge_nodes, overrides))
    for node in list(gm.graph.nodes):
        if node.meta["nnchip_kind"] == "softmax":
            spec = QuantSpec(bits=config.softmax_bits, quantizer="fixed", signed=False, symmetric=True)
            _insert_quantizer(gm, node, _make_act_quantizer(spec, node))
    consumers = _consumers_by_producer(gm, config)
    for producer, users in consumers.items():
        spec = _act_spec(config, producer, users, edge_nodes, overrides)
        _insert_quantizer(gm, producer, _make_act_quantizer(spec, producer))
    _link_input_quantizers(gm)
    _link_integer_inputs(gm)
    if config.nonlinear == "integer":
        use_integer_nonlinear(gm, config.softmax_bits, config.softmax_impl, config.gelu_impl)
    gm.graph.lint()
    gm.recompile()
    qmodel = QModel(gm, config, inputs)
    qmodel.train(model.training)
    return qmodel


def _check_paths(gm: fx.GraphModule, config: QuantConfig) -> None:
    layer_paths = {str(n.target) for n in gm.graph.nodes if n.op == "call_module"}
    for where, paths in (("keep_float", config.keep_float), ("overrides", [o.path for o in config.overrides])):
        for path in paths:
            if path not in layer_paths:
                raise ConfigError(f"{where}: no layer at path {path!r} in the captured model")


# value-set formats with a fixed bit-width range: the 8-bit first/last layers use plain fixed point instead
EDGE_FALLBACK_QUANTIZERS = ("binary", "ternary", "pot", "row_mixed")


def _weight_spec(config: QuantConfig, node: fx.Node, edges: set[fx.Node], overrides: dict) -> QuantSpec:
    override = overrides.get(str(node.target))
    if override is not None and override.weight is not None:
        return override.weight
    if node in edges and config.first_last_bits is not None and config.weight.bits < config.first_last_bits:
        spec = config.weight
        quantizer = spec.quantizer if spec.quantizer not in EDGE_FALLBACK_QUANTIZERS else "minmax"
        return replace(spec, bits=config.first_last_bits, quantizer=quantizer, narrow=True, options=())
    return config.weight


def _replace_layer(gm: fx.GraphModule, node: fx.Node, spec: QuantSpec) -> None:
    path = str(node.target)
    layer = gm.get_submodule(path)
    out_channels = layer.weight.shape[0]
    if spec.granularity == "group" and out_channels % (spec.group_size or 1):
        raise ConfigError(
            f"weight.group_size {spec.group_size} does not divide the {out_channels} output channels of "
            f"{module_path_and_type(gm, node)}"
        )
    per_channel = spec.granularity in ("channel", "group")
    quantizer = QUANTIZERS.get(spec.quantizer, field="weight.quantizer")(
        spec, role="weight", channel_axis=0 if per_channel else None, channels=out_channels, ndim=layer.weight.dim()
    )
    quantizer.initialize_from_tensor(layer.weight.detach())
    qlayer: nn.Module = QConv2d(layer, quantizer) if isinstance(layer, nn.Conv2d) else QLinear(layer, quantizer)
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise UnsupportedError(f"{module_path_and_type(gm, node)} cannot be quantized")
    copy_weight_parametrizations(layer, qlayer)  # pruning masks survive quantization (nnchip.core.mask)
    qlayer.train(layer.training)
    parent_path, _, name = path.rpartition(".")
    setattr(gm.get_submodule(parent_path) if parent_path else gm, name, qlayer)


def _source(node: fx.Node) -> fx.Node | None:
    """The node whose values `node` carries unchanged (through layout ops), or None if already quantized."""
    current = node
    while True:
        kind = current.meta.get("nnchip_kind")
        if kind == "quantize":
            return None
        if kind in VALUE_PRESERVING:
            current = next(a for a in current.args if isinstance(a, fx.Node))
            continue
        return current


def _consumers_by_producer(gm: fx.GraphModule, config: QuantConfig) -> dict[fx.Node, list[fx.Node]]:
    result: dict[fx.Node, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        kind = node.meta["nnchip_kind"]
        if kind not in NEEDS_QUANTIZED_INPUT or (node.op == "call_module" and node.target in config.keep_float):
            continue
        for arg in node.all_input_nodes:
            if arg.meta.get("nnchip_shape") is None and arg.meta.get("nnchip_kind") not in VALUE_PRESERVING:
                continue
            source = _source(arg)
            if source is not None and source.meta.get("nnchip_shape") is not None:
                result.setdefault(source, []).append(node)
    return result


def _act_spec(config: QuantConfig, producer: fx.Node, users: list[fx.Node], edges: set[fx.Node],
              overrides: dict) -> QuantSpec:
    spec = config.act
    bits = 0
    kinds = {u.meta["nnchip_kind"] for u in users}
    for user in users:
        kind = user.meta["nnchip_kind"]
        override = overrides.get(str(user.target)) if user.op == "call_module" else None
        if override is not None and override.act is not None:
            spec = override.act
            bits = max(bits, override.act.bits)
        elif kind in LAYER_KINDS or kind in LUT_KINDS:
            bits = max(bits, config.first_last_bits if user in edges and config.first_last_bits else config.act.bits)
        elif kind == "matmul":
            bits = max(bits, config.act.bits)
        elif kind == "output":
            bits = max(bits, config.output_bits)
        else:
            bits = max(bits, config.other_bits)
    if spec.granularity == "token" and not kinds <= {"linear", "matmul"}:
        raise ConfigError(
            f"act.granularity 'token' on {producer.name}: per-token scales are only lowerable into linear/matmul "
            f"inputs, but it feeds {', '.join(sorted(kinds))}"
        )
    if "matmul" in kinds or "output" in kinds:  # Q, K, V and logits are symmetric (zero point 0)
        spec = replace(spec, signed=True, symmetric=True, narrow=False)
    return replace(spec, bits=bits)


def _make_act_quantizer(spec: QuantSpec, producer: fx.Node) -> Quantizer:
    shape = producer.meta["nnchip_shape"]
    if spec.granularity == "token":
        if len(shape) < 2:
            raise ConfigError(f"act.granularity 'token' needs a (…, tokens, features) tensor at {producer.name}")
        return QUANTIZERS.get(spec.quantizer, field="act.quantizer")(
            spec, role="act", channel_axis=len(shape) - 2, channels=shape[-2], ndim=len(shape)
        )
    return QUANTIZERS.get(spec.quantizer, field="act.quantizer")(spec, role="act")


def _insert_quantizer(gm: fx.GraphModule, producer: fx.Node, quantizer: Quantizer) -> fx.Node:
    name = _unique_name(gm, f"{producer.name}_aq")
    gm.add_submodule(name, quantizer)
    with gm.graph.inserting_after(producer):
        qnode = gm.graph.call_module(name, (producer,))
    producer.replace_all_uses_with(qnode, delete_user_cb=lambda user: user is not qnode)
    qnode.meta.update(nnchip_kind="quantize", nnchip_shape=producer.meta.get("nnchip_shape"))
    qnode.meta["nn_module_stack"] = producer.meta.get("nn_module_stack", {})
    return qnode


def _link_input_quantizers(gm: fx.GraphModule) -> None:
    """Tell each Q-layer which activation quantizer its input comes from (through layout ops and max
    pooling, which keep the scale), so its bias can live on the integer accumulator grid."""
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(layer := gm.get_submodule(str(node.target)), Q_LAYER_TYPES):
            continue
        source = node.args[0]
        while isinstance(source, fx.Node) and source.meta.get("nnchip_kind") in LAYOUT_KINDS | {"maxpool2d"}:
            source = source.args[0]
        if isinstance(source, fx.Node) and source.meta.get("nnchip_kind") == "quantize":
            layer.link_input_quantizer(gm.get_submodule(str(source.target)))


def _link_integer_inputs(gm: fx.GraphModule) -> None:
    """Modules that compute on their inputs' integers (token selection, nnchip.prune.token) learn the
    quantizers that feed them directly."""
    for node in gm.graph.nodes:
        if node.op == "call_module" and hasattr(module := gm.get_submodule(str(node.target)), "link_input_quantizers"):
            module.link_input_quantizers([gm.get_submodule(str(a.target)) if isinstance(a, fx.Node) and
                                          a.meta.get("nnchip_kind") == "quantize" else None for a in node.args])


def _unique_name(gm: fx.GraphModule, base: str) -> str:
    name, index = base, 1
    while hasattr(gm, name):
        name, index = f"{base}_{index}", index + 1
    return name


@torch.no_grad()
def calibrate(qmodel: QModel, batches: object, *, max_batches: int | None = None) -> QModel:
    """Run `batches` (an iterable of input tensors or (input, target) pairs) through the model with every
    activation quantizer observing, then fix their scales and zero points."""
    from nnchip.core.errors import DataError

    act = qmodel.activation_quantizers()
    was_training = qmodel.training
    qmodel.eval()
    for _, q in act:
        q.calibrating = True
        q.observer.count.zero_()
    seen = 0
    try:
        for batch in batches:  # type: ignore[attr-defined]
            inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(inputs, Tensor) or inputs.numel() == 0:
                raise DataError("calibration batch is empty or not a tensor")
            if not torch.isfinite(inputs).all():
                raise DataError("calibration data contains NaN or infinite values")
            qmodel(inputs)
            seen += 1
            if max_batches is not None and seen >= max_batches:
                break
        if seen == 0:
            raise DataError("calibration data is empty: no batch was provided")
        for _, q in act:
            q.finish_calibration()
    finally:
        for _, q in act:
            q.calibrating = False
        qmodel.train(was_training)
    return qmodel
