"""Training: one trainer for float and quantization-aware training, checkpoints, distributed runs."""

from nnchip.train.checkpoint import load_weights, save_weights
from nnchip.train.config import TrainConfig
from nnchip.train.trainer import TrainResult, distillation_loss, evaluate, train

__all__ = ["TrainConfig", "TrainResult", "distillation_loss", "evaluate", "load_weights", "save_weights", "train"]
