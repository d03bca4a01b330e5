"""python -m sdt_jax.evaluate workdir=DIR [split=valid] [key=value ...]

Evaluates the newest readable checkpoint in DIR on a whole split, in causal
routing (the language-model result) and top-k routing (labelled as such).
Reports loss (nats per token), perplexity, bits per byte for text data and,
with data.word_level=true, word-level perplexity: the total NLL over the
corpus's word count (whitespace words plus one end-of-line per line, as the
published WikiText-2 numbers count them), so results compare across
tokenizers. Every token after the split's first is predicted exactly once.

Keys: workdir (required), split (valid | test | train), routing_mode
(causal | topk | both), max_batches (0 = all), batch_size (0 = the run's),
and data.* overrides (for example data.valid_files=other.txt).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys

import jax
import numpy as np
from flax import nnx

from sdt_jax import configs
from sdt_jax.checkpoint import CheckpointError, Checkpoints
from sdt_jax.config import ConfigError
from sdt_jax.data import DataError, ProbeBatches, eval_windows, load_corpus
from sdt_jax.data.tokenizers import load_tokenizer
from sdt_jax.model import SparseDepthTransformer
from sdt_jax.optim import make_optimizer
from sdt_jax.steps import (evaluate_batches, init_state, make_eval_step,
                           make_mesh, summarize)

OPTIONS = {"workdir": str, "split": str, "routing_mode": str,
           "max_batches": int, "batch_size": int}
PROBE_BATCHES = 16  # probe evaluation size when max_batches is 0


@dataclasses.dataclass
class EvalArgs:
  workdir: str = ""
  split: str = "valid"
  routing_mode: str = "both"
  max_batches: int = 0
  batch_size: int = 0
  data: tuple[str, ...] = ()


def parse_args(argv) -> EvalArgs:
  args, data = EvalArgs(), []
  for item in argv:
    key, sep, value = item.partition("=")
    if not sep:
      raise ConfigError(f"argument {item!r} is not KEY=VALUE (for example "
                        "workdir=runs/tiny)")
    if key.startswith("data."):
      data.append(item)
    elif key in OPTIONS:
      try:
        setattr(args, key, OPTIONS[key](value))
      except ValueError:
        raise ConfigError(f"{key}={value!r} must be an integer") from None
    else:
      near = difflib.get_close_matches(key, list(OPTIONS) + ["data."], n=1)
      hint = f"; did you mean {near[0]}?" if near else ""
      raise ConfigError(f"unknown key {key}{hint} (keys: "
                        f"{', '.join(OPTIONS)}, data.*)")
  if not args.workdir:
    raise ConfigError("workdir=DIR is required: the run to evaluate")
  if args.split not in ("valid", "test", "train"):
    raise ConfigError(f"split={args.split!r} is unknown; choose valid, test "
                      "or train")
  if args.routing_mode not in ("causal", "topk", "both"):
    raise ConfigError(f"routing_mode={args.routing_mode!r} is unknown; "
                      "choose causal, topk or both")
  for key in ("max_batches", "batch_size"):
    if getattr(args, key) < 0:
      raise ConfigError(f"{key}={getattr(args, key)} must be >= 0")
  args.data = tuple(data)
  return args


def load_run(workdir: str, data_overrides=()):
  """(config, graphdef, params, step) of a workdir's newest readable
  checkpoint."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise CheckpointError(f"workdir {workdir} has no checkpoints/ to evaluate")
  ckpts = Checkpoints(directory, keep=1_000_000)
  try:
    steps = ckpts.steps()
    if not steps:
      raise CheckpointError(f"workdir {workdir} has no checkpoints to evaluate")
    meta = ckpts.latest_meta()
    if meta is None:
      raise CheckpointError(f"no checkpoint in {directory} is readable")
    cfg = configs.apply_overrides(meta["config"], data_overrides)
    tx, _ = make_optimizer(cfg.optim, cfg.train.steps)
    model = nnx.eval_shape(lambda: SparseDepthTransformer(
        cfg.model, cfg.routing, rngs=nnx.Rngs(0)))
    graphdef, _ = nnx.split(model)
    abstract = jax.eval_shape(lambda: init_state(cfg, tx)[1])
    step, state, _ = ckpts.restore_latest(abstract, set_aside=False)
  finally:
    ckpts.close()
  return cfg, graphdef, state["params"], step


def evaluate(argv) -> list[dict]:
  args = parse_args(argv)
  cfg, graphdef, params, step = load_run(args.workdir, args.data)
  mesh = make_mesh(cfg.mesh)
  B = args.batch_size or cfg.data.batch_size
  S = cfg.data.seq_len
  n_bytes = n_words = None
  if cfg.data.source == "probe":
    it = ProbeBatches(seed=cfg.seed, split=args.split, seq_len=S,
                      batch_size=B, alphabet=cfg.data.probe_alphabet,
                      hard_rate=cfg.data.probe_hard_rate)
    n = args.max_batches or PROBE_BATCHES
    batches = [next(it) for _ in range(n)]
    where = f"probe[{args.split}], {n} batches"
  else:
    corpus = load_corpus(cfg.data, args.split, load_tokenizer(cfg.data.tokenizer))
    batches = [{"tokens": t, "mask": m} for t, m in
               eval_windows(corpus.tokens, S, B)]
    if args.max_batches:
      batches = batches[:args.max_batches]
    else:
      n_bytes, n_words = corpus.n_bytes, corpus.n_words
    where = corpus.where

  modes = ("causal", "topk") if args.routing_mode == "both" else (
      args.routing_mode,)
  results = []
  for mode in modes:
    total = evaluate_batches(make_eval_step(graphdef, mesh, mode), params,
                             batches, mesh)
    rec = {"step": step, "split": args.split, **summarize(total, mode),
           "tokens": int(total["count"]), "source": "evaluate"}
    if n_bytes:
      rec["bits_per_byte"] = total["nll"] / (math.log(2) * n_bytes)
    if n_words and cfg.data.word_level:
      rec["word_ppl"] = float(np.exp(min(total["nll"] / n_words, 80.0)))
      rec["words"] = n_words
    results.append(rec)
  with open(os.path.join(args.workdir, "metrics.jsonl"), "a") as f:
    for rec in results:
      f.write(json.dumps(rec) + "\n")
  for rec in results:
    extra = "".join(f"  {k} {rec[k]:.4g}" for k in
                    ("bits_per_byte", "word_ppl", "hard_share",
                     "hard_base_rate") if k in rec)
    print(f"{args.workdir} step {step} {args.split} [{rec['routing_mode']}] "
          f"({where}): loss {rec['loss']:.4f}  ppl {rec['ppl']:.3f}"
          f"  layers/tok {rec['layers_per_token']:.2f}{extra}", flush=True)
  return results


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if any(a in ("-h", "--help") for a in argv):
    print(__doc__)
    return 0
  try:
    evaluate(argv)
    return 0
  except (ConfigError, DataError, CheckpointError) as e:
    print(f"sdt_jax.evaluate: error: {e}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
  sys.exit(main())
