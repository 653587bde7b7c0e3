"""Zoo: every model builds, runs, captures and quantizes; shapes match the published architectures."""

from __future__ import annotations

import pytest
import torch

from nnchip import QuantConfig, quantize
from nnchip.core.capture import capture
from nnchip.core.errors import ConfigError
from nnchip.models import build, list_models

SMALL = {"cnn_tiny": {"in_channels": 1, "image_size": 8}, "vit_tiny": {"in_channels": 1, "image_size": 8}}
OWN = ["cnn_tiny", "resnet20", "resnet56", "resnet18", "mobilenetv2", "vgg_small", "vit_tiny"]


@pytest.mark.parametrize("name", OWN)
def test_zoo_model_runs_and_quantizes(name: str) -> None:
    options = SMALL.get(name, {})
    model = build(name, **options).eval()
    size = options.get("image_size", 32)
    x = torch.randn(1, options.get("in_channels", 3), size, size)
    assert model(x).shape == (1, 10)
    qmodel = quantize(model, QuantConfig(), example_inputs=x)
    assert qmodel(x).shape == (1, 10)
    assert len(qmodel.layers()) == sum(1 for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


@pytest.mark.parametrize(
    ("name", "params"), [("resnet20", 272_474), ("resnet18", 11_689_512), ("deit_base", 86_567_656)]
)
def test_parameter_counts_match_the_architectures(name: str, params: int) -> None:
    options = {"num_classes": 1000, "image_size": 224} if name != "resnet20" else {}
    assert sum(p.numel() for p in build(name, **options).parameters()) == params


def test_deit_base_captures_for_costing_without_weights() -> None:
    captured = capture(build("deit_base"), torch.randn(1, 3, 224, 224))
    kinds = [n.meta["nnchip_kind"] for n in captured.gm.graph.nodes]
    assert kinds.count("matmul") == 24 and kinds.count("softmax") == 12 and kinds.count("layernorm") == 25


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet21'.*resnet20"):
        build("resnet21")
    assert "deit_base" in list_models()


def test_optional_models_fail_cleanly_without_their_package() -> None:
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ConfigError, match="optional package 'torchvision.models'"):
            build("tv_resnet18")
    else:  # pragma: no cover - torchvision is not installable beside the pinned torch
        model = build("tv_resnet18").eval()
        quantize(model, QuantConfig(), example_inputs=torch.randn(1, 3, 32, 32))
