"""sdt_jax: a SparseDepthTransformer in JAX/Flax NNX.

Routed blocks process a fixed-size, learned subset of each sequence's
tokens (capacity-based top-k), so the compute they skip is really skipped.
"""

__version__ = "0.1.0"
