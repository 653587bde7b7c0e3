"""Graph capture: by module type and structure, attention decomposed, same function as the model."""

from __future__ import annotations

import pytest
import torch
from models_for_tests import SDPAAttention, TinyResNet, TransformerViT, randomize_batchnorm
from torch import nn

from nnchip.core.capture import capture
from nnchip.core.errors import UnsupportedError
from nnchip.core.fold_batchnorm import fold_batchnorm


def kinds(graph) -> list[str]:
    return [n.meta["nnchip_kind"] for n in graph.gm.graph.nodes]


def test_torchvision_style_resnet_captures_and_matches() -> None:
    model = randomize_batchnorm(TinyResNet()).eval()
    x = torch.randn(2, 3, 16, 16)
    captured = capture(model, x)
    assert torch.allclose(captured.gm(x), model(x), atol=1e-6)
    k = kinds(captured)
    assert k.count("add") == 3  # `out += identity` normalised to an ordinary add
    assert "flatten" in k and k.count("conv2d") == 8 and k.count("batchnorm") == 8
    assert not any(n.target is __import__("operator").iadd for n in captured.gm.graph.nodes)


def test_capture_does_not_modify_the_model() -> None:
    model = TinyResNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    capture(model, torch.randn(1, 3, 8, 8))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.relu.inplace


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_vit_is_decomposed_and_matches_fast_path(norm_first: bool) -> None:
    model = TransformerViT(norm_first=norm_first).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        reference = model(x)  # eval + no_grad: PyTorch takes the fused fast path
    captured = capture(model, x)
    assert torch.allclose(captured.gm(x), reference, atol=1e-5)
    k = kinds(captured)
    assert k.count("matmul") == 4 and k.count("softmax") == 2  # Q·Kᵀ and P·V per layer
    assert k.count("linear") == 2 * 6 + 1  # q, k, v, out, fc1, fc2 per layer + head
    modules = [type(captured.gm.get_submodule(n.target)) for n in captured.gm.graph.nodes if n.op == "call_module"]
    assert nn.MultiheadAttention not in modules and nn.TransformerEncoderLayer not in modules


def test_multihead_attention_sequence_first() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.attn(x, x, x)
            return out

    model = Wrapper().eval()
    x = torch.randn(5, 2, 16)  # (L, B, E)
    assert torch.allclose(capture(model, x).gm(x), model(x), atol=1e-5)


def test_scaled_dot_product_attention_is_decomposed() -> None:
    model = SDPAAttention().eval()
    x = torch.randn(2, 5, 16)
    captured = capture(model, x)
    assert torch.allclose(captured.gm(x), model(x), atol=1e-5)
    targets = [n.target for n in captured.gm.graph.nodes]
    assert torch.nn.functional.scaled_dot_product_attention not in targets
    assert kinds(captured).count("matmul") == 2 and "scale" in kinds(captured)


def test_unsupported_module_is_named_with_path_and_type() -> None:
    class WithLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    with pytest.raises(UnsupportedError, match=r"rnn \(torch\.nn\.modules\.rnn\.LSTM\)"):
        capture(WithLSTM(), torch.randn(3, 2, 4))


def test_attention_mask_is_refused_with_the_module_path() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, attn_mask=torch.zeros(4, 4))[0]

    with pytest.raises(UnsupportedError, match="attn"):
        capture(Masked(), torch.randn(1, 4, 8))


def test_fold_batchnorm_preserves_the_function() -> None:
    model = randomize_batchnorm(TinyResNet()).eval()
    x = torch.randn(2, 3, 16, 16)
    captured = capture(model, x)
    assert fold_batchnorm(captured.gm) == 8
    assert "batchnorm" not in kinds(captured)
    assert torch.allclose(captured.gm(x), model(x), atol=1e-5)
