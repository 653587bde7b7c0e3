"""Channel and head pruning physically shrink the model, respect residual coupling, and still lower."""

from __future__ import annotations

import copy

import torch
from models_for_tests import randomize_batchnorm
from torch import nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.lower import lower, run
from nnchip.models import build
from nnchip.prune import PruneConfig, compression_report, prune
from nnchip.prune.channel import channel_groups


def _resnet20() -> tuple[nn.Module, torch.Tensor]:
    model = randomize_batchnorm(build("resnet20", num_classes=10, in_channels=3, image_size=8, width=8)).eval()
    return model, torch.randn(8, 3, 8, 8)


def test_resnet20_groups_follow_the_residual_connections() -> None:
    from nnchip.core.capture import capture

    model, x = _resnet20()
    groups = [g for g in channel_groups(capture(model, x).gm) if not g.locked_by]
    stage_groups = [sorted(g.producers) for g in groups if len(g.producers) > 1]
    assert ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"] in stage_groups
    assert ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"] in stage_groups
    inner = [g for g in groups if g.producers == ["layer1.0.conv1"]]
    assert inner and inner[0].consumers == ["layer1.0.conv2"] and inner[0].norms == ["layer1.0.bn1"]


def test_resnet20_channel_pruning_shrinks_and_runs() -> None:
    model, x = _resnet20()
    pruned = prune(model, PruneConfig(structure="channel", sparsity=0.5), example_inputs=x[:1])
    assert pruned.get_submodule("layer1.0.conv1").out_channels == 4
    assert pruned.get_submodule("layer3.0.conv2").out_channels == 16
    assert pruned.get_submodule("fc").in_features == 16
    assert pruned(x).shape == (8, 10)
    report = compression_report(model, pruned, x[:1])
    assert 0.70 < report["mac_reduction"] < 0.80 and 0.70 < report["param_reduction"] < 0.80
    # keeping every channel (sparsity 0) computes exactly what the model computes
    same = prune(model, PruneConfig(structure="channel", sparsity=0.0), example_inputs=x[:1])
    assert torch.allclose(same(x), model(x), atol=1e-5)


def test_pruned_model_equals_the_dense_model_with_those_channels_silenced() -> None:
    model = randomize_batchnorm(build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8)).eval()
    x = torch.randn(16, 1, 8, 8)
    pruned = prune(model, PruneConfig(structure="channel", sparsity=0.5, layer_sparsity=(("conv3", 0.25),)),
                   example_inputs=x[:1])
    assert [pruned.get_submodule(p).out_channels for p in ("conv1", "conv2", "conv3")] == [4, 8, 12]
    silenced = copy.deepcopy(model)
    with torch.no_grad():
        for path in ("bn1", "bn2", "bn3"):
            dense, small = silenced.get_submodule(path), pruned.get_submodule(path)
            kept = [int((dense.running_mean == v).nonzero()) for v in small.running_mean]
            dropped = [c for c in range(dense.num_features) if c not in kept]
            dense.weight[dropped] = 0.0  # BN output 0 → ReLU output 0: the channel carries nothing
            dense.bias[dropped] = 0.0
    assert torch.allclose(pruned(x), silenced(x), atol=1e-5)


def test_vit_heads_and_mlp_are_removed_and_the_result_lowers() -> None:
    model = build("vit_tiny", num_classes=10, in_channels=1, image_size=8, heads=4).eval()
    x = torch.randn(16, 1, 8, 8)
    pruned = prune(model, PruneConfig(structure="channel", sparsity=0.5), example_inputs=x[:1])
    assert pruned.get_submodule("blocks.0.attn.q").out_features == 16  # 2 of 4 heads of 8 dims
    assert pruned.get_submodule("blocks.0.attn.proj").in_features == 16
    assert pruned.get_submodule("blocks.0.fc1").out_features == 32
    assert pruned.get_submodule("blocks.0.norm1").normalized_shape == (32,)  # residual stream kept
    assert pruned(x).shape == (16, 10)
    qmodel = calibrate(quantize(pruned, QuantConfig(), example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    logits = run(graph, x_int).tensors[graph.outputs[0]]
    assert logits.shape == (16, 10)
    agree = (logits.argmax(-1) == qmodel(x).argmax(-1)).float().mean()
    assert agree >= 0.9
