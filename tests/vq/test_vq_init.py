"""Stage-1 options of vq(): k-means++ seeding and the re-estimation of LUT-layer output moments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnchip.core.capture import capture
from nnchip.core.errors import ConfigError
from nnchip.core.fold_batchnorm import fold_batchnorm
from nnchip.models import build
from nnchip.vq import VQConfig, VQTrainConfig, lut_layers, vq
from nnchip.vq.kmeans import kmeans, kmeans_plus_plus
from nnchip.vq.recalibrate import MAX_GAIN, channel_moments, correction


def blobs(centres: torch.Tensor, per_blob: int, spread: float) -> torch.Tensor:
    """(C, K·per_blob, v) samples around centres (C, K, v)."""
    torch.manual_seed(0)
    c, k, v = centres.shape
    return (centres.unsqueeze(2) + spread * torch.randn(c, k, per_blob, v)).reshape(c, k * per_blob, v)


@pytest.mark.parametrize("metric", ["l2", "l1", "chebyshev"])
def test_kmeans_plus_plus_seeds_one_centroid_in_every_separated_blob(metric: str) -> None:
    centres = 100.0 * torch.randn(3, 8, 2)  # (C, K, v): 8 far-apart blobs per codebook
    samples = blobs(centres, 50, 0.01)
    seeds = kmeans_plus_plus(samples, 8, metric, torch.Generator().manual_seed(1))  # (C, K, v)
    owner = torch.cdist(seeds, centres).argmin(-1)  # (C, K): the blob of every seed
    assert all(set(row.tolist()) == set(range(8)) for row in owner)
    centroids, nearest = kmeans(samples, 8, metric, 3, torch.Generator().manual_seed(1), init="kmeans++")
    assert float(nearest.max()) < 0.1  # every sample ends next to its own blob's centroid


def test_random_seeding_can_miss_blobs_that_kmeans_plus_plus_finds() -> None:
    centres = 100.0 * torch.randn(16, 8, 2)
    samples = blobs(centres, 50, 0.01)
    error = {init: float(kmeans(samples, 8, "l2", 0, torch.Generator().manual_seed(1), init=init)[1].mean())
             for init in ("random", "kmeans++")}
    assert error["kmeans++"] < 0.1 < error["random"]


def test_correction_restores_mean_and_std() -> None:
    torch.manual_seed(0)
    y = 0.5 * torch.randn(4000, 3) + torch.tensor([1.0, -2.0, 0.0])  # (N, M)
    target_mean, target_std = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 0.25, 100.0])
    mean, std = channel_moments(y, is_conv=False)
    gain, offset = correction(mean, std, target_mean, target_std, "affine")
    new_mean, new_std = channel_moments(y * gain + offset, is_conv=False)
    assert torch.allclose(new_mean, target_mean, atol=1e-5)
    assert torch.allclose(new_std[:2], target_std[:2], rtol=1e-4)
    assert float(gain[2]) == MAX_GAIN  # a 200x spread is clipped, not followed
    gain, offset = correction(mean, std, target_mean, target_std, "bias")
    assert torch.equal(gain, torch.ones(3))
    assert torch.allclose(channel_moments(y + offset, is_conv=False)[0], target_mean, atol=1e-5)


@pytest.mark.parametrize("mode", ["bias", "affine"])
def test_recalibrated_lut_layers_reproduce_the_float_output_moments(mode: str) -> None:
    torch.manual_seed(0)
    model = build("cnn_tiny", in_channels=1, image_size=8).eval()
    x = torch.randn(64, 1, 8, 8)
    folded = capture(model, (x[:2],)).gm
    fold_batchnorm(folded)
    targets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(store: dict, name: str) -> object:
        def hook(module: nn.Module, args: tuple, y: torch.Tensor) -> None:
            store[name] = channel_moments(y, y.dim() == 4)
        return hook

    for name in ("conv2", "conv3"):
        folded.get_submodule(name).register_forward_hook(record(targets, name))
    with torch.no_grad():
        folded(x)
    plain = vq(model, VQConfig(v=4, k=4, metric="l1", recalibrate="none"), example_inputs=x[:2], calibration=[x])
    fixed = vq(model, VQConfig(v=4, k=4, metric="l1", recalibrate=mode), example_inputs=x[:2], calibration=[x])
    for name, layer in lut_layers(fixed):
        layer.register_forward_hook(record(outputs, name))
    with torch.no_grad():
        fixed(x)
    assert set(outputs) == set(targets) == {"conv2", "conv3"}
    for name, (mean, std) in targets.items():
        assert torch.allclose(outputs[name][0], mean, atol=1e-4)
        if mode == "affine":
            assert torch.allclose(outputs[name][1], std, rtol=1e-3, atol=1e-5)
    before = dict(lut_layers(plain))["conv2"]
    after = dict(lut_layers(fixed))["conv2"]
    assert torch.equal(before.codebooks, after.codebooks)  # only W and b change
    assert not torch.equal(before.bias, after.bias)


def test_new_options_are_validated_and_round_trip() -> None:
    with pytest.raises(ConfigError, match="vq.kmeans_init"):
        VQConfig(kmeans_init="farthest")
    with pytest.raises(ConfigError, match="vq.recalibrate"):
        VQConfig(recalibrate="bn")
    with pytest.raises(ConfigError, match="three"):
        VQTrainConfig(max_steps=(1, 2))
    with pytest.raises(ConfigError, match="vq_train.max_steps"):
        VQTrainConfig(max_steps=(1, 0, 2))
    config = VQTrainConfig(max_steps=(5, 20, 3))
    assert VQTrainConfig.from_dict(config.to_dict()) == config
    assert [config.stage_steps(i) for i in range(3)] == [5, 20, 3]
    assert VQConfig.from_dict(VQConfig(kmeans_init="kmeans++", recalibrate="affine").to_dict()).recalibrate == "affine"
