"""python -m sdt_jax.data.train_tokenizer --vocab-size N --out tokenizer.json FILE...

Trains a byte-level BPE tokenizer (Hugging Face `tokenizers`) on local text
files or globs, for use as data.tokenizer=tokenizer.json.
"""

from __future__ import annotations

import argparse
import sys

from sdt_jax.data.errors import DataError
from sdt_jax.data.text import expand, read_file


def train_bpe(paths, vocab_size: int, out: str, min_frequency: int = 2) -> int:
  """Train and save; returns the vocabulary size reached."""
  try:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
  except ImportError:
    raise DataError("training a tokenizer needs the `tokenizers` package "
                    "(pip install tokenizers)") from None
  texts = [read_file(p) for p in paths]  # checks each file: exists, UTF-8
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      special_tokens=["<|endoftext|>"], show_progress=False)
  tok.train_from_iterator(
      (line for t in texts for line in t.splitlines(keepends=True)), trainer)
  tok.save(out)
  return tok.get_vocab_size()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m sdt_jax.data.train_tokenizer",
                                   description=__doc__.split("\n\n")[1])
  parser.add_argument("files", nargs="+", help="text files or globs")
  parser.add_argument("--vocab-size", type=int, default=4096)
  parser.add_argument("--min-frequency", type=int, default=2)
  parser.add_argument("--out", required=True, help="where to write tokenizer.json")
  args = parser.parse_args(argv)
  try:
    if args.vocab_size < 257:
      raise DataError(f"--vocab-size={args.vocab_size} must be >= 257 (the 256 "
                      "byte symbols plus merges)")
    n = train_bpe(expand(args.files, "files"), args.vocab_size, args.out,
                  args.min_frequency)
  except (DataError, OSError) as e:
    print(f"train_tokenizer: error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {args.out}: {n} tokens; use data.tokenizer={args.out} "
        f"model.vocab_size={n}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
