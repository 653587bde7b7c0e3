"""Masks on deep copies: torch shares a parametrized module's class between the module and its copy."""

from __future__ import annotations

import copy

import torch
from torch import nn

from nnchip.core.mask import is_masked, strip_masks
from nnchip.prune import PruneConfig, prune


def test_stripping_or_repruning_a_deep_copy_leaves_the_original_model_working() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    pruned = prune(model, PruneConfig(structure="unstructured", sparsity=0.5))
    x = torch.randn(2, 8)
    before = pruned(x)
    strip_masks(copy.deepcopy(pruned))
    prune(pruned, PruneConfig(structure="unstructured", sparsity=0.75))  # prune() re-masks a deep copy
    prune(pruned, PruneConfig(structure="nm", n=2, m=4, sr_ste=True))
    assert is_masked(pruned[0]) and torch.equal(pruned(x), before)
