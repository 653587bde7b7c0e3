"""`nnchip quantize RECIPE.yaml` on the embedded digits: summary.json, a safetensors checkpoint that reloads."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nnchip.cli.main import main

RECIPE = """
model: {name: cnn_tiny, num_classes: 10, in_channels: 1, image_size: 8}
data: {kind: digits, calib_images: 256}
pretrain: {epochs: 4, lr: 0.01, batch_size: 64}
quant:
  weight: {bits: 8, quantizer: minmax}
  act: {bits: 8, quantizer: minmax}
ptq: {methods: [calibrate]}
seed: 0
"""


def test_quantize_digits_recipe_and_reload(tmp_path: Path) -> None:
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    assert main(["quantize", str(recipe), "--out", str(out)]) == 0
    (record,) = json.loads((out / "summary.json").read_text())
    assert record["model"] == "cnn_tiny" and (record["w_bits"], record["a_bits"]) == (8, 8)
    assert record["float_acc"] > 0.8 and record["acc"] >= record["float_acc"] - 0.02
    assert record["n_test"] > 100

    # the checkpoint reloads into a freshly quantized model with the config stored beside it
    from nnchip.cli.quantize import load_state_dict
    from nnchip.models import build
    from nnchip.quant import QuantConfig, quantize

    state, meta = load_state_dict(out / "qmodel.safetensors")
    assert meta["model"] == "cnn_tiny" and meta["quant"]["weight"]["bits"] == 8
    model = build("cnn_tiny", **meta["model_kwargs"]).eval()
    qmodel = quantize(model, QuantConfig.from_dict(meta["quant"]), example_inputs=torch.zeros(1, 1, 8, 8))
    qmodel.load_state_dict(state)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
