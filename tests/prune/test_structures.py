"""Pruning structures: exact mask patterns, scopes, schedules, SR-STE, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch
from models_for_tests import TinyResNet
from torch import nn

from nnchip.core.errors import ConfigError
from nnchip.core.mask import raw_weight, weight_mask
from nnchip.models import build
from nnchip.prune import PruneConfig, cubic_sparsity, finetune, prune, scheduled_sparsity, sparsity_report
from nnchip.prune.nm import nm_mask


def _cnn() -> nn.Module:
    return build("cnn_tiny", num_classes=10, in_channels=1, image_size=8).eval()


def test_per_layer_magnitude_prunes_exactly_the_smallest() -> None:
    model = _cnn()
    pruned = prune(model, PruneConfig(structure="unstructured", sparsity=0.75))
    for path in ("conv2", "conv3"):
        w, kept = model.get_submodule(path).weight.detach(), pruned.get_submodule(path).weight.detach()
        k = round(0.75 * w.numel())
        assert int((kept == 0).sum()) == k
        threshold = w.abs().reshape(-1).sort().values[k - 1]
        assert bool((w.abs()[kept != 0] >= threshold).all())
        assert torch.equal(kept[kept != 0], w[kept != 0])
    report = {r.path: r.density for r in sparsity_report(pruned)}
    assert report["conv1"] == 1.0 and report["fc"] == 1.0  # first and last stay dense by default
    assert model.conv2.weight.ne(0).all()  # the input model is not modified


def test_global_scope_uses_one_threshold() -> None:
    pruned = prune(_cnn(), PruneConfig(structure="unstructured", sparsity=0.5, scope="global"))
    layers = [m for p, m in pruned.named_modules() if p in ("conv2", "conv3")]
    kept = torch.cat([raw_weight(m).detach().abs()[m.weight != 0] for m in layers])
    dropped = torch.cat([raw_weight(m).detach().abs()[m.weight == 0] for m in layers])
    assert kept.min() >= dropped.max()
    densities = [float((m.weight != 0).float().mean()) for m in layers]
    assert densities[0] != densities[1]  # different per-layer densities, one global threshold


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4)])
def test_nm_keeps_n_largest_of_every_group(n: int, m: int) -> None:
    pruned = prune(_cnn(), PruneConfig(structure="nm", n=n, m=m))
    weight = pruned.conv2.weight.detach()
    groups = weight.reshape(weight.shape[0], -1, m)
    assert int((groups != 0).sum(-1).max()) <= n
    dense = raw_weight(pruned.conv2).detach().reshape(weight.shape[0], -1, m).abs()
    kept_min = torch.where(groups != 0, dense, torch.inf).min(-1).values
    dropped_max = torch.where(groups == 0, dense, -torch.inf).max(-1).values
    assert bool((kept_min >= dropped_max).all())


def test_nm_mask_breaks_ties_by_lower_index() -> None:
    mask = nm_mask(torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, -3.0, 3.0, 1.0]]), 2, 4)
    assert mask.tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]]


def test_sr_ste_recomputes_the_mask_and_decays_pruned_weights() -> None:
    model = prune(_cnn(), PruneConfig(structure="nm", n=2, m=4, sr_ste=True, sr_ste_decay=0.5))
    layer = model.conv2
    original = raw_weight(layer)
    mask = weight_mask(layer)
    assert mask is not None and torch.equal(layer.weight.detach(), original.detach() * mask)
    layer.weight.sum().backward()
    # straight-through: gradient 1 everywhere, plus decay · w on pruned entries
    assert torch.allclose(original.grad, 1.0 + 0.5 * (1 - mask) * original.detach())
    with torch.no_grad():
        original.mul_(-1).add_(torch.randn_like(original))  # the mask follows the weights
    assert not torch.equal(weight_mask(layer), mask)


def test_cubic_schedule() -> None:
    assert cubic_sparsity(4, 4, 0.0, 0.8) == 0.8
    assert cubic_sparsity(2, 4, 0.0, 0.8) == pytest.approx(0.8 - 0.8 * 0.125)
    values = [cubic_sparsity(t, 10, 0.1, 0.9) for t in range(1, 11)]
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert all(s > 0 for s in steps) and steps == sorted(steps, reverse=True)  # increasing, decelerating
    config = PruneConfig(sparsity=0.9, schedule="gradual", steps=5)
    assert scheduled_sparsity(config, 1) < scheduled_sparsity(config, 3) < scheduled_sparsity(config, 5) == 0.9


def test_gradual_finetune_reaches_the_target_and_keeps_zeros() -> None:
    from torch.utils.data import TensorDataset

    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    config = PruneConfig(structure="unstructured", sparsity=0.8, schedule="gradual", steps=3)
    model = finetune(_cnn(), TensorDataset(x, y), config, epochs=2, lr=1e-3, batch_size=16)
    for record in sparsity_report(model)[1:-1]:
        assert record.density == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize(("changes", "message"), [
    ({"sparsity": 1.0}, "prune.sparsity must be in [0, 1)"),
    ({"sparsity": -0.1}, "prune.sparsity must be in [0, 1)"),
    ({"structure": "nm", "n": 5, "m": 4}, "prune.n (5) must not exceed prune.m (4)"),
    ({"structure": "diagonal"}, "prune.structure: unknown pruning structure 'diagonal'"),
    ({"layer_sparsity": (("conv2", 1.5),)}, "prune.layer_sparsity['conv2'] must be in [0, 1)"),
])
def test_bad_config_is_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PruneConfig(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_m_that_does_not_divide_a_layer_names_it() -> None:
    with pytest.raises(ConfigError, match=r"prune.m: 4 does not divide the reduction length 9 of layer conv1"):
        prune(_cnn(), PruneConfig(structure="nm", skip_first_last=False))


def test_removing_every_channel_names_the_layer() -> None:
    model = TinyResNet(width=2).eval()
    with pytest.raises(ConfigError, match=r"sparsity 0.8 would remove every channel of layer conv1 and 2 layer"):
        prune(model, PruneConfig(structure="channel", sparsity=0.8), example_inputs=torch.randn(1, 3, 8, 8))


def test_sr_ste_mask_survives_quantize() -> None:
    from nnchip import QuantConfig, quantize
    from nnchip.quant import default_act_spec, default_weight_spec

    model = prune(_cnn(), PruneConfig(structure="nm", n=2, m=4, sr_ste=True))
    config = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))
    qmodel = quantize(model, config, example_inputs=torch.randn(2, 1, 8, 8))
    for path in ("conv2", "conv3"):
        weight = qmodel.gm.get_submodule(path).quantized_weight().detach()
        assert int((weight.reshape(weight.shape[0], -1, 4) != 0).sum(-1).max()) <= 2


def test_gradual_channel_pruning_ends_at_the_target_fraction() -> None:
    from torch.utils.data import TensorDataset

    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    config = PruneConfig(structure="channel", sparsity=0.5, schedule="gradual", steps=3)
    model = finetune(build("cnn_tiny", num_classes=10, in_channels=1, image_size=8, width=8), TensorDataset(x, y),
                     config, epochs=1, lr=1e-3, batch_size=4, example_inputs=x[:1])
    assert [model.get_submodule(p).out_channels for p in ("conv1", "conv2", "conv3")] == [4, 8, 8]
