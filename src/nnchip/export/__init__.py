"""Export of an IntGraph to hardware-facing files, and the pure-numpy reader that runs them."""

from nnchip.export.reader import ExportError, load_export, verify
from nnchip.export.writer import export

__all__ = ["ExportError", "export", "load_export", "verify"]
