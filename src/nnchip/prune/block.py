"""Block-structured pruning of any GEMM, post-training, LPViT-style (algorithms.md §7.2).

Every pruned conv/linear is seen as its im2col matrix (C_out, C_in·kh·kw) cut into blocks of `block_shape`
(block_view.py; a shape that does not divide a layer is a ConfigError naming it). Blocks are scored by
magnitude or by first/second-order Taylor terms with the empirical Fisher from calibration images
(taylor.py: `example_inputs[0]` split into batches of `calib_batch_size`, label-free), and the blocks to
remove are allocated under the budget (budget.py): the fraction `sparsity` of the pruned layers' weights
(scope "layer": every layer alike; "global": one ranking), or of the whole model's MACs, modeled systolic
latency with zero blocks skipped, or modeled energy — one global ranking by score per unit of cost, so each
layer's sparsity follows from its scores and costs. The masks are the WeightMask parametrizations of every
other structure (core.mask.set_mask): quantize(), the lowering and the export carry them unchanged.

    pruned = prune(vit, PruneConfig(structure="block", block_shape=(8, 8), score="taylor2", budget="flops",
                                    sparsity=0.5), example_inputs=calibration_images)   # (N, C, H, W)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nnchip.core.errors import ConfigError
from nnchip.core.mask import set_mask
from nnchip.prune.block_view import check_block_shape, expand_block_mask
from nnchip.prune.budget import allocate_global, allocate_per_layer, block_costs
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import prunable_layers, register_structure
from nnchip.prune.taylor import block_scores, calibration_batches, gradient_statistics


@register_structure("block")
def prune_block(model: nn.Module, config: PruneConfig, sparsity: float,
                example_inputs: tuple[Tensor, ...] | None) -> nn.Module:
    layers = prunable_layers(model, config)
    if not layers:
        raise ConfigError("prune.structure 'block': the model has no conv/linear layer left to prune")
    for path, layer in layers:
        check_block_shape(path, layer, config.block_shape)
    if config.score == "magnitude":
        stats: list[tuple[Tensor | None, Tensor | None]] = [(None, None)] * len(layers)
    else:
        if example_inputs is None:
            raise ConfigError(f"prune.score {config.score!r} needs calibration images: pass example_inputs "
                              "(a batch of inputs) to prune()")
        batches = calibration_batches(example_inputs[0], config.calib_batch_size)
        stats = list(gradient_statistics(model, [layer for _, layer in layers], batches))
    with torch.no_grad():
        scores = [block_scores(layer.weight, config.block_shape, config.score, g, f)
                  for (_, layer), (g, f) in zip(layers, stats, strict=True)]  # (C_out/r, K/c) each
    if config.budget == "sparsity" and config.scope == "layer":
        amounts = [config.sparsity_of(path, sparsity) for path, _ in layers]
        masks = allocate_per_layer(scores, amounts, [path for path, _ in layers])
    else:
        costs = block_costs(model, layers, config, example_inputs)
        masks = allocate_global(scores, costs.per_block, sparsity * costs.total, config.budget, costs.total)
    with torch.no_grad():
        for (_, layer), mask in zip(layers, masks, strict=True):
            set_mask(layer, expand_block_mask(mask, config.block_shape, layer.weight.shape))
    return model
