"""Token pruning (EViT-style, package token): the integer definition on hand examples, the three integer
implementations bit-exact, the fake-quant model taking the integer model's decisions, shapes and MACs
shrinking, accuracy on digits, the latency-driven keep ratio, and one-line errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lowering_cases import PRECISIONS
from models_for_tests import SDPAAttention, TransformerViT
from torch import Tensor, nn

from nnchip import QuantConfig, calibrate, quantize
from nnchip.core.errors import ConfigError, NnchipError, UnsupportedError
from nnchip.core.token_select import class_attention_scores, kept_token_indices, token_select
from nnchip.export import export, load_export
from nnchip.export.reader import _token_select
from nnchip.lower import lower, run
from nnchip.lower.intgraph import INTEGER_DTYPES
from nnchip.models import build
from nnchip.prune import PruneConfig, TokenPruneConfig, TokenSelect, compression_report, prune, prune_tokens
from nnchip.prune.token_latency import keep_ratio_for_latency, modeled_cycles
from nnchip.quant.base import Quantizer
from nnchip.quant.deploy import deploy_forward


class TimmBlock(nn.Module):
    """timm-style pre-norm block: one qkv projection and F.scaled_dot_product_attention."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SDPAAttention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(),
                                                               nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimmViT(nn.Module):
    def __init__(self, dim: int = 16, depth: int = 2) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, 2, 2)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[TimmBlock(dim) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def _model(kind: str) -> nn.Module:
    if kind == "vit_tiny":
        return build("vit_tiny", in_channels=1, image_size=8).eval()
    if kind == "timm":
        return TimmViT().eval()
    return TransformerViT(norm_first=kind == "encoder_prenorm").eval()


# ---- the integer definition ------------------------------------------------------------------------------
def test_ties_go_to_the_lower_token_index() -> None:
    scores = torch.tensor([[3, 5, 5, 1, 5], [0, 0, 0, 0, 0]])
    assert kept_token_indices(scores, 2).tolist() == [[1, 2], [0, 1]]
    probs = torch.zeros(2, 1, 6, 6, dtype=torch.int64)
    probs[:, 0, 0, 1:] = scores
    x = torch.arange(2 * 6, dtype=torch.int64).reshape(2, 6, 1)
    out = token_select(x, probs, 2)  # class token, the two kept tokens in index order, the package token
    assert out[:, :3, 0].tolist() == [[0, 2, 3], [6, 7, 8]]
    multiplier, shift = np.array([1 << 30]), np.array([30])  # requant by exactly 1
    read = _token_select(x.numpy(), probs.numpy(), {"multiplier": multiplier, "shift": shift},
                         {"keep": 2, "out_zero_point": 0, "lo": -100, "hi": 100})
    assert np.array_equal(read, out.numpy())


def test_package_token_integer_definition_by_hand() -> None:
    # class-row attention of 2 heads over tokens 1..3: scores (summed over heads) 6, 2, 6
    probs = torch.zeros(1, 2, 4, 4, dtype=torch.int64)
    probs[0, 0, 0] = torch.tensor([10, 4, 1, 3])
    probs[0, 1, 0] = torch.tensor([10, 2, 1, 3])
    x = torch.tensor([[[0, 0, 0], [5, 5, 5], [3, -4, 3], [1, 7, -2]]])  # (1, T=4, C=3), zero point removed
    out = token_select(x, probs, keep=1)
    # keep 1: tokens 1 and 3 tie at 6, the lower index (token 1) stays; tokens 2 (w=2) and 3 (w=6) are folded:
    # (2·3 + 6·1)/8 = 1.5 → 2 (half up);  (2·(−4) + 6·7)/8 = 4.25 → 4;  (2·3 + 6·(−2))/8 = −0.75 → −1
    assert out.tolist() == [[[0, 0, 0], [5, 5, 5], [2, 4, -1]]]
    # dropped tokens without attention weigh 1 each: (3 + 1)/2 = 2, (−4 + 7)/2 = 1.5 → 2, (3 − 2)/2 = 0.5 → 1
    probs[0, :, 0, 2:] = 0
    assert token_select(x, probs, keep=1)[0, -1].tolist() == [2, 2, 1]


# ---- lowering: three implementations, integer types, the fake-quant model's decisions -------------------
def _quantized(kind: str, precision: str, keep: float = 0.5):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model, x = _model(kind), torch.randn(48, 1, 8, 8)
    pruned = prune_tokens(model, TokenPruneConfig(keep_ratio=keep), example_inputs=x[:2])
    qmodel = calibrate(quantize(pruned, PRECISIONS[precision], example_inputs=x[:2]), [x])
    graph = lower(qmodel)
    x_int = qmodel.gm.get_submodule(graph.inputs[0]).int_values(x).to(torch.int64)
    return qmodel, graph, x, x_int


@pytest.mark.parametrize("precision", ["w8a8", "w4a4"])
@pytest.mark.parametrize("kind", ["vit_tiny", "encoder_prenorm", "encoder_postnorm", "timm"])
def test_three_implementations_agree_bit_exactly(kind: str, precision: str, tmp_path: Path) -> None:
    qmodel, graph, _, x_int = _quantized(kind, precision)
    selects = [n for n in graph.nodes if n.op == "token_select"]
    assert len(selects) == 2
    interpreted = run(graph, x_int).tensors
    reference = run(graph, x_int, fast=False).tensors
    deployed = deploy_forward(qmodel, x_int)
    export(graph, tmp_path / "e")
    read = load_export(tmp_path / "e").run(x_int.numpy())
    for name, value in deployed.items():
        assert torch.equal(value, interpreted[name]) and torch.equal(value, reference[name]), name
        assert np.array_equal(read[name], value.numpy()), name
    for node in selects:  # class token, keep tokens, package token
        tokens_in = graph.tensors[node.inputs[0]].shape[1]
        assert graph.tensors[node.output].shape[1] == node.attrs["keep"] + 2 < tokens_in
    for node in graph.nodes:  # every parameter and attribute of the graph is an integer
        for key, value in node.params.items():
            assert isinstance(value, np.ndarray) and value.dtype in INTEGER_DTYPES, f"{node.name}.{key}"
        for key, value in node.attrs.items():
            assert not isinstance(value, float), f"{node.name}.{key} is a float"


def _fake_integers(qmodel, x: Tensor) -> dict[str, Tensor]:  # type: ignore[no-untyped-def]
    names = {str(n.target): n.name for n in qmodel.gm.graph.nodes
             if n.op == "call_module" and isinstance(qmodel.gm.get_submodule(str(n.target)), Quantizer)}
    caught: dict[str, Tensor] = {}
    hooks = [qmodel.gm.get_submodule(target).register_forward_hook(
        lambda m, args, out, name=name: caught.__setitem__(name, m.int_values(args[0]).to(torch.int64)))
        for target, name in names.items()]
    with torch.no_grad():
        qmodel.eval()(x)
    for hook in hooks:
        hook.remove()
    return caught


@pytest.mark.parametrize("precision", ["w8a8", "w4a4"])
def test_fake_quant_model_selects_what_the_integer_model_selects(precision: str) -> None:
    qmodel, graph, x, x_int = _quantized("vit_tiny", precision)
    fake = _fake_integers(qmodel, x)
    deployed = deploy_forward(qmodel, fake[graph.inputs[0]])
    for node in (n for n in graph.nodes if n.op == "token_select"):
        keep = int(node.attrs["keep"])
        probs_fake, probs_int = fake[node.inputs[1]], deployed[node.inputs[1]]
        same_probs = (probs_fake == probs_int).flatten(1).all(dim=1)
        kept_fake = kept_token_indices(class_attention_scores(probs_fake), keep)
        kept_int = kept_token_indices(class_attention_scores(probs_int), keep)
        assert torch.equal(kept_fake[same_probs], kept_int[same_probs])
        assert float(same_probs.double().mean()) >= 0.95  # float32 sums upstream rarely move an integer
        # the fake-quant TokenSelect computed the integer package token: its output integers match
        assert float((fake[node.output] == deployed[node.output]).double().mean()) >= 0.99
    output = graph.outputs[0]
    assert float((fake[output].argmax(-1) == deployed[output].argmax(-1)).double().mean()) >= 0.98
    selects = [m for m in qmodel.gm.modules() if isinstance(m, TokenSelect)]
    assert selects and all(m._integer_scales() is not None for m in selects)  # the integer path ran


# ---- shapes, MACs, modeled latency ----------------------------------------------------------------------
def test_token_counts_shrink_and_macs_drop() -> None:
    model, x = _model("vit_tiny"), torch.randn(2, 1, 8, 8)
    pruned = prune_tokens(model, TokenPruneConfig(keep_ratio=0.7), example_inputs=x)
    selects = [m for m in pruned.modules() if isinstance(m, TokenSelect)]
    assert [(m.tokens, m.keep) for m in selects] == [(16, math.ceil(0.7 * 16)), (13, math.ceil(0.7 * 13))]
    assert pruned(x).shape == (2, 10)
    report = compression_report(model, pruned, x)
    assert report["params_after"] == report["params_before"] and 0.1 < report["mac_reduction"] < 0.5
    assert modeled_cycles(pruned, x) < modeled_cycles(model, x)
    unchanged = prune_tokens(model, TokenPruneConfig(keep_ratio=1.0), example_inputs=x)
    assert not any(isinstance(m, TokenSelect) for m in unchanged.modules())
    assert torch.equal(unchanged(x), model(x))
    only_first = prune_tokens(model, TokenPruneConfig(keep_ratio=0.5, blocks=(0,)), example_inputs=x)
    assert [(m.tokens, m.keep) for m in only_first.modules() if isinstance(m, TokenSelect)] == [(16, 8)]


def test_keep_ratio_chosen_against_modeled_latency() -> None:
    model, x = build("vit_tiny", in_channels=3, image_size=32, depth=4).eval(), torch.randn(1, 3, 32, 32)
    config, cycles, dense = keep_ratio_for_latency(model, x, 0.7, rows=8, cols=8)
    assert cycles <= 0.7 * dense
    looser = TokenPruneConfig(keep_ratio=round(config.keep_ratio + 0.05, 6))  # the next grid point misses it
    assert modeled_cycles(prune_tokens(model, looser, example_inputs=x), x, rows=8, cols=8) > 0.7 * dense
    with pytest.raises(ConfigError, match="unreachable"):
        keep_ratio_for_latency(model, x, 0.01, rows=8, cols=8)


# ---- accuracy on digits ---------------------------------------------------------------------------------
def _train(model: nn.Module, data, epochs: int, lr: float) -> nn.Module:  # type: ignore[no-untyped-def]
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total, step = epochs * len(loader), 0
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
    return model.eval()


def test_digits_vit_keeps_accuracy_at_keep_07() -> None:
    from nnchip.data import load_digits_split

    split = load_digits_split()
    x_test, y_test = split.test.tensors

    def top1(model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(x_test).argmax(-1) == y_test).double().mean())

    model = _train(build("vit_tiny", in_channels=1, image_size=8), split.train, epochs=25, lr=3e-3)
    float_acc = top1(model)
    pruned = prune_tokens(model, TokenPruneConfig(keep_ratio=0.7), example_inputs=x_test[:2])
    assert float_acc >= 0.88 and top1(pruned) >= float_acc - 0.08  # one-shot, no training
    tuned = _train(pruned, split.train, epochs=5, lr=1e-3)  # a short fine-tune with the selection in place
    assert top1(tuned) >= float_acc - 0.02
    qmodel = calibrate(quantize(tuned, QuantConfig(), example_inputs=x_test[:2]), [split.train.tensors[0][:256]])
    graph = lower(qmodel)
    logits = run(graph, qmodel.gm.get_submodule(graph.inputs[0]).int_values(x_test).to(torch.int64)).tensors
    int_acc = float((logits[graph.outputs[0]].argmax(-1) == y_test).double().mean())
    assert abs(int_acc - top1(qmodel)) <= 0.003 and int_acc >= top1(tuned) - 0.01


# ---- API, config, errors --------------------------------------------------------------------------------
def test_prune_structure_token_and_recipe_fields() -> None:
    model, x = _model("vit_tiny"), torch.randn(2, 1, 8, 8)
    pruned = prune(model, PruneConfig(structure="token", sparsity=0.3, layer_sparsity=(("blocks.1", 0.5),)),
                   example_inputs=x)
    assert [(m.tokens, m.keep) for m in pruned.modules() if isinstance(m, TokenSelect)] == [(16, 12), (13, 7)]
    excluded = prune(model, PruneConfig(structure="token", sparsity=0.3, exclude=("blocks.0",)), example_inputs=x)
    assert [(m.tokens, m.keep) for m in excluded.modules() if isinstance(m, TokenSelect)] == [(16, 12)]
    config = TokenPruneConfig(keep_ratio=0.6, blocks=(1,))
    assert TokenPruneConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: TokenPruneConfig(keep_ratio=0.0), ConfigError, r"token.keep_ratio must be in \(0, 1\]"),
    (lambda: TokenPruneConfig(keep_ratio=1.5), ConfigError, "token.keep_ratio"),
    (lambda: TokenPruneConfig(block_keep_ratios=(0.5, -1.0)), ConfigError, r"block_keep_ratios\[1\]"),
    (lambda: TokenPruneConfig(blocks=(0,), block_keep_ratios=(0.5,)), ConfigError, "exclude each other"),
    (lambda: TokenPruneConfig.from_dict({"keep_ratoi": 0.5}), ConfigError, "token.keep_ratoi"),
    (lambda: prune_tokens(_model("vit_tiny"), TokenPruneConfig(blocks=(5,)), example_inputs=torch.randn(1, 1, 8, 8)),
     ConfigError, "no attention block 5; the model has 2 .*blocks.0"),
    (lambda: prune_tokens(build("cnn_tiny", in_channels=1, image_size=8), TokenPruneConfig(),
                          example_inputs=torch.randn(1, 1, 8, 8)), UnsupportedError, "TinyCNN has no attention block"),
    (lambda: prune(_model("vit_tiny"), PruneConfig(structure="token", schedule="gradual", sparsity=0.3)),
     ConfigError, "example_inputs|one-shot"),
    (lambda: prune(_model("vit_tiny"), PruneConfig(structure="token", exclude=("blocks.9",)),
                   example_inputs=torch.randn(1, 1, 8, 8)), ConfigError, "no attention block at path 'blocks.9'"),
])
def test_bad_input_is_a_one_line_error(make, error: type[NnchipError], match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_onnx_export_refuses_token_select_naming_the_node(tmp_path: Path) -> None:
    _, graph, _, _ = _quantized("vit_tiny", "w8a8")
    with pytest.raises(UnsupportedError, match=r"node \S+ \(op token_select\)"):
        export(graph, tmp_path / "e", formats=("npy", "onnx"))


def test_prune_cli_runs_a_token_recipe(tmp_path: Path) -> None:
    import json

    import yaml

    from nnchip.cli.main import main

    recipe = {
        "model": {"name": "vit_tiny", "num_classes": 10, "in_channels": 1, "image_size": 8},
        "data": {"kind": "digits", "calib_images": 64},
        "pretrain": {"epochs": 1, "lr": 0.003, "batch_size": 64, "optimizer": "adamw", "progress": False},
        "prune": {"structure": "token", "sparsity": 0.3},
        "quant": {"weight": {"bits": 8}, "act": {"bits": 8}},
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["prune", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    record = json.loads((tmp_path / "out" / "summary.json").read_text())[0]
    assert record["structure"] == "token" and record["bit_exact"] is True and record["mac_reduction"] > 0.1
