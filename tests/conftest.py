"""Shared fixtures and helpers: small models and runs sized for a 2-core CPU,
and access to the real corpora."""

from __future__ import annotations

import json
import os

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


def tiny_args(workdir, *extra):
  """Overrides for a run small enough for a test (seconds on 2 cores)."""
  return ["model.d_model=32", "model.n_heads=2", "model.n_layers=2",
          "model.max_seq_len=32", "data.seq_len=32", "data.batch_size=4",
          "train.steps=6", "train.log_every=1", "train.eval_every=0",
          "train.eval_batches=1", "train.progress=lines",
          "train.tensorboard=false", "checkpoint.every=3",
          "optim.warmup_steps=2", "routing.curriculum=[]", f"workdir={workdir}",
          *extra]


def read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def train_losses(workdir):
  """{step: loss} of the training records in metrics.jsonl."""
  return {r["step"]: r["loss"] for r in read_jsonl(
      os.path.join(workdir, "metrics.jsonl")) if "split" not in r}


@pytest.fixture
def data_dir():
  """The real corpora's folder from SDT_DATA_DIR, or skip with the reason."""
  path = os.environ.get("SDT_DATA_DIR")
  if not path:
    pytest.skip("SDT_DATA_DIR is not set: point it at a folder of the real "
                "corpora (wikitext-2/, tinyshakespeare/, tinystories/)")
  if not os.path.isdir(path):
    pytest.skip(f"SDT_DATA_DIR={path} is not a directory")
  return path


@pytest.fixture
def text_file(tmp_path):
  """A small UTF-8 corpus in WikiText layout (words, one line per sentence)."""
  lines = [f" the {w} sat on the mat number {i} and ran home . "
           for i, w in enumerate(["cat", "dog", "bird", "fox"] * 40)]
  path = tmp_path / "corpus.txt"
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path
