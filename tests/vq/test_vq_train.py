"""Multistage training on the embedded digits: the LUT model stays close to float, stages do their job."""

from __future__ import annotations

import pytest
import torch

from nnchip.data.digits import load_digits_split
from nnchip.models import build
from nnchip.train.config import TrainConfig
from nnchip.train.trainer import evaluate, train
from nnchip.vq import VQConfig, VQTrainConfig, lut_layers, set_mode, train_vq, vq


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[object, torch.nn.Module, float]:
    pytest.importorskip("sklearn")
    torch.manual_seed(0)
    split = load_digits_split()
    model = build("cnn_tiny", in_channels=1, image_size=8)
    train(model, split.train, TrainConfig(epochs=8, lr=0.05, batch_size=64, schedule="onecycle", progress=False))
    return split, model.eval(), evaluate(model, split.test)


def test_lutboost_stages_keep_accuracy_close_to_float(digits_cnn: tuple, tmp_path: object) -> None:
    split, model, float_acc = digits_cnn
    calib = torch.stack([split.train[i][0] for i in range(256)])
    gm = vq(model, VQConfig(v=4, k=16, metric="l1"), example_inputs=calib[:2], calibration=[calib])
    config = VQTrainConfig(recon_epochs=1, joint_epochs=1, final_epochs=1, max_steps=15, progress=False,
                           checkpoint_dir=str(tmp_path))
    result = train_vq(gm, split.train, config, teacher=model)
    assert set(result.seconds) == {"reconstruct", "joint", "final"}
    assert all(layer.quantize_tables and layer.mode == "hard" for _, layer in lut_layers(gm))
    assert (tmp_path / "final").is_dir()  # type: ignore[operator]
    assert evaluate(gm, split.test) >= float_acc - 0.05


def test_reconstruction_stage_lowers_the_layer_output_error(digits_cnn: tuple) -> None:
    split, model, _ = digits_cnn
    calib = torch.stack([split.train[i][0] for i in range(256)])
    gm = vq(model, VQConfig(v=8, k=4, metric="l2", kmeans_iters=2), example_inputs=calib[:2], calibration=[calib])

    def lut_loss() -> float:
        set_mode(gm, "reconstruct")
        gm.train()
        with torch.no_grad():
            gm(calib)
        gm.eval()
        return sum(float(layer.lut_loss) for _, layer in lut_layers(gm))

    before = lut_loss()
    train_vq(gm, split.train, VQTrainConfig(recon_epochs=2, joint_epochs=0, final_epochs=0, recon_lr=1e-2,
                                            progress=False))
    assert lut_loss() < 0.9 * before


def test_straight_through_variant_trains_every_layer(digits_cnn: tuple) -> None:
    split, model, float_acc = digits_cnn
    calib = torch.stack([split.train[i][0] for i in range(256)])
    gm = vq(model, VQConfig(v=4, k=16, metric="chebyshev"), example_inputs=calib[:2], calibration=[calib])
    before = {name: layer.weight.detach().clone() for name, layer in lut_layers(gm)}
    config = VQTrainConfig(recon_epochs=0, joint_epochs=1, final_epochs=1, backward="ste", max_steps=15,
                           progress=False)
    train_vq(gm, split.train, config, teacher=model)
    assert all(not torch.equal(before[name], layer.weight) for name, layer in lut_layers(gm))
    assert evaluate(gm, split.test) >= float_acc - 0.05


def test_vit_lut_layers_train_in_every_stage(digits_cnn: tuple) -> None:
    from models_for_tests import TransformerViT

    split = digits_cnn[0]
    calib = torch.stack([split.train[i][0] for i in range(128)])
    gm = vq(TransformerViT().eval(), VQConfig(v=4, k=8, metric="l2"), example_inputs=calib[:2], calibration=[calib])
    codebooks = {name: layer.codebooks.detach().clone() for name, layer in lut_layers(gm)}
    result = train_vq(gm, split.train, VQTrainConfig(max_steps=3, progress=False))
    assert set(result.seconds) == {"reconstruct", "joint", "final"}
    assert all(not torch.equal(codebooks[name], layer.codebooks) for name, layer in lut_layers(gm))
