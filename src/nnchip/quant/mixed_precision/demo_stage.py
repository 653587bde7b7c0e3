"""The demo's mixed-precision stage: row `cnn_tiny-mp4-a4` — weight bits per layer from {2, 3, 4, 5, 6, 8} chosen by the
integer program at an average of 4 bits (weight storage), measured quantization error as the sensitivity,
4-bit activations, PTQ then short QAT. `w_bits` is null, `avg_bits` and `bits` say what was chosen.
`recipes/mixed_precision/cnn_tiny-mp4-a4.yaml` holds the same recipe for `nnchip mixed-precision`."""

from __future__ import annotations

import copy
from typing import Any

import torch

from nnchip.cli.demo import DIGITS_MODELS, FLOAT_TRAIN, QAT_TRAIN, DemoContext, register_demo_stage
from nnchip.quant.mixed_precision.api import assign_bits

MODEL = "cnn_tiny"


def mixed_precision_row_recipe() -> dict[str, Any]:
    return {"model": DIGITS_MODELS[MODEL], "data": {"kind": "digits"}, "pretrain": FLOAT_TRAIN[MODEL],
            "mixed_precision": {"candidates": [2, 3, 4, 5, 6, 8], "sensitivity": "quant_error", "budget": "size",
                                "avg_bits": 4.0},
            "quant": {"weight": {"bits": 4, "quantizer": "lsq"}, "act": {"bits": 4, "quantizer": "lsq"}},
            "ptq": {"methods": ["calibrate"]}, "qat": QAT_TRAIN[MODEL], "seed": 0}


@register_demo_stage("mixed_precision", order=35, budget_s=8)
def stage_mixed_precision(ctx: DemoContext) -> None:
    from nnchip.cli.mixed_precision import mixed_precision_recipe_from_dict
    from nnchip.cli.quantize import qat, quantize_and_ptq, top1

    assert ctx.data is not None
    recipe, config = mixed_precision_recipe_from_dict(mixed_precision_row_recipe())
    float_model = ctx.float_models[MODEL]
    torch.manual_seed(ctx.seed)
    quant, assignment = assign_bits(copy.deepcopy(float_model), recipe.quant, config,
                                    calib_inputs=ctx.calib_batches[0])
    qmodel = quantize_and_ptq(float_model, quant, recipe.ptq, ctx.calib_batches)
    qat(qmodel, recipe.qat, ctx.data, teacher=float_model)
    row_id = f"{MODEL}-mp4-a4"
    ctx.add_record({
        "row_id": row_id, "model": MODEL, "method": "mixed_precision+qat", "w_bits": None, "a_bits": 4,
        "avg_bits": round(assignment.avg_bits, 4), "bits": assignment.bits, "quantizer": "lsq",
        "acc": top1(qmodel, ctx.data.test), "float_acc": ctx.float_acc[MODEL], "n_test": len(ctx.data.test),
        "recipe": f"recipes/mixed_precision/{row_id}.yaml",
    }, qmodel)
