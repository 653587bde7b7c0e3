"""Equivalent, explicit versions of PyTorch's fused attention modules, so capture sees every matmul.

`nn.MultiheadAttention` (including the fused fast path that `nn.TransformerEncoderLayer` takes in eval
mode) becomes q/k/v `nn.Linear` projections, Q·Kᵀ, a scale, softmax, P·V and the output projection.
Each decomposer takes the original module and returns a new module with copied parameters that computes
the same function (tests check this to float tolerance).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nnchip.core.errors import UnsupportedError


class DecomposedMultiheadAttention(nn.Module):
    """nn.MultiheadAttention as explicit projections and matmuls (masks and add_bias_kv unsupported)."""

    def __init__(self, mha: nn.MultiheadAttention, path: str) -> None:
        super().__init__()
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UnsupportedError(f"{path} (torch.nn.MultiheadAttention): add_bias_kv/add_zero_attn unsupported")
        self.path = path
        self.num_heads = mha.num_heads
        self.head_dim = mha.head_dim
        self.batch_first = mha.batch_first
        self.scale = 1.0 / math.sqrt(self.head_dim)
        e = mha.embed_dim
        dims = (e, mha.kdim, mha.vdim)
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.detach().chunk(3, dim=0)
        else:
            weights = (mha.q_proj_weight.detach(), mha.k_proj_weight.detach(), mha.v_proj_weight.detach())
        biases = mha.in_proj_bias.detach().chunk(3) if mha.in_proj_bias is not None else (None, None, None)
        projections = []
        for in_dim, weight, bias in zip(dims, weights, biases, strict=True):
            linear = nn.Linear(in_dim, e, bias=bias is not None)
            linear.weight.data.copy_(weight)
            if bias is not None:
                linear.bias.data.copy_(bias)
            projections.append(linear)
        self.q_proj, self.k_proj, self.v_proj = projections
        self.attn_drop = nn.Dropout(mha.dropout)
        self.out_proj = nn.Linear(e, e, bias=mha.out_proj.bias is not None)
        self.out_proj.weight.data.copy_(mha.out_proj.weight.detach())
        if mha.out_proj.bias is not None:
            self.out_proj.bias.data.copy_(mha.out_proj.bias.detach())

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, None]:
        if key_padding_mask is not None or attn_mask is not None or is_causal:
            raise UnsupportedError(f"{self.path} (torch.nn.MultiheadAttention): attention masks are unsupported")
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q = self.q_proj(query).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, L, D)
        k = self.k_proj(key).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, S, D)
        v = self.v_proj(value).unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, S, D)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale  # (B, H, L, S)
        probs = self.attn_drop(torch.softmax(scores, dim=-1))
        out = torch.matmul(probs, v).transpose(1, 2).flatten(2)  # (B, L, E)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


class DecomposedTransformerEncoderLayer(nn.Module):
    """nn.TransformerEncoderLayer without its fused fast path (same math, post- or pre-norm)."""

    def __init__(self, layer: nn.TransformerEncoderLayer, path: str) -> None:
        super().__init__()
        self.path = path
        attn = layer.self_attn
        self.self_attn = (
            attn if isinstance(attn, DecomposedMultiheadAttention) else DecomposedMultiheadAttention(attn, path)
        )
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.dropout, self.dropout1, self.dropout2 = layer.dropout, layer.dropout1, layer.dropout2
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.norm_first = layer.norm_first
        activation = layer.activation
        if isinstance(activation, nn.Module):
            self.activation: nn.Module | Callable[[Tensor], Tensor] = activation
        elif activation in (F.relu, torch.relu):
            self.activation = nn.ReLU()
        elif activation is F.gelu:
            self.activation = nn.GELU()
        else:
            raise UnsupportedError(f"{path} (torch.nn.TransformerEncoderLayer): activation {activation!r}")

    def _sa_block(self, x: Tensor) -> Tensor:
        return self.dropout1(self.self_attn(x, x, x)[0])

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(
        self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        if src_mask is not None or src_key_padding_mask is not None or is_causal:
            raise UnsupportedError(f"{self.path} (torch.nn.TransformerEncoderLayer): attention masks are unsupported")
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x))
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x))
        return self.norm2(x + self._ff_block(x))


class DecomposedTransformerEncoder(nn.Module):
    """nn.TransformerEncoder as a plain loop over (decomposed) layers and the optional final norm."""

    def __init__(self, encoder: nn.TransformerEncoder, path: str) -> None:
        super().__init__()
        self.path = path
        self.layers = encoder.layers
        self.norm = encoder.norm

    def forward(
        self, src: Tensor, mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        if mask is not None or src_key_padding_mask is not None or is_causal:
            raise UnsupportedError(f"{self.path} (torch.nn.TransformerEncoder): attention masks are unsupported")
        x = src
        for layer in self.layers:
            x = layer(x)
        return self.norm(x) if self.norm is not None else x


DECOMPOSERS: dict[type[nn.Module], Callable[[nn.Module, str], nn.Module]] = {
    nn.MultiheadAttention: DecomposedMultiheadAttention,
    nn.TransformerEncoderLayer: DecomposedTransformerEncoderLayer,
    nn.TransformerEncoder: DecomposedTransformerEncoder,
}


def decompose_modules(model: nn.Module) -> nn.Module:
    """Replace, in place, every module whose exact type has a decomposer (children before parents)."""
    for path, module in reversed(list(model.named_modules())):
        factory = DECOMPOSERS.get(type(module))
        if factory is None or not path:
            continue
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        replacement = factory(module, path)
        replacement.train(module.training)
        setattr(parent, name, replacement)
    return model
