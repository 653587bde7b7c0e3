"""Vision transformers in the DeiT layout: conv patch embedding, class token, position embedding, pre-norm
blocks with explicit q/k/v projections (Q·Kᵀ·scale → softmax → P·V), GELU MLP, final LayerNorm, head.

`vit_tiny` is sized for 8×8 digits / 32×32 CIFAR on two CPU cores; `deit_tiny/small/base` are the
ImageNet DeiT shapes (224×224, patch 16, 12 blocks, dims 192/384/768, heads 3/6/12, MLP ratio 4).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q = self.q(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, H, T, D)
        k = self.k(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
        v = self.v(x).unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)  # (B, T, C)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, patch: int = 16,
                 dim: int = 192, depth: int = 12, heads: int = 3, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not divisible by patch {patch}")
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, T, C)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def vit_tiny(num_classes: int = 10, in_channels: int = 1, image_size: int = 8, patch: int | None = None,
             dim: int = 32, depth: int = 2, heads: int = 2, mlp_ratio: float = 2.0) -> nn.Module:
    """A small ViT: patch 2 for 8×8 digits, patch 4 for 32×32 images unless given."""
    patch = patch or (2 if image_size <= 16 else 4)
    return VisionTransformer(num_classes, in_channels, image_size, patch, dim, depth, heads, mlp_ratio)


def deit_tiny(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, patch: int = 16) -> nn.Module:
    return VisionTransformer(num_classes, in_channels, image_size, patch, 192, 12, 3)


def deit_small(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, patch: int = 16) -> nn.Module:
    return VisionTransformer(num_classes, in_channels, image_size, patch, 384, 12, 6)


def deit_base(num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, patch: int = 16) -> nn.Module:
    return VisionTransformer(num_classes, in_channels, image_size, patch, 768, 12, 12)
