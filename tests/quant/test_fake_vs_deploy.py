"""The fake-quant model in eval mode computes what the integer model computes (issue 3: `acc` vs `int_acc`).

With the default integer non-linear operators and the bias on the accumulator grid, the only differences left
are float32 rounding inside conv/linear/matmul sums, which move a value across a rounding boundary rarely.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lowering_cases import PRECISIONS
from models_for_tests import TinyResNet, TransformerViT, randomize_batchnorm

from nnchip import calibrate, quantize
from nnchip.quant.base import Quantizer
from nnchip.quant.deploy import deploy_forward


def _fake_integers(qmodel, x: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Integer values of every quantizer node's output in the fake-quant eval forward."""
    names = {str(n.target): n.name for n in qmodel.gm.graph.nodes
             if n.op == "call_module" and isinstance(qmodel.gm.get_submodule(str(n.target)), Quantizer)}
    caught: dict[str, torch.Tensor] = {}
    hooks = [qmodel.gm.get_submodule(target).register_forward_hook(
        lambda m, args, out, name=name: caught.__setitem__(name, m.int_values(args[0]).to(torch.int64)))
        for target, name in names.items()]
    with torch.no_grad():
        qmodel.eval()(x)
    for hook in hooks:
        hook.remove()
    return caught


@pytest.mark.parametrize(("kind", "precision", "changes"), [
    ("cnn", "w8a8", {}), ("cnn", "w4a4", {}), ("vit", "w8a8", {}), ("vit", "w4a4", {}),
    ("vit", "w4a4", {"softmax_impl": "shiftmax", "gelu_impl": "shiftgelu"}),
])
def test_fake_quant_forward_matches_the_integer_model(kind: str, precision: str, changes: dict) -> None:
    torch.manual_seed(0)
    if kind == "cnn":
        model, x = randomize_batchnorm(TinyResNet()).eval(), torch.randn(64, 3, 16, 16)
    else:
        model, x = TransformerViT().eval(), torch.randn(64, 1, 8, 8)
    config = replace(PRECISIONS[precision], **changes)
    qmodel = calibrate(quantize(model, config, example_inputs=x[:2]), [x])
    fake = _fake_integers(qmodel, x)
    input_node = next(n for n in qmodel.gm.graph.nodes
                      if n.meta.get("nnchip_kind") == "quantize" and n.args[0].meta.get("nnchip_kind") == "input")
    deployed = deploy_forward(qmodel, fake[input_node.name])
    differing = sum(int((fake[name] != values).sum()) for name, values in deployed.items())
    total = sum(values.numel() for values in deployed.values())
    assert differing / total < 1e-3, f"{differing} of {total} integers differ"
    output = list(deployed)[-1]
    assert float((fake[output].argmax(-1) == deployed[output].argmax(-1)).double().mean()) >= 0.98
