"""The demo's pruning stage: the digits CNN and ViT pruned 2:4, then quantized W4A4 (rows `<model>-2of4-w4a4`).

Each row: the float model gets 2:4 masks (first and last layer dense) and a short fine-tune with the masks,
then W4A4 LSQ PTQ (calibrate) and a short QAT distilled from the pruned float model. The masks stay on the
Q-layers, so the lowering stage (order 80) lowers, exports and verifies the sparse integer model like every
other row. `recipes/<row_id>.yaml` holds the same recipe for `nnchip prune`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from nnchip.cli.demo import DIGITS_MODELS, FLOAT_TRAIN, DemoContext, register_demo_stage
from nnchip.prune.api import finetune
from nnchip.prune.recipe import prune_recipe_from_dict

PRUNE = {"structure": "nm", "n": 2, "m": 4}
FINETUNE: dict[str, dict[str, Any]] = {
    "cnn_tiny": {"epochs": 2, "lr": 0.002, "batch_size": 64},
    "vit_tiny": {"epochs": 3, "lr": 0.002, "batch_size": 64},
}
QAT: dict[str, dict[str, Any]] = {
    "cnn_tiny": {"epochs": 2, "lr": 0.002, "batch_size": 64, "schedule": "cosine", "seed": 0, "optimizer": "adamw",
                 "weight_decay": 0.0},
    "vit_tiny": {"epochs": 3, "lr": 0.001, "batch_size": 64, "schedule": "cosine", "seed": 0,
                 "optimizer": "adamw", "weight_decay": 0.0},
}


def prune_row_recipe(model: str) -> dict[str, Any]:
    """The standalone `nnchip prune` recipe of the demo row for `model` (recipes/<model>-2of4-w4a4.yaml)."""
    return {"model": DIGITS_MODELS[model], "data": {"kind": "digits"}, "pretrain": FLOAT_TRAIN[model],
            "prune": PRUNE, "finetune": FINETUNE[model],
            "quant": {"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 4, "quantizer": "lsq"}},
            "ptq": {"methods": ["calibrate"]}, "qat": QAT[model], "seed": 0}


@register_demo_stage("prune", order=30, budget_s=20)
def stage_prune(ctx: DemoContext) -> None:
    from nnchip.cli.quantize import qat, quantize_and_ptq, top1

    assert ctx.data is not None
    for model_name, float_model in ctx.float_models.items():
        recipe = prune_recipe_from_dict(prune_row_recipe(model_name))
        torch.manual_seed(ctx.seed)
        f = recipe.finetune
        assert f is not None
        pruned = finetune(copy.deepcopy(float_model), ctx.data.train, recipe.prune, epochs=f.epochs, lr=f.lr,
                          batch_size=f.batch_size, seed=ctx.seed)
        qmodel = quantize_and_ptq(pruned, recipe.base.quant, recipe.base.ptq, ctx.calib_batches)
        qat(qmodel, recipe.base.qat, ctx.data, teacher=pruned)
        row_id = f"{model_name}-2of4-w4a4"
        ctx.add_record({
            "row_id": row_id, "model": model_name, "method": "prune+qat", "structure": "2:4",
            "sparsity": recipe.prune.target_sparsity, "w_bits": 4, "a_bits": 4,
            "first_last_bits": recipe.base.quant.first_last_bits, "quantizer": "lsq",
            "acc": top1(qmodel, ctx.data.test), "pruned_float_acc": top1(pruned, ctx.data.test),
            "float_acc": ctx.float_acc[model_name], "n_test": len(ctx.data.test), "recipe": f"recipes/{row_id}.yaml",
        }, qmodel)
