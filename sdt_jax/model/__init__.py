"""The SparseDepthTransformer and its parts."""

from sdt_jax.model.scan import scan_layers, unrolled_layer_scans
from sdt_jax.model.transformer import (ROUTING_MODES, ForwardStats,
                                       SparseDepthTransformer)
from sdt_jax.model.loss import next_token_loss

__all__ = ["ForwardStats", "ROUTING_MODES", "SparseDepthTransformer",
           "next_token_loss", "scan_layers", "unrolled_layer_scans"]
