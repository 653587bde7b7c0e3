"""Pruning: structures registered by name (unstructured, N:M with SR-STE, channel/head removal), schedules
(one-shot, cubic, prune-and-regrow), nested multi-level sparsity (`set_sparsity_level`), `prune()` and
reports. Masks are parametrizations that survive quantize() and the integer lowering."""

from nnchip.core.nested_mask import set_sparsity_level, sparsity_levels
from nnchip.prune import block as _block  # noqa: F401  (registers "block")
from nnchip.prune import channel as _channel  # noqa: F401  (registers "channel")
from nnchip.prune import nm as _nm  # noqa: F401  (registers "nm")
from nnchip.prune import token as _token  # noqa: F401  (registers "token")
from nnchip.prune import unstructured as _unstructured  # noqa: F401  (registers "unstructured")
from nnchip.prune.api import LayerSparsity, apply_pruning, compression_report, finetune, prune, sparsity_report
from nnchip.prune.config import PruneConfig
from nnchip.prune.registry import PRUNE_STRUCTURES, register_structure
from nnchip.prune.schedule import cubic_sparsity, scheduled_sparsity
from nnchip.prune.token import TokenSelect, attention_block_names, prune_tokens, token_counts
from nnchip.prune.token_config import TokenPruneConfig

__all__ = [
    "PRUNE_STRUCTURES", "LayerSparsity", "PruneConfig", "apply_pruning", "compression_report", "cubic_sparsity",
    "finetune", "prune", "register_structure", "scheduled_sparsity", "set_sparsity_level", "sparsity_levels",
    "sparsity_report",
    "TokenPruneConfig", "TokenSelect", "attention_block_names", "prune_tokens", "token_counts",
]
