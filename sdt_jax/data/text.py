"""Local text files: globs or lists, `${VARS}` expanded, read as strict UTF-8.

Files are joined in the order given (each glob sorted), byte for byte, so
split parts of one file (WikiText-2's train.part1..3) rejoin exactly.
"""

from __future__ import annotations

import glob
import os
from typing import Sequence

from sdt_jax.data.errors import DataError


def expand(patterns: Sequence[str], key: str) -> list[str]:
  """Paths named by `patterns`, in order; a DataError if any names nothing."""
  paths = []
  for pattern in patterns:
    path = os.path.expanduser(os.path.expandvars(pattern))
    if "$" in path:
      var = path[path.index("$"):].split("/")[0]
      raise DataError(f"{key}: {pattern!r} uses {var}, which is not set in the "
                      "environment")
    if glob.has_magic(path):
      found = sorted(glob.glob(path))
      if not found:
        raise DataError(f"{key}: no file matches {pattern!r}")
      paths += found
    else:
      paths.append(path)
  return paths


def read_file(path: str) -> str:
  """The text of one file; a one-line DataError if it cannot be used."""
  if os.path.isdir(path):
    raise DataError(f"data file {path} is a directory, not a text file")
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise DataError(f"data file {path} does not exist") from None
  except OSError as e:
    raise DataError(f"data file {path} cannot be read ({e.strerror})") from None
  if not raw:
    raise DataError(f"data file {path} is empty")
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"data file {path} is not UTF-8 text (byte "
                    f"0x{raw[e.start]:02x} at offset {e.start})") from None


def read_files(patterns: Sequence[str], key: str) -> tuple[str, list[str]]:
  """All files joined, and the list of paths read."""
  paths = expand(patterns, key)
  if not paths:
    raise DataError(f"{key} names no files")
  return "".join(read_file(p) for p in paths), paths


def word_count(text: str) -> int:
  """Words as WikiText-2's published numbers count them: whitespace tokens
  plus one end-of-line token per line."""
  return sum(len(line.split()) + 1 for line in text.splitlines())
