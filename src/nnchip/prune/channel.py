"""Channel (filter) and attention-head pruning with physical removal, dependency-aware, on the captured graph.

Channel groups. The float model is captured (core.capture) and every tensor's channel axis (dim 1 of conv
activations, the last dim of linear ones) is followed through the graph with a union-find:
  * a conv2d/linear output opens a group (its producer);
  * BatchNorm (sliced too), clamps, element-wise activations, pooling, identity/dropout, positive scaling and
    the flatten of a (B, C, 1, 1) tensor keep the group;
  * a residual `add` merges the groups of its operands — so the stem, every block's last conv and the
    projection shortcuts of a ResNet stage form one group and lose the same channels;
  * a conv (groups = 1) or linear reading the group is a consumer: its input channels are sliced;
  * any other use (reshape, concat, matmul, LayerNorm, the model output, ...) locks the group (kept whole).
Each unlocked group drops the round(s · C) channels of smallest score, score(c) = Σ_producers
‖W_p[c]‖₁ / mean_c ‖W_p[c]‖₁ (filters of coupled producers weigh equally); at least one must remain.

Attention heads. For each softmax whose input is Q·Kᵀ (through positive scalings) and whose output feeds
P·V, where Q, K and V each come from their own linear through layout ops only and P·V reaches one linear
(the projection) through layout ops: head h is scored by the normalised L1 norms of its Q/K/V rows and its
projection columns; removed heads lose those rows/columns, and the head count in the layout ops between
(reshape/unflatten arguments H followed by D, and H·D) is rewritten. Fused qkv projections are left alone.

The result is the captured GraphModule with smaller layers: it runs, quantizes and lowers like any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, fx, nn

from nnchip.core.capture import annotate_shapes, capture
from nnchip.core.errors import ConfigError
from nnchip.core.mask import strip_masks
from nnchip.core.op_kinds import CLAMP_KINDS, ELEMENTWISE_KINDS, LAYOUT_KINDS
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import register_structure

KEEP_GROUP_KINDS = CLAMP_KINDS | ELEMENTWISE_KINDS | {"batchnorm", "maxpool2d", "avgpool2d", "adaptive_avgpool2d",
                                                        "identity", "scale"}


@dataclass
class ChannelGroup:
    """Coupled channels: producers' outputs, norms and consumers' inputs lose the same indices."""

    producers: list[str] = field(default_factory=list)
    norms: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    locked_by: str | None = None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def make(self) -> int:
        key = len(self.parent)
        self.parent[key] = key
        return key

    def find(self, key: int) -> int:
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        self.parent[rb] = ra
        return ra


def channel_groups(gm: fx.GraphModule) -> list[ChannelGroup]:
    """The coupled channel groups of a captured graph (see the module docstring); locked ones included."""
    uf = _UnionFind()
    space: dict[fx.Node, int] = {}
    producers: dict[int, list[str]] = {}
    norms: dict[int, list[str]] = {}
    consumers: dict[int, list[str]] = {}
    locked: dict[int, str] = {}

    def lock(node: fx.Node, reason: str) -> None:
        if node in space:
            locked.setdefault(space[node], reason)

    for node in gm.graph.nodes:
        kind = node.meta.get("nnchip_kind")
        inputs = [a for a in node.all_input_nodes if a in space]
        if kind in ("conv2d", "linear") and node.op == "call_module":
            layer = gm.get_submodule(str(node.target))
            for arg in inputs:
                if arg is node.args[0] and getattr(layer, "groups", 1) == 1:
                    consumers.setdefault(space[arg], []).append(str(node.target))
                else:
                    lock(arg, f"{node.target} (grouped convolution)")
            key = uf.make()
            space[node] = key
            producers[key] = [str(node.target)]
        elif kind in KEEP_GROUP_KINDS and len(inputs) == 1 and node.args and node.args[0] is inputs[0]:
            space[node] = space[inputs[0]]
            if kind == "batchnorm" and node.op == "call_module":
                norms.setdefault(space[node], []).append(str(node.target))
        elif kind == "flatten" and len(inputs) == 1 and _flattens_pooled(node):
            space[node] = space[inputs[0]]
        elif kind == "add" and len(inputs) == 2 and len(node.all_input_nodes) == 2:
            space[node] = uf.union(space[inputs[0]], space[inputs[1]])
        else:
            for arg in inputs:
                lock(arg, f"{node.name} ({kind})")
    groups: dict[int, ChannelGroup] = {}
    for mapping, attr in ((producers, "producers"), (norms, "norms"), (consumers, "consumers")):
        for key, paths in mapping.items():
            getattr(groups.setdefault(uf.find(key), ChannelGroup()), attr).extend(paths)
    for key, reason in locked.items():
        group = groups.setdefault(uf.find(key), ChannelGroup())
        group.locked_by = group.locked_by or reason
    return list(groups.values())


def _flattens_pooled(node: fx.Node) -> bool:
    """flatten(x, 1) of a (B, C, 1, 1) tensor keeps the channel axis as the last one."""
    source = node.args[0]
    shape = source.meta.get("nnchip_shape") if isinstance(source, fx.Node) else None
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0 if node.op != "call_module" else 1)
    return shape is not None and len(shape) == 4 and shape[2:] == (1, 1) and start == 1


def _row_scores(weight: Tensor, dim: int = 0) -> Tensor:
    """Normalised L1 norm of each slice along `dim`: (C,), mean 1."""
    norms = weight.detach().abs().movedim(dim, 0).reshape(weight.shape[dim], -1).sum(dim=1).double()
    return norms / norms.mean().clamp_min(1e-12)


def _keep_indices(scores: Tensor, amount: float, what: str) -> Tensor:
    total = scores.numel()
    keep = total - round(amount * total)
    if keep <= 0:
        raise ConfigError(f"prune.sparsity {amount} would remove every channel of {what} ({total} channels)")
    return torch.sort(torch.argsort(scores, descending=True, stable=True)[:keep]).values


def _slice(module: nn.Module, out_keep: Tensor | None, in_keep: Tensor | None) -> nn.Module:
    """A smaller copy of a Conv2d / Linear / BatchNorm with the kept output and input channels."""
    with torch.no_grad():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            assert out_keep is not None
            new_bn = type(module)(len(out_keep), module.eps, module.momentum, module.affine,
                                  module.track_running_stats)
            for name in ("weight", "bias", "running_mean", "running_var"):
                if getattr(module, name) is not None:
                    getattr(new_bn, name).copy_(getattr(module, name)[out_keep])
            return new_bn.train(module.training)
        weight = module.weight.detach()
        bias = module.bias.detach() if module.bias is not None else None
        if out_keep is not None:
            weight, bias = weight[out_keep], bias[out_keep] if bias is not None else None
        if in_keep is not None:
            weight = weight[:, in_keep]
        if isinstance(module, nn.Conv2d):
            new: nn.Module = nn.Conv2d(weight.shape[1], weight.shape[0], module.kernel_size, module.stride,
                                       module.padding, module.dilation, module.groups, bias is not None,
                                       module.padding_mode)
        else:
            new = nn.Linear(weight.shape[1], weight.shape[0], bias is not None)
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
        return new.train(module.training)


class _Slicer:
    """Accumulates kept output/input indices per module path, then swaps in the smaller modules."""

    def __init__(self, gm: fx.GraphModule) -> None:
        self.gm = gm
        self.out_keep: dict[str, Tensor] = {}
        self.in_keep: dict[str, Tensor] = {}

    def apply(self) -> None:
        for path in sorted(set(self.out_keep) | set(self.in_keep)):
            module = self.gm.get_submodule(path)
            parent, _, name = path.rpartition(".")
            setattr(self.gm.get_submodule(parent) if parent else self.gm, name,
                    _slice(module, self.out_keep.get(path), self.in_keep.get(path)))


def _prune_groups(gm: fx.GraphModule, config: PruneConfig, sparsity: float, slicer: _Slicer) -> None:
    for group in channel_groups(gm):
        if group.locked_by or not group.producers or not group.consumers:
            continue
        if any(p in config.exclude for p in group.producers):
            continue
        overrides = [value for path, value in config.layer_sparsity if path in group.producers]
        amount = min(overrides) if overrides else sparsity  # a coupled group takes its smallest override
        if amount == 0:
            continue
        weights = [gm.get_submodule(p).weight for p in group.producers]
        sizes = {w.shape[0] for w in weights}
        if len(sizes) != 1:
            continue  # producers disagree on the channel count: leave the group alone
        scores = torch.stack([_row_scores(w) for w in weights]).sum(dim=0)  # (C,)
        coupled = f" and {len(group.producers) - 1} layer(s) coupled to it" if len(group.producers) > 1 else ""
        keep = _keep_indices(scores, amount, f"layer {group.producers[0]}{coupled}")
        for path in group.producers + group.norms:
            slicer.out_keep[path] = keep
        for path in group.consumers:
            slicer.in_keep[path] = keep


@dataclass
class _Attention:
    q: str
    k: str
    v: str
    proj: str
    heads: int
    head_dim: int
    layout_nodes: list[fx.Node]


def _walk_back_layout(node: fx.Node, path: list[fx.Node]) -> fx.Node:
    while node.meta.get("nnchip_kind") in LAYOUT_KINDS and node.op != "call_module":
        path.append(node)
        node = node.args[0]  # type: ignore[assignment]
    return node


def _find_attention(gm: fx.GraphModule, softmax: fx.Node) -> _Attention | None:
    scores = softmax.args[0]
    while isinstance(scores, fx.Node) and scores.meta.get("nnchip_kind") == "scale":
        scores = scores.args[0]
    if not isinstance(scores, fx.Node) or scores.meta.get("nnchip_kind") != "matmul":
        return None
    pv = [u for u in softmax.users if u.meta.get("nnchip_kind") == "matmul" and u.args[0] is softmax]
    if len(softmax.users) != 1 or len(pv) != 1:
        return None
    layout: list[fx.Node] = []
    sources = [_walk_back_layout(a, layout) for a in (scores.args[0], scores.args[1], pv[0].args[1])]
    node = pv[0]
    while len(node.users) == 1 and next(iter(node.users)).meta.get("nnchip_kind") in LAYOUT_KINDS:
        node = next(iter(node.users))
        layout.append(node)
    proj = next(iter(node.users)) if len(node.users) == 1 else None
    candidates = [*sources, proj]
    if any(c is None or c.op != "call_module" or c.meta.get("nnchip_kind") != "linear" for c in candidates):
        return None
    assert proj is not None
    q, k, v = (str(s.target) for s in sources)
    if len({q, k, v}) != 3 or any(len(s.users) != 1 for s in sources):
        return None
    shape = scores.meta.get("nnchip_shape")
    heads = shape[1] if shape is not None and len(shape) == 4 else 1
    width = gm.get_submodule(q).out_features
    if width % heads or any(gm.get_submodule(p).out_features != width for p in (k, v)):
        return None
    return _Attention(q, k, v, str(proj.target), heads, width // heads, layout)


def _rewrite_heads(value: object, heads: int, head_dim: int, kept: int) -> object:
    """Replace H (when followed by D) and H·D by the kept head count in a layout argument."""
    if isinstance(value, (list, tuple)):
        items = list(value)
        out = []
        for i, item in enumerate(items):
            if item == heads and i + 1 < len(items) and items[i + 1] == head_dim:
                out.append(kept)
            else:
                out.append(_rewrite_heads(item, heads, head_dim, kept))
        return type(value)(out)
    if isinstance(value, int) and not isinstance(value, bool) and value == heads * head_dim:
        return kept * head_dim
    return value


def _prune_heads(gm: fx.GraphModule, config: PruneConfig, sparsity: float, slicer: _Slicer) -> None:
    for node in list(gm.graph.nodes):
        if node.meta.get("nnchip_kind") != "softmax":
            continue
        att = _find_attention(gm, node)
        if att is None or att.heads < 2 or att.proj in config.exclude:
            continue
        amount = config.sparsity_of(att.q, sparsity)
        per_head = [_row_scores(gm.get_submodule(p).weight).reshape(att.heads, att.head_dim).sum(dim=1)
                    for p in (att.q, att.k, att.v)]
        proj_cols = _row_scores(gm.get_submodule(att.proj).weight, dim=1).reshape(att.heads, att.head_dim)
        scores = torch.stack([*per_head, proj_cols.sum(dim=1)]).sum(dim=0)  # (H,)
        if round(amount * att.heads) == 0:
            continue
        kept_heads = _keep_indices(scores, amount, f"attention {att.proj} (heads)")
        rows = (kept_heads[:, None] * att.head_dim + torch.arange(att.head_dim)).reshape(-1)
        for path in (att.q, att.k, att.v):
            slicer.out_keep[path] = rows
        slicer.in_keep[att.proj] = rows
        for layout in att.layout_nodes:
            layout.args = tuple(_rewrite_heads(a, att.heads, att.head_dim, len(kept_heads)) for a in layout.args)
            layout.kwargs = {k: _rewrite_heads(v, att.heads, att.head_dim, len(kept_heads))
                             for k, v in layout.kwargs.items()}


@register_structure("channel")
def prune_channels(model: nn.Module, config: PruneConfig, sparsity: float,
                   example_inputs: tuple[Tensor, ...] | None) -> nn.Module:
    if example_inputs is None:
        raise ConfigError("prune: structure 'channel' needs example_inputs (the graph is captured)")
    gm = capture(strip_masks(model), example_inputs).gm
    slicer = _Slicer(gm)
    _prune_groups(gm, config, sparsity, slicer)
    if config.heads:
        _prune_heads(gm, config, sparsity, slicer)
    slicer.apply()
    gm.recompile()
    annotate_shapes(gm, example_inputs)
    return gm.train(model.training)
