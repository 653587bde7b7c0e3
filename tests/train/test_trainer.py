"""Trainer: learns digits, distils, checkpoints/resumes, and runs under torchrun with 2 processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nnchip.core.errors import ConfigError, DataError
from nnchip.data import load_digits_split
from nnchip.models import build
from nnchip.quant import QuantConfig, calibrate, default_act_spec, default_weight_spec, quantize
from nnchip.train import TrainConfig, evaluate, load_weights, save_weights, train
from nnchip.train.schedule import lr_at

FAST = {"epochs": 4, "batch_size": 128, "lr": 0.1, "schedule": "onecycle", "progress": False}


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


def test_cnn_learns_digits(digits) -> None:
    model = build("cnn_tiny", in_channels=1, image_size=8)
    result = train(model, digits.train, TrainConfig(**FAST), eval_data=digits.test)
    assert evaluate(model, digits.test) >= 0.9 and len(result.eval_acc) == 4


def test_distillation_and_exact_resume(digits, tmp_path: Path) -> None:
    teacher = build("cnn_tiny", in_channels=1, image_size=8)
    train(teacher, digits.train, TrainConfig(**FAST))
    config = TrainConfig(**{**FAST, "epochs": 3}, checkpoint_dir=str(tmp_path / "ck"))
    torch.manual_seed(1)
    student = build("cnn_tiny", in_channels=1, image_size=8, width=8)
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    full = train(student, digits.train, config, teacher=teacher)
    checkpoints = sorted((tmp_path / "ck").glob("step-*"))
    assert len(checkpoints) == 3
    for file in checkpoints[-1].iterdir():  # simulate a run interrupted after epoch 2
        file.unlink()
    checkpoints[-1].rmdir()
    resumed = build("cnn_tiny", in_channels=1, image_size=8, width=8)
    resumed.load_state_dict(initial)
    result = train(resumed, digits.train, TrainConfig(**{**FAST, "epochs": 3}, checkpoint_dir=str(tmp_path / "ck"),
                                                      resume=True), teacher=teacher)
    assert result.steps == full.steps
    assert all(torch.equal(a, b) for a, b in zip(student.state_dict().values(), resumed.state_dict().values(),
                                                 strict=True))


def test_weights_round_trip_and_corrupt_files(tmp_path: Path) -> None:
    model = build("cnn_tiny", in_channels=1, image_size=8)
    save_weights(model, tmp_path / "m.safetensors")
    other = load_weights(build("cnn_tiny", in_channels=1, image_size=8), tmp_path / "m.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(DataError, match="corrupt or unreadable checkpoint .*bad.safetensors"):
        load_weights(model, tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="does not fit the model"):
        load_weights(build("cnn_tiny", in_channels=1, image_size=8, width=8), tmp_path / "m.safetensors")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="train.schedule must be one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="train.resume needs train.checkpoint_dir"):
        TrainConfig(resume=True)
    with pytest.raises(ConfigError, match="train.compile must be true or false"):
        TrainConfig(compile="yes")  # type: ignore[arg-type]


def test_quantizer_parameters_follow_quant_lr_scale(digits) -> None:
    float_model = build("cnn_tiny", in_channels=1, image_size=8, width=8).eval()
    images = torch.stack([digits.train[i][0] for i in range(64)])
    config = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))

    def trained(scale: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        qmodel = calibrate(quantize(float_model, config, example_inputs=images[:2]), [images])
        steps = {n: p for n, p in qmodel.named_parameters() if n.endswith(".step")}
        before = {n: p.detach().clone() for n, p in steps.items()}
        train(qmodel, digits.train, TrainConfig(epochs=1, max_steps=5, lr=0.01, optimizer="adamw", weight_decay=0.5,
                                               quant_lr_scale=scale, progress=False))
        return before, {n: p.detach() for n, p in steps.items()}

    before, after = trained(0.0)
    assert before and all(torch.equal(before[n], after[n]) for n in before)  # frozen steps, no weight decay
    before, after = trained(1.0)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    with pytest.raises(ConfigError, match="train.quant_lr_scale"):
        TrainConfig(quant_lr_scale=-1.0)


def test_schedules_are_pure_functions_of_the_step() -> None:
    assert lr_at(0, 100, 1.0, "cosine") == 1.0 and lr_at(100, 100, 1.0, "cosine") == pytest.approx(0.0)
    peak = max(lr_at(s, 100, 1.0, "onecycle") for s in range(100))
    assert peak == pytest.approx(1.0, abs=0.02) and lr_at(0, 100, 1.0, "onecycle") == pytest.approx(0.04)


DDP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
import torch.distributed as dist
from nnchip.data import load_digits_split
from nnchip.models import build
from nnchip.quant import QuantConfig, calibrate, default_act_spec, default_weight_spec, quantize
from nnchip.train import TrainConfig, save_weights, train
split = load_digits_split()
model = build("cnn_tiny", in_channels=1, image_size=8, width=8)
train(model, split.train, TrainConfig(epochs=2, batch_size=64, lr=0.05, progress=False))
save_weights(model, f"{sys.argv[1]}/rank{dist.get_rank()}.safetensors")
"""


def test_ddp_two_processes_end_with_equal_weights(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(script), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    initial = build("cnn_tiny", in_channels=1, image_size=8, width=8).state_dict()
    assert not torch.equal(initial["conv1.weight"], a["conv1.weight"])


def test_compiled_qat_follows_the_eager_run(digits, monkeypatch: pytest.MonkeyPatch) -> None:
    """`compile=True` trains the same fake-quant model as eager mode, to float rounding (the compiler fuses the
    elementwise work and so rounds some sums differently); without a C++ compiler it is a one-line error."""
    float_model = build("cnn_tiny", in_channels=1, image_size=8, width=8).eval()
    images = torch.stack([digits.train[i][0] for i in range(64)])
    config = QuantConfig(weight=default_weight_spec(4, "lsq"), act=default_act_spec(4, "lsq"))
    start = calibrate(quantize(float_model, config, example_inputs=images[:2]), [images])
    runs = []
    for compiled in (False, True):
        qmodel = quantize(float_model, config, example_inputs=images[:2])
        qmodel.load_state_dict(start.state_dict())
        result = train(qmodel, digits.train, TrainConfig(epochs=1, max_steps=3, lr=0.01, progress=False,
                                                         compile=compiled))
        runs.append((result.final_loss, qmodel.state_dict()))
    (eager_loss, eager_state), (compiled_loss, compiled_state) = runs
    assert compiled_loss == pytest.approx(eager_loss, rel=1e-4)
    for name, value in eager_state.items():
        torch.testing.assert_close(compiled_state[name], value, rtol=1e-3, atol=1e-5, msg=name)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match="train.compile needs a C\\+\\+ compiler"):
        train(start, digits.train, TrainConfig(epochs=1, max_steps=1, progress=False, compile=True))
