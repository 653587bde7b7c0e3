"""The README's custom-quantizer example runs as shown and really uses the new quantizer."""

from __future__ import annotations

import runpy
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "custom_quantizer_example.py"


def test_readme_custom_quantizer_example_runs() -> None:
    assert len(EXAMPLE.read_text().splitlines()) <= 22
    namespace = runpy.run_path(str(EXAMPLE))
    qmodel, cls = namespace["qmodel"], namespace["PowerOfTwoScaleQuantizer"]
    weight_quantizers = [m.weight_quantizer for _, m in qmodel.layers()]
    assert len(weight_quantizers) == 2 and all(isinstance(q, cls) for q in weight_quantizers)
    for q in weight_quantizers:
        exponent = torch.log2(q.get_scale())
        assert torch.equal(exponent, torch.round(exponent))  # every scale is a power of two
    readme = (EXAMPLE.parents[1] / "README.md").read_text()
    assert "custom_quantizer_example.py" in readme
