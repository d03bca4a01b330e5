"""Shared helpers: tiny run settings and access to the real corpora."""

import json
import os

import pytest


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
  path = os.environ.get("SDT_DATA_DIR")
  if not path:
    pytest.skip("SDT_DATA_DIR is not set: no real corpora to read")
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
