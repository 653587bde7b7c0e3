"""The demo's VQ row: the digits CNN with its inner layers (conv2, conv3) as LUT layers.

Registered as demo stage "vq" (order 40): `vq` (k-means) → `train_vq` (the float CNN as teacher) → W8A8
quantization of every other tensor → centroids snapped to their input grid; the record carries `vq_v`,
`vq_k`, `metric`, and the demo's lower_export_verify stage lowers, exports and verifies it like every other
row. `recipes/vq/` holds the
same row as a recipe for `nnchip vq`.
"""

from __future__ import annotations

from typing import Any

import torch

from nnchip.cli.demo import DIGITS_MODELS, FLOAT_TRAIN, DemoContext, register_demo_stage
from nnchip.vq.config import VQConfig, VQTrainConfig
from nnchip.vq.convert import vq
from nnchip.vq.layer import lut_layers
from nnchip.vq.snap import snap_codebooks
from nnchip.vq.train import train_vq

VQ_ROW: dict[str, Any] = {
    "row_id": "cnn_tiny-vq-v4k16-l2", "model": "cnn_tiny",
    "vq": {"v": 4, "k": 16, "metric": "l2", "layers": "inner", "table_bits": 8},
    "vq_train": {"recon_epochs": 1, "joint_epochs": 2, "final_epochs": 1, "batch_size": 64, "progress": False},
    "quant": {"weight": {"bits": 8, "quantizer": "minmax"}, "act": {"bits": 8, "quantizer": "minmax"}},
    "ptq": {"methods": ["calibrate"]},
}


def vq_row_recipe(row: dict[str, Any] = VQ_ROW) -> dict[str, Any]:
    """The standalone `nnchip vq` recipe equivalent to the demo row (recipes/vq/<row_id>.yaml holds it)."""
    return {"model": DIGITS_MODELS[row["model"]], "data": {"kind": "digits"}, "pretrain": FLOAT_TRAIN[row["model"]],
            "vq": row["vq"], "vq_train": row["vq_train"], "quant": row["quant"], "ptq": row["ptq"], "seed": 0}


@register_demo_stage("vq", order=40, budget_s=20)
def stage_vq(ctx: DemoContext) -> None:
    from nnchip.cli.quantize import quantize_and_ptq, top1
    from nnchip.recipes import quant_config_from_dict, recipe_from_dict

    assert ctx.data is not None
    row = VQ_ROW
    float_model = ctx.float_models[row["model"]]
    vq_config = VQConfig.from_dict(row["vq"])
    torch.manual_seed(ctx.seed)
    lut_model = vq(float_model, vq_config, example_inputs=ctx.calib_batches[0][:2], calibration=ctx.calib_batches)
    result = train_vq(lut_model, ctx.data.train, VQTrainConfig.from_dict(row["vq_train"]), teacher=float_model)
    recipe = recipe_from_dict({k: v for k, v in vq_row_recipe(row).items() if k not in ("vq", "vq_train")})
    qmodel = quantize_and_ptq(lut_model, quant_config_from_dict(row["quant"]), recipe.ptq, ctx.calib_batches)
    snap_codebooks(qmodel)  # the fake-quant search uses the integer model's centroids
    ctx.add_record({
        "row_id": row["row_id"], "model": row["model"], "method": "vq", "w_bits": None,
        "avg_bits": round(vq_config.index_bits / vq_config.v, 3),  # index bits per input element of a LUT layer
        "table_bits": vq_config.table_bits, "a_bits": recipe.quant.act.bits, "vq_v": vq_config.v,
        "vq_k": vq_config.k, "metric": vq_config.metric,
        "lut_layers": [path for path, _ in lut_layers(lut_model)], "lut_acc": top1(lut_model, ctx.data.test),
        "acc": top1(qmodel, ctx.data.test), "float_acc": ctx.float_acc[row["model"]], "n_test": len(ctx.data.test),
        "vq_train_s": round(sum(result.seconds.values()), 2), "recipe": f"recipes/vq/{row['row_id']}.yaml",
    }, qmodel)
