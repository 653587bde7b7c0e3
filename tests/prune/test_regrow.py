"""Prune-and-regrow (RigL-style): exact sparsity after every update, regrowth by the largest dense gradient,
N:M groups kept, digits accuracy after a short fine-tune, a recipe through the CLI, and config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from nnchip.core.errors import ConfigError
from nnchip.core.mask import raw_weight, weight_mask
from nnchip.models import build
from nnchip.prune import PruneConfig, finetune, prune
from nnchip.prune.registry import prunable_layers
from nnchip.prune.regrow import PruneRegrow, drop_and_grow, nm_drop_and_grow, regrow_fraction


def _cnn() -> nn.Module:
    return build("cnn_tiny", num_classes=10, in_channels=1, image_size=8).train()


def test_regrow_fraction_decays_as_a_cosine() -> None:
    assert regrow_fraction(0, 100, 0.3) == pytest.approx(0.3)
    assert regrow_fraction(50, 100, 0.3) == pytest.approx(0.15)
    assert regrow_fraction(75, 100, 0.3) == pytest.approx(0.15 * (1 + math.cos(0.75 * math.pi)))
    assert regrow_fraction(100, 100, 0.3) == 0.0 and regrow_fraction(140, 100, 0.3) == 0.0


def test_drop_and_grow_moves_the_smallest_weights_to_the_largest_gradients() -> None:
    mask = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    magnitude = torch.tensor([0.5, 0.1, 0.9, 0.0, 0.0, 0.0, 0.2, 0.0])
    gradient = torch.tensor([9.0, 9.0, 9.0, 0.3, -2.0, 0.1, 9.0, 1.0])  # kept entries' gradients do not count
    new = drop_and_grow(mask, magnitude, gradient, 2)
    assert new.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # drop 0.1, 0.2; grow |−2|, 1
    assert drop_and_grow(mask, magnitude, gradient, 10).sum() == mask.sum()  # capped: the count is kept


def test_nm_drop_and_grow_stays_inside_each_group() -> None:
    torch.manual_seed(1)
    magnitude, gradient = torch.rand(50, 4), torch.randn(50, 4)
    mask = torch.zeros(50, 4).scatter_(-1, torch.sort(magnitude, dim=-1, descending=True).indices[:, :2], 1.0)
    new = nm_drop_and_grow(mask, magnitude * mask, gradient, 30)
    assert torch.equal(new.sum(-1), torch.full((50,), 2.0))  # 2:4 in every group
    dropped, grown = (mask > 0) & (new == 0), (mask == 0) & (new > 0)
    assert int(dropped.sum()) == int(grown.sum()) == 30
    for g in range(50):
        if grown[g].any():  # the group's grown positions: its largest |gradient| among its pruned positions
            candidates = torch.where(mask[g] == 0, gradient[g].abs(), -1.0)
            best = torch.sort(candidates, descending=True, stable=True).indices[: int(grown[g].sum())]
            assert set(best.tolist()) == set(torch.nonzero(grown[g]).flatten().tolist())
    assert magnitude[dropped].max() <= magnitude[(mask > 0) & ~dropped].min()  # 2:4: any kept weight may go


def _dense_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, paths: list[str]) -> dict[str, torch.Tensor]:
    """∂L/∂(w ⊙ mask) from a fresh, unparametrized model holding the masked weights (independent of PruneRegrow)."""
    plain = _cnn()
    state = model.state_dict()
    with torch.no_grad():
        for name, value in plain.state_dict().items():
            path, _, leaf = name.rpartition(".")
            masked = leaf == "weight" and weight_mask(model.get_submodule(path)) is not None
            value.copy_(model.get_submodule(path).weight.detach() if masked else state[name])
    nn.functional.cross_entropy(plain(x), y).backward()
    return {path: plain.get_submodule(path).weight.grad.clone() for path in paths}


@pytest.mark.parametrize(("scope", "structure"), [("layer", "unstructured"), ("global", "unstructured"),
                                                  ("layer", "nm")])
def test_regrow_keeps_sparsity_exact_and_regrows_by_largest_gradient(scope: str, structure: str) -> None:
    config = PruneConfig(structure=structure, sparsity=0.75, scope=scope, schedule="prune_regrow", regrow_every=1,
                         regrow_fraction=0.5, regrow_until=1.0)
    model = prune(_cnn(), config).train()
    paths = [path for path, _ in prunable_layers(model, config)]
    kept0 = {p: int(weight_mask(model.get_submodule(p)).sum()) for p in paths}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    regrow = PruneRegrow(model, config, total_steps=6)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for step in range(1, 5):
        assert regrow.due(step)
        before = {p: weight_mask(model.get_submodule(p)).clone() for p in paths}
        expected_grads = _dense_gradients(model, x, y, paths)
        optimizer.zero_grad()
        with regrow.capture():
            nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        moved = regrow.update(step, optimizer)
        assert moved > 0
        grown_all, candidates = [], []
        for path in paths:
            layer = model.get_submodule(path)
            after = weight_mask(layer)
            if scope == "layer":
                assert int(after.sum()) == kept0[path]  # exact per layer, every update
            grown = (before[path] == 0) & (after > 0)
            assert bool((raw_weight(layer).detach()[grown] == 0).all())  # regrown weights start at zero
            state = optimizer.state[raw_weight(layer)]
            assert bool((state["exp_avg"][grown] == 0).all()) and bool((state["exp_avg_sq"][grown] == 0).all())
            score = expected_grads[path].abs()
            if structure == "nm":
                groups = after.reshape(-1, config.m)
                assert torch.equal(groups.sum(-1), torch.full((groups.shape[0],), float(config.n)))
                grown_g, pruned_g = grown.reshape(-1, config.m), (before[path] == 0).reshape(-1, config.m)
                s = score.reshape(-1, config.m)
                # inside a group, a grown position's gradient is at least every still-pruned candidate's
                lowest_grown = torch.where(grown_g, s, torch.inf).min(-1).values
                highest_left = torch.where(pruned_g & ~grown_g, s, -torch.inf).max(-1).values
                assert bool((lowest_grown >= highest_left - 1e-6).all())
            grown_all.append(score[grown])
            candidates.append(score[(before[path] == 0) & ~grown])
        if structure == "unstructured":
            if scope == "global":
                assert sum(int(weight_mask(model.get_submodule(p)).sum()) for p in paths) == sum(kept0.values())
                grown_scores, left_scores = torch.cat(grown_all), torch.cat(candidates)
                assert grown_scores.min() >= left_scores.max() - 1e-6  # the largest |gradient| over all layers
            else:
                for g, c in zip(grown_all, candidates, strict=True):
                    assert g.numel() == 0 or g.min() >= c.max() - 1e-6  # the largest |gradient| of the layer
    assert len(regrow.moved) == 4 and regrow.moved[0] >= regrow.moved[-1]  # cosine-decayed


def test_regrow_finetune_on_digits_reaches_an_accuracy_floor() -> None:
    from nnchip.data.digits import load_digits_split
    from nnchip.train import evaluate, train
    from nnchip.train.config import TrainConfig

    split = load_digits_split()
    model = build("cnn_tiny", num_classes=10, in_channels=1, image_size=8)
    train(model, split.train, TrainConfig(epochs=6, lr=0.05, batch_size=64, optimizer="sgd", schedule="onecycle",
                                          progress=False))
    float_acc = evaluate(model.eval(), split.test)
    config = PruneConfig(sparsity=0.8, schedule="prune_regrow", regrow_every=5, regrow_fraction=0.3)
    tuned = finetune(model, split.train, config, epochs=3, lr=0.002)
    acc = evaluate(tuned, split.test)
    for path, layer in prunable_layers(tuned, config):
        assert float(weight_mask(layer).mean()) == pytest.approx(0.2, abs=1 / layer.weight.numel()), path
    assert float_acc > 0.9 and acc >= float_acc - 0.05, (float_acc, acc)


def test_prune_cli_runs_a_regrow_recipe(tmp_path: Path) -> None:
    import yaml
    from test_cli import TINY

    from nnchip.cli.main import main

    recipe = {**TINY, "prune": {"structure": "unstructured", "sparsity": 0.75, "schedule": "prune_regrow",
                                "regrow_every": 2, "regrow_fraction": 0.3},
              "finetune": {"epochs": 1, "lr": 0.001, "max_steps": 8}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["prune", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["prune"]["schedule"] == "prune_regrow" and record["bit_exact"] is True
    assert record["layer_density"]["conv2"] == pytest.approx(0.25, abs=1e-3) and record["layer_density"]["conv1"] == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedule": "prune_regrow", "regrow_every": 0}, "prune.regrow_every must be a positive integer"),
    ({"schedule": "prune_regrow", "regrow_fraction": 0.0}, "prune.regrow_fraction must be in (0, 1]"),
    ({"schedule": "prune_regrow", "regrow_until": 1.5}, "prune.regrow_until must be in (0, 1]"),
    ({"schedule": "prune_regrow", "structure": "channel"}, "prune.schedule 'prune_regrow' supports structures"),
    ({"schedule": "prune_regrow", "structure": "nm", "sr_ste": True}, "prune.sr_ste recomputes the N:M mask"),
    ({"regrow_every": 10}, "prune.regrow_every applies to schedule 'prune_regrow' only"),
])
def test_bad_regrow_config_is_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PruneConfig(**changes)
    assert message in str(info.value) and "\n" not in str(info.value)
