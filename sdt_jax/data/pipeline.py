"""From a DataConfig to batches: corpora, packing, shuffling, sharding.

Text is tokenized into one flat stream and packed into non-overlapping
windows of `seq_len` tokens. Training visits the windows in a fresh
permutation every epoch, drawn from (seed, epoch); the global batch `b` is
the stream positions [b * B, (b + 1) * B) of that endless epoch sequence, and
each process takes its own rows of it. The iterator's whole state is the
batch counter, so a resumed run sees exactly the batches it would have seen.
(grain offers the same guarantees; for one in-memory array a permutation is
the whole job, so the pipeline stays dependency-free.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator

import numpy as np

from sdt_jax.config import Config, DataConfig
from sdt_jax.data import hf, probe, text
from sdt_jax.data.counted import CountedBatches
from sdt_jax.data.errors import DataError
from sdt_jax.data.tokenizers import load_tokenizer


@dataclasses.dataclass
class Corpus:
  """One split of a text corpus, tokenized."""
  tokens: np.ndarray     # int32 [N]
  n_bytes: int           # UTF-8 bytes of the text (bits per byte)
  n_words: int           # WikiText-style word count (word-level perplexity)
  where: str             # files or dataset it came from, for messages


class WindowBatches(CountedBatches):
  """Endless shuffled batches of packed windows (this process's rows)."""

  def __init__(self, tokens: np.ndarray, *, seq_len: int, batch_size: int,
               seed: int, shuffle: bool = True, process_index: int = 0,
               process_count: int = 1, where: str = "data"):
    super().__init__(batch_size, process_index, process_count)
    self.n_windows = len(tokens) // seq_len
    if self.n_windows == 0:
      raise DataError(f"data.seq_len={seq_len} is longer than {where} "
                      f"({len(tokens)} tokens); lower data.seq_len")
    self.windows_WxS = tokens[:self.n_windows * seq_len].reshape(-1, seq_len)
    self.seed, self.shuffle = seed, shuffle

  @functools.lru_cache(maxsize=2)
  def _order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.n_windows)
    return np.random.default_rng((self.seed, epoch)).permutation(self.n_windows)

  def __next__(self) -> dict:
    stream = np.arange(self.first_row(), self.first_row() + self.local_batch)
    rows = [self._order(int(p // self.n_windows))[p % self.n_windows]
            for p in stream]
    self.batch += 1
    return {"tokens": self.windows_WxS[rows]}


def eval_windows(tokens: np.ndarray, seq_len: int, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Batches (tokens [B, S], mask [B, S]) that predict every token after the
  first exactly once: windows overlap by one token; the last is padded and
  its padding masked out. The mask marks target positions."""
  step = seq_len - 1
  starts = list(range(0, max(len(tokens) - 1, 1), step))
  for i in range(0, len(starts), batch_size):
    tok_BxS = np.zeros((batch_size, seq_len), np.int32)
    mask_BxS = np.zeros((batch_size, seq_len), bool)
    for row, s in enumerate(starts[i:i + batch_size]):
      piece = tokens[s:s + seq_len]
      tok_BxS[row, :len(piece)] = piece
      mask_BxS[row, 1:len(piece)] = True
    yield tok_BxS, mask_BxS


# -- corpora -------------------------------------------------------------------


def _split_tail(text_: str, fraction: float) -> tuple[str, str]:
  """(head, tail) with the tail about `fraction` of the text, cut at a line."""
  cut = int(len(text_) * (1.0 - fraction))
  newline = text_.rfind("\n", 0, cut)
  cut = newline + 1 if newline > 0 else cut
  return text_[:cut], text_[cut:]


def _raw_text(cfg: DataConfig, split: str) -> tuple[str, str]:
  """(text, where) of a split of a text or hf source."""
  if cfg.source == "text":
    files = {"train": cfg.train_files, "valid": cfg.valid_files,
             "test": cfg.test_files}[split]
    key = f"data.{split}_files"
    if not files and split == "valid" and cfg.valid_fraction > 0:
      train, where = _raw_text(cfg, "train")
      tail = _split_tail(train, cfg.valid_fraction)[1]
      return tail, f"the last {cfg.valid_fraction:g} of {where}"
    if not files:
      raise DataError(f"{key} is empty; name the {split} files")
    body, paths = text.read_files(files, key)
    return body, ", ".join(paths) if len(paths) <= 3 else f"{len(paths)} files"
  name = cfg.hf_name
  split_name = {"train": cfg.hf_train_split, "valid": cfg.hf_valid_split,
                "test": "test"}[split]
  body = hf.load_split_text(name, cfg.hf_config, split_name, cfg.hf_text_field)
  if body is None and split == "valid" and cfg.valid_fraction > 0:
    train = hf.load_split_text(name, cfg.hf_config, cfg.hf_train_split,
                               cfg.hf_text_field)
    if train is None:
      raise DataError(f"data.hf_name={name} has no split {cfg.hf_train_split}")
    return _split_tail(train, cfg.valid_fraction)[1], f"the tail of {name}"
  if body is None:
    raise DataError(f"data.hf_name={name} has no split {split_name}")
  return body, f"{name}[{split_name}]"


def load_corpus(cfg: DataConfig, split: str, tokenizer=None) -> Corpus:
  """A text or hf split, tokenized. Training text excludes the held-out tail
  when validation comes from `valid_fraction`."""
  tokenizer = tokenizer or load_tokenizer(cfg.tokenizer)
  body, where = _raw_text(cfg, split)
  held_out = split == "train" and cfg.valid_fraction > 0 and (
      not cfg.valid_files if cfg.source == "text" else
      hf.load_split_text(cfg.hf_name, cfg.hf_config, cfg.hf_valid_split,
                         cfg.hf_text_field) is None)
  if held_out:
    body = _split_tail(body, cfg.valid_fraction)[0]
  tokens = tokenizer.encode(body)
  if len(tokens) < 2:
    raise DataError(f"{where} holds {len(tokens)} tokens; it needs at least 2")
  return Corpus(tokens, len(body.encode("utf-8")), text.word_count(body), where)


@dataclasses.dataclass
class Data:
  """What training needs from the data side."""
  train: object             # iterator of {"tokens"[, "hard"]} with state()
  valid_batches: list       # fixed validation batches, same every eval
  vocab_size: int
  tokenizer: object | None  # None for the probe
  is_probe: bool


def vocab_size_of(cfg: DataConfig) -> int:
  if cfg.source == "probe":
    return probe.probe_vocab(cfg.probe_alphabet)
  return load_tokenizer(cfg.tokenizer).vocab_size


def build_data(cfg: Config, process_index: int = 0,
               process_count: int = 1) -> Data:
  """Train iterator and fixed validation batches for a run."""
  d = cfg.data
  if d.batch_size % process_count:
    raise DataError(f"data.batch_size={d.batch_size} does not divide over "
                    f"{process_count} processes")
  shard = dict(process_index=process_index, process_count=process_count)
  if d.source == "probe":
    kw = dict(seed=cfg.seed, seq_len=d.seq_len, batch_size=d.batch_size,
              alphabet=d.probe_alphabet, hard_rate=d.probe_hard_rate, **shard)
    valid = probe.ProbeBatches(split="valid", **kw)
    return Data(probe.ProbeBatches(split="train", **kw),
                [next(valid) for _ in range(cfg.train.eval_batches)],
                probe.probe_vocab(d.probe_alphabet), None, True)
  tokenizer = load_tokenizer(d.tokenizer)
  train = load_corpus(d, "train", tokenizer)
  train_it = WindowBatches(train.tokens, seq_len=d.seq_len,
                           batch_size=d.batch_size, seed=cfg.seed,
                           where=f"the train data ({train.where})", **shard)
  valid = load_corpus(d, "valid", tokenizer)
  valid_it = WindowBatches(valid.tokens, seq_len=d.seq_len,
                           batch_size=d.batch_size, seed=cfg.seed,
                           shuffle=False,
                           where=f"the validation data ({valid.where})",
                           **shard)
  return Data(train_it, [next(valid_it) for _ in range(cfg.train.eval_batches)],
              tokenizer.vocab_size, tokenizer, False)
