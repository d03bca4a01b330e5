"""Shared fixtures: small models sized for a 2-core CPU."""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from sdt_jax.config import ModelConfig, RoutingConfig
from sdt_jax.model import SparseDepthTransformer

SMALL = ModelConfig(vocab_size=61, d_model=32, n_heads=2, n_layers=4,
                    mlp_ratio=2.0)


def make_model(model_cfg: ModelConfig = SMALL, seed: int = 0, **routing):
  return SparseDepthTransformer(model_cfg, RoutingConfig(**routing),
                                rngs=nnx.Rngs(seed))


def arrays(model) -> dict:
  """The model's parameters as a flat {name: np.ndarray} dict."""
  return {name: np.asarray(var[...]) for name, var in vars(model).items()
          if isinstance(var, nnx.Param)}


def random_tokens(seed: int, batch: int, seq: int, vocab: int = SMALL.vocab_size):
  return jax.random.randint(jax.random.key(seed), (batch, seq), 0, vocab)


@pytest.fixture
def data_dir() -> pathlib.Path:
  """The shared corpora folder from SDT_DATA_DIR, or skip."""
  path = os.environ.get("SDT_DATA_DIR")
  if not path:
    pytest.skip("SDT_DATA_DIR is not set; point it at the shared data folder "
                "(wikitext-2/, tinyshakespeare/, tinystories/) to run this test")
  if not pathlib.Path(path).is_dir():
    pytest.skip(f"SDT_DATA_DIR={path} is not a directory")
  return pathlib.Path(path)
