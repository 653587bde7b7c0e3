"""Token pruning for ViTs with a package token (EViT-style), lowerable to integers.

`prune_tokens(model, TokenPruneConfig(keep_ratio=0.7), example_inputs=x)` captures the model and, in every
chosen attention block, inserts a `TokenSelect` node right after the attention sub-block's output (the
residual add; for post-norm blocks the LayerNorm after it), so the MLP and every later block see fewer
tokens. Token j's score is the class token's attention to j summed over the heads (the head average times H)
of that block's softmax; the top k = ceil(keep_ratio · N) of the N non-class tokens are kept (ties to the
lower index) in their original order, the class token always stays first, and the dropped tokens are folded
into one package token appended last: their attention-weighted average (`nnchip.core.token_select` gives the
exact integer definition; docs/pruning.md).

The result is a GraphModule that quantize() and lower() take like any model: in the fake-quant model the
selection reads the integer attention probabilities and the integer tokens of its input quantizers, so it
takes the very decisions the integer model (IntGraph op `token_select`) takes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, fx, nn

from nnchip.core.capture import annotate_shapes, capture
from nnchip.core.errors import ConfigError, UnsupportedError
from nnchip.core.op_kinds import classify_node
from nnchip.core.token_select import class_attention_scores, kept_token_indices, package_weights, token_select
from nnchip.prune.registry import register_structure
from nnchip.prune.token_config import TokenPruneConfig
from nnchip.quant.base import Quantizer


class TokenSelect(nn.Module):
    """(x (B, T, C), attention probabilities (B, H, T, T)) → (B, keep + 2, C): class token, kept tokens,
    package token. Float model: real scores and a real weighted average (gradients reach x and the
    attention). Fake-quant model (input quantizers linked by quantize()): the integer operator, with a
    straight-through gradient."""

    nnchip_leaf = True
    nnchip_kind = "token_select"

    def __init__(self, keep: int, tokens: int) -> None:
        super().__init__()
        self.keep, self.tokens = keep, tokens  # kept / all non-class tokens

    def extra_repr(self) -> str:
        return f"keep={self.keep}, tokens={self.tokens}"

    def link_input_quantizers(self, quantizers: list[Quantizer | None]) -> None:
        """Remember (not as submodules) the quantizers whose outputs are this node's x and probabilities."""
        self.__dict__["_sources"] = quantizers[:2]

    def _integer_scales(self) -> tuple[float, float] | None:
        sources = self.__dict__.get("_sources") or [None, None]
        if any(q is None or not q.enabled or q.calibrating or not bool(q.initialized) or q.get_scale().numel() != 1
               for q in sources):
            return None
        return float(sources[0].get_scale().detach()), float(sources[1].get_scale().detach())

    def forward(self, x: Tensor, probs: Tensor) -> Tensor:
        if x.dim() != 3 or probs.dim() != 4 or x.shape[1] != self.tokens + 1 or probs.shape[-1] != x.shape[1]:
            raise UnsupportedError(f"token selection expects (B, {self.tokens + 1}, C) tokens and (B, H, T, T) "
                                   f"probabilities, got {tuple(x.shape)} and {tuple(probs.shape)}")
        scores = class_attention_scores(probs)  # (B, N)
        kept = kept_token_indices(scores.detach(), self.keep)  # (B, keep)
        weights = package_weights(scores, kept)  # (B, N)
        rest = x[:, 1:]
        gathered = torch.gather(rest, 1, kept.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        package = (weights.unsqueeze(-1) * rest).sum(dim=1, keepdim=True) / weights.sum(dim=1).reshape(-1, 1, 1)
        reference = torch.cat([x[:, :1], gathered, package], dim=1)
        scales = self._integer_scales()
        if scales is None:
            return reference
        x_scale, p_scale = scales
        q = torch.round(x.detach() / x_scale).to(torch.int64)  # the input minus its zero point
        p = torch.round(probs.detach() / p_scale).to(torch.int64)
        exact = token_select(q, p, self.keep).to(x.dtype) * x_scale
        return reference + (exact - reference).detach()


def attention_softmaxes(gm: fx.GraphModule) -> list[fx.Node]:
    """Softmax nodes over (B, H, T, T) attention scores, in execution order."""
    found = []
    for node in gm.graph.nodes:
        shape = node.meta.get("nnchip_shape")
        if node.meta.get("nnchip_kind") == "softmax" and shape and len(shape) == 4 and shape[-1] == shape[-2]:
            found.append(node)
    return found


def block_name(node: fx.Node, index: int) -> str:
    """The path of the block holding an attention softmax (the attention module's parent), or `block{i}`."""
    stack = node.meta.get("nn_module_stack") or {}
    path = str(list(stack.values())[-1][0]) if stack else ""
    parent = path.rpartition(".")[0]
    return parent or path or f"block{index}"


def _residual_anchor(gm: fx.GraphModule, softmax: fx.Node, where: str) -> fx.Node:
    """The tensor both the MLP branch and the residual read after the attention: the first add with exactly
    one input computed from the attention, or the LayerNorm that is that add's only user (post-norm)."""
    downstream = {softmax}
    for node in gm.graph.nodes:
        if node in downstream or not any(a in downstream for a in node.all_input_nodes):
            continue
        downstream.add(node)
        if node.meta.get("nnchip_kind") == "add" and sum(a in downstream for a in node.all_input_nodes) == 1:
            users = list(node.users)
            if len(users) == 1 and users[0].meta.get("nnchip_kind") == "layernorm":
                return users[0]
            return node
    raise UnsupportedError(f"{where}: no residual add after the attention; token pruning needs ViT blocks")


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _model_name(model: nn.Module) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def attention_block_names(model: nn.Module, example_inputs: Tensor | tuple[Tensor, ...]) -> list[str]:
    """Paths of the model's attention blocks in execution order (what TokenPruneConfig indices refer to)."""
    _check_model(model)
    gm = capture(model, example_inputs).gm
    return [block_name(node, i) for i, node in enumerate(attention_softmaxes(gm))]


def prune_tokens(model: nn.Module, config: TokenPruneConfig, *,
                 example_inputs: Tensor | tuple[Tensor, ...]) -> fx.GraphModule:
    """A copy of `model` (captured) that drops tokens as configured (see the module docstring)."""
    _check_model(model)
    if not isinstance(config, TokenPruneConfig):
        raise ConfigError(f"config must be a TokenPruneConfig, got {type(config).__name__}")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    gm = capture(model, inputs).gm
    softmaxes = attention_softmaxes(gm)
    if not softmaxes:
        raise UnsupportedError(f"{_model_name(model)} has no attention block (softmax over (B, H, T, T) scores): "
                               "token pruning needs a ViT")
    names = [block_name(node, i) for i, node in enumerate(softmaxes)]
    ratios = config.ratios_for(names)
    for softmax, name, ratio in zip(softmaxes, names, ratios, strict=True):
        where = f"{name} ({_model_name(model)})"
        anchor = _residual_anchor(gm, softmax, where)
        shape, tokens = anchor.meta.get("nnchip_shape"), softmax.meta["nnchip_shape"][-1]
        if not shape or len(shape) != 3 or shape[1] != tokens or shape[0] != softmax.meta["nnchip_shape"][0]:
            raise UnsupportedError(f"{where}: token pruning needs batch-first (B, T, C) tokens after the attention, "
                                   f"got shape {shape}")
        keep = math.ceil(ratio * (tokens - 1))
        if keep >= tokens - 1:
            continue
        target = _unique_name(gm, f"{name}.token_select".replace(".", "_"))
        gm.add_submodule(target, TokenSelect(keep, tokens - 1))
        with gm.graph.inserting_after(anchor):
            select = gm.graph.call_module(target, (anchor, softmax))
        anchor.replace_all_uses_with(select, delete_user_cb=lambda user, s=select: user is not s)
        select.meta["nn_module_stack"] = anchor.meta.get("nn_module_stack", {})
        gm.recompile()
        annotate_shapes(gm, inputs)  # later blocks see the reduced token count
    gm.graph.lint()
    gm.recompile()
    for node in gm.graph.nodes:
        node.meta["nnchip_kind"] = classify_node(gm, node)
    return gm.train(model.training)


def _unique_name(gm: fx.GraphModule, base: str) -> str:
    name, index = base, 1
    while hasattr(gm, name):
        name, index = f"{base}_{index}", index + 1
    return name


def token_counts(model: nn.Module) -> list[dict[str, Any]]:
    """Every TokenSelect of a token-pruned model: its path, tokens in, tokens kept (plus class and package)."""
    return [{"path": path, "tokens": m.tokens, "keep": m.keep} for path, m in model.named_modules()
            if isinstance(m, TokenSelect)]


@register_structure("token")
def token_structure(model: nn.Module, config: Any, sparsity: float,
                    example_inputs: tuple[Tensor, ...] | None) -> nn.Module:
    """`prune(model, PruneConfig(structure="token", sparsity=0.3), example_inputs=x)`: every attention block
    keeps 1 − sparsity of its tokens; `exclude` (block paths) are left alone, `layer_sparsity` sets single
    blocks; one-shot only, `skip_first_last` does not apply."""
    if example_inputs is None:
        raise ConfigError("prune.structure 'token' needs example_inputs (token counts follow from the input)")
    if config.schedule != "one_shot":
        raise ConfigError("prune.schedule: structure 'token' is one-shot only (the selection has no mask to grow)")
    names = attention_block_names(model, example_inputs)
    for path in [*config.exclude, *dict(config.layer_sparsity)]:
        if path not in names:
            raise ConfigError(f"prune: no attention block at path {path!r}; blocks: {', '.join(names) or 'none'}")
    ratios = tuple(1.0 if name in config.exclude else 1.0 - config.sparsity_of(name, sparsity) for name in names)
    if not names:
        raise UnsupportedError(f"{_model_name(model)} has no attention block (softmax over (B, H, T, T) scores): "
                               "token pruning needs a ViT")
    return prune_tokens(model, TokenPruneConfig(block_keep_ratios=ratios), example_inputs=example_inputs)
