"""The routing probe: synthetic sequences where most next tokens are trivial
and a known minority need computation, with per-position easy/hard labels.

Each sequence (length S, ids below `alphabet + 1`):

- position 0 holds a *key*, drawn uniformly from the alphabet;
- the rest is a counting stream, x[t+1] = (x[t] + 1) mod alphabet, which the
  embedding and output head alone predict (no block needed): easy;
- at random points (chance `hard_rate` per position) the stream is
  interrupted by the query token Q = alphabet, and the token after Q is
  (key + the token before Q) mod alphabet; counting resumes from it.
  Predicting it means attending back to position 0 and to the previous
  token, then adding: hard.

A position is labelled hard when the token that *follows* it is the hard one
(the Q positions), because the model processes the token at t to predict
t + 1. Positions followed by a Q are plain unpredictable (where queries fall
is random), not hard: no computation helps there.

Every example is a pure function of (seed, split, index): batches are the
same on every machine and after every resume.
"""

from __future__ import annotations

import numpy as np

from sdt_jax.data.counted import CountedBatches

SPLITS = {"train": 0, "valid": 1, "test": 2}


def probe_vocab(alphabet: int) -> int:
  """Ids used: the alphabet plus the query token."""
  return alphabet + 1


def probe_example(index: int, *, seed: int, split: str, seq_len: int,
                  alphabet: int, hard_rate: float
                  ) -> tuple[np.ndarray, np.ndarray]:
  """tokens [S] int32 and hard [S] bool of example `index`."""
  rng = np.random.default_rng((seed, SPLITS[split], index))
  query = alphabet
  tokens_S = np.empty(seq_len, np.int32)
  hard_S = np.zeros(seq_len, bool)
  key = int(rng.integers(alphabet))
  tokens_S[0] = key
  if seq_len > 1:
    tokens_S[1] = rng.integers(alphabet)
  draws = rng.random(seq_len)
  t = 1
  while t < seq_len - 1:
    if t + 2 < seq_len and draws[t] < hard_rate:
      tokens_S[t + 1] = query
      tokens_S[t + 2] = (key + tokens_S[t]) % alphabet
      hard_S[t + 1] = True
      t += 2
    else:
      tokens_S[t + 1] = (tokens_S[t] + 1) % alphabet
      t += 1
  return tokens_S, hard_S


class ProbeBatches(CountedBatches):
  """Endless probe batches; this process's rows of each global batch."""

  def __init__(self, *, seed: int, split: str, seq_len: int, batch_size: int,
               alphabet: int, hard_rate: float, process_index: int = 0,
               process_count: int = 1):
    super().__init__(batch_size, process_index, process_count)
    self.kw = dict(seed=seed, split=split, seq_len=seq_len, alphabet=alphabet,
                   hard_rate=hard_rate)

  def __next__(self) -> dict:
    first = self.first_row()
    rows = [probe_example(first + i, **self.kw) for i in range(self.local_batch)]
    self.batch += 1
    return {"tokens": np.stack([r[0] for r in rows]),
            "hard": np.stack([r[1] for r in rows])}
