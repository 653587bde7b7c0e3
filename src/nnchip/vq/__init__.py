"""Vector quantization into look-up-table layers (LUT-NN / LUT-DLA style): `vq` converts, `train_vq` trains.

    gm = vq(model, VQConfig(v=4, k=16, metric="l1"), example_inputs=x[:1], calibration=batches)
    train_vq(gm, train_set, VQTrainConfig(), teacher=model)
    qmodel = calibrate(quantize(gm, QuantConfig(), example_inputs=x[:1]), batches)
    snap_codebooks(qmodel)              # centroids on the input grid: fake-quant = integer search
"""

from nnchip.vq.config import VQConfig, VQTrainConfig
from nnchip.vq.convert import select_layers, vq
from nnchip.vq.layer import LUTLayer, lut_layers, set_mode
from nnchip.vq.metrics import METRICS, Metric
from nnchip.vq.snap import snap_codebooks
from nnchip.vq.train import VQTrainResult, train_vq

__all__ = ["METRICS", "LUTLayer", "Metric", "VQConfig", "VQTrainConfig", "VQTrainResult", "lut_layers",
           "select_layers", "set_mode", "snap_codebooks", "train_vq", "vq"]
