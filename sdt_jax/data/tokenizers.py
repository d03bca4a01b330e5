"""Tokenizers: raw UTF-8 bytes (built in) or a Hugging Face `tokenizers`
tokenizer.json on disk. Both turn text into a flat int32 array of ids."""

from __future__ import annotations

import os

import numpy as np

from sdt_jax.data.errors import DataError


class ByteTokenizer:
  """Each UTF-8 byte is a token: 256 ids, no files needed."""
  name = "bytes"
  vocab_size = 256
  byte_level = True

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)

  def decode(self, ids) -> str:
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode(
        "utf-8", errors="replace")


class HFTokenizer:
  """A `tokenizers` tokenizer.json (BPE, WordPiece, ...)."""
  byte_level = False

  def __init__(self, path: str):
    try:
      from tokenizers import Tokenizer
    except ImportError:
      raise DataError(f"data.tokenizer={path}: the `tokenizers` package is "
                      "not installed (pip install tokenizers)") from None
    if not os.path.isfile(path):
      raise DataError(f"data.tokenizer={path}: no such file (give 'bytes' or "
                      "a tokenizer.json)")
    try:
      self._tok = Tokenizer.from_file(path)
    except Exception as e:  # the Rust side raises plain Exceptions
      raise DataError(f"data.tokenizer={path}: not a tokenizer.json "
                      f"({str(e).splitlines()[0][:120]})") from None
    self.name = path
    self.vocab_size = self._tok.get_vocab_size()

  def encode(self, text: str) -> np.ndarray:
    # Line by line keeps memory flat and lets the Rust side use its threads.
    lines = text.splitlines(keepends=True)
    ids = [np.asarray(e.ids, np.int32)
           for e in self._tok.encode_batch(lines, add_special_tokens=False)]
    return np.concatenate(ids) if ids else np.zeros((0,), np.int32)

  def decode(self, ids) -> str:
    return self._tok.decode([int(i) for i in ids])


def load_tokenizer(spec: str):
  """`bytes` or a path to a tokenizer.json."""
  if spec == "bytes":
    return ByteTokenizer()
  return HFTokenizer(os.path.expanduser(os.path.expandvars(spec)))
