"""Reports a user would rather look at than read: per-layer SQNR and matplotlib plots (Agg backend)."""

from nnchip.report.layer_sqnr import LayerSQNR, layer_sqnr
from nnchip.report.plots import plot_accuracy_vs_bits, plot_layer_sqnr

__all__ = ["LayerSQNR", "layer_sqnr", "plot_accuracy_vs_bits", "plot_layer_sqnr"]
