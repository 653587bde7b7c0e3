"""`nnchip demo --out DIR` end to end (run once per session), and the stage registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnchip.cli.main import main

REQUIRED = ("row_id", "model", "method", "w_bits", "a_bits", "acc", "float_acc", "n_test")


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def records(demo_out: Path) -> list[dict]:
    return json.loads((demo_out / "summary.json").read_text())


def test_summary_has_every_row_and_field(records: list[dict]) -> None:
    assert isinstance(records, list)
    ids = [r["row_id"] for r in records]
    assert len(ids) == len(set(ids))
    for model in ("cnn_tiny", "vit_tiny"):
        for suffix in ("w8a8-ptq", "w4a4-ptq", "w4a4-qat"):
            assert f"{model}-{suffix}" in ids
    for r in records:
        for key in REQUIRED:
            assert key in r, (r["row_id"], key)
        assert 0.0 <= r["acc"] <= 1.0 and 0.0 <= r["float_acc"] <= 1.0
        assert r["n_test"] > 100


def test_float_models_learn_digits(records: list[dict]) -> None:
    for r in records:
        assert r["float_acc"] > 0.9, r


def test_vq_row_lowers_bit_exact_within_three_points(records: list[dict]) -> None:
    row = next(r for r in records if r["method"] == "vq")
    assert (row["vq_v"], row["vq_k"], row["metric"]) == (4, 16, "l2")
    assert row["lut_layers"] == ["conv2", "conv3"]
    assert row["bit_exact"] is True
    assert row["int_acc"] >= row["float_acc"] - 0.03 and row["acc"] >= row["float_acc"] - 0.03, row


def test_w8a8_within_one_point_of_float(records: list[dict]) -> None:
    rows = [r for r in records if (r["w_bits"], r["a_bits"]) == (8, 8)]
    assert len(rows) >= 2
    for r in rows:
        assert r["acc"] >= r["float_acc"] - 0.01, r


def test_w4a4_rows_are_usable(records: list[dict]) -> None:
    for r in records:
        if (r["w_bits"], r["a_bits"]) == (4, 4):
            assert r["acc"] > 0.5, r


def test_pruned_rows_are_sparse_exact_and_within_three_points(records: list[dict], demo_out: Path) -> None:
    rows = [r for r in records if r.get("structure") == "2:4"]
    assert {r["model"] for r in rows} == {"cnn_tiny", "vit_tiny"}
    for r in rows:
        assert r["sparsity"] == 0.5 and (r["w_bits"], r["a_bits"]) == (4, 4) and r["bit_exact"] is True, r
        assert r["acc"] >= r["float_acc"] - 0.03 and r["int_acc"] >= r["float_acc"] - 0.03, r
        manifest = json.loads((Path(r["export_dir"]) / "manifest.json").read_text())
        assert min(manifest["weight_density"].values()) <= 0.5


def test_mixed_precision_row_has_avg_bits_and_null_w_bits(records: list[dict]) -> None:
    rows = [r for r in records if r.get("avg_bits") is not None and r["method"].startswith("mixed_precision")]
    assert len(rows) == 1
    r = rows[0]
    assert r["w_bits"] is None and r["avg_bits"] <= 4.0 and len(set(r["bits"].values())) > 1, r
    assert r["bit_exact"] is True and r["acc"] >= r["float_acc"] - 0.03, r


def test_plots_and_timings_exist(demo_out: Path, records: list[dict]) -> None:
    for name in ("accuracy_vs_bits.png", "layer_sqnr.png"):
        path = demo_out / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    timings = json.loads((demo_out / "timings.json").read_text())
    assert timings["total"] > 0
    assert all("worst_layer" in r for r in records if r["row_id"].startswith(("cnn_tiny", "vit_tiny")))


def test_no_temporary_files_left(demo_out: Path) -> None:
    assert not [p for p in demo_out.iterdir() if p.name.startswith(".")]


def test_stage_registry_orders_and_rejects_duplicates() -> None:
    from nnchip.cli.demo import DEMO_STAGES, register_demo_stage

    orders = {name: stage.order for name, stage in DEMO_STAGES.items()}
    assert orders["data"] < orders["train_float"] < orders["quantize"] < orders["report"]
    with pytest.raises(ValueError, match="already registered"):
        register_demo_stage("quantize", order=1, budget_s=1)(lambda ctx: None)
