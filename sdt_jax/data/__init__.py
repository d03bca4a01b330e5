"""Data: tokenizers, sources (routing probe, local text, HF datasets) and
the deterministic, resumable batch pipeline."""

from sdt_jax.data.errors import DataError
from sdt_jax.data.pipeline import (Corpus, Data, WindowBatches, build_data,
                                   eval_windows, load_corpus, vocab_size_of)
from sdt_jax.data.probe import ProbeBatches, probe_example, probe_vocab
from sdt_jax.data.tokenizers import ByteTokenizer, HFTokenizer, load_tokenizer

__all__ = ["ByteTokenizer", "Corpus", "Data", "DataError", "HFTokenizer",
           "ProbeBatches", "WindowBatches", "build_data", "eval_windows",
           "load_corpus", "load_tokenizer", "probe_example", "probe_vocab",
           "vocab_size_of"]
