"""python -m sdt_jax.bench: dense vs routed models side by side.

For every (batch, seq) point of a grid the dense baseline and the routed
model of the same dimensions are compiled, warmed up and then timed in
alternation (dense, routed, dense, ...), so that a noisy machine slows both
alike. Each row reports compiled and analytic FLOPs, the median wall time,
peak memory, average layers per token, tokens/s and achieved FLOP/s.

  python -m sdt_jax.bench --preset default --mode forward --json out.json

`--mode train` times one full jitted AdamW step (forward, backward, update)
with the parameters and optimizer state donated.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import jax
import optax
from flax import nnx

from sdt_jax.config import ModelConfig, RoutingConfig, routed_capacities
from sdt_jax.flops import analytic_flops, compiled_flops
from sdt_jax.model import SparseDepthTransformer, next_token_loss

MODES = ("forward", "train")


@dataclasses.dataclass(frozen=True)
class Preset:
  """A model and its routed variant; the dense baseline shares `model`."""
  model: ModelConfig
  routed: RoutingConfig
  about: str


PRESETS = {
    "default": Preset(
        ModelConfig(vocab_size=256, d_model=256, n_heads=4, n_layers=8),
        RoutingConfig(policy="mod", route_every=2, capacity=0.125),
        "d_model 256, 8 layers, 4 heads; every other block routed (mod) at "
        "capacity 0.125"),
    "seed": Preset(
        ModelConfig(vocab_size=5000, d_model=64, n_heads=2, n_layers=6),
        RoutingConfig(policy="depth", route_every=1,
                      depth_schedule=(1.0, 0.8, 0.6, 0.45, 0.35, 0.3),
                      capacity=0.3),
        "the prototype's dimensions: vocab 5000, d_model 64, 6 layers, 2 "
        "heads; depth policy, every block routed, about 3.5 layers/token"),
    "tiny": Preset(
        ModelConfig(vocab_size=64, d_model=32, n_heads=2, n_layers=2),
        RoutingConfig(policy="mod", route_every=2, capacity=0.25),
        "a smoke test: d_model 32, 2 layers"),
}
DENSE = RoutingConfig(policy="dense")


# -- the timed programs -------------------------------------------------------


@dataclasses.dataclass
class Program:
  """A compiled step, its arguments, and how to feed its outputs back."""
  compiled: Any
  args: tuple
  count_fn: Callable      # the same computation, for the FLOP counter
  next_args: Callable     # (args, outputs) -> args of the next call
  layers: Callable        # outputs -> average layers per token


def _flat(tree) -> tuple[list, Callable]:
  """Leaves of a pytree and the function that rebuilds it: the timed
  programs take flat lists, so each call's Python dispatch stays small
  (flattening an NNX state on every call is itself measurable)."""
  leaves, treedef = jax.tree.flatten(tree)
  return leaves, lambda leaves: jax.tree.unflatten(treedef, leaves)


def forward_program(model, tokens_BxS) -> Program:
  graphdef, state = nnx.split(model)
  leaves, rebuild = _flat(state)

  def forward(leaves, tokens_BxS):
    logits_BxSxV, stats = nnx.merge(graphdef, rebuild(leaves))(tokens_BxS)
    return logits_BxSxV, stats.mean_layers

  args = (leaves, tokens_BxS)
  return Program(jax.jit(forward).lower(*args).compile(), args, forward,
                 lambda args, out: args, lambda out: out[1])


def train_program(model, tokens_BxS, aux_weight: float) -> Program:
  """One AdamW step; parameters and optimizer state are donated."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(1e-3)
  params, rebuild_params = _flat(params)
  rest, rebuild_rest = _flat(rest)
  opt_state, rebuild_opt = _flat(tx.init(params))

  def loss_fn(params, tokens_BxS):
    model = nnx.merge(graphdef, rebuild_params(params), rebuild_rest(rest))
    logits_BxSxV, stats = model(tokens_BxS)
    loss = next_token_loss(logits_BxSxV, tokens_BxS)[0]
    return loss + aux_weight * stats.aux_loss, stats.mean_layers

  def step(params, opt_state, tokens_BxS):
    (loss, layers), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, tokens_BxS)
    updates, opt_state = tx.update(grads, rebuild_opt(opt_state), params)
    return (optax.apply_updates(params, updates),
            jax.tree.leaves(opt_state), loss, layers)

  args = (params, opt_state, tokens_BxS)
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(*args).compile()
  return Program(compiled, args, step,
                 lambda args, out: (out[0], out[1], args[2]),
                 lambda out: out[3])


# -- measuring ----------------------------------------------------------------


def peak_bytes(compiled) -> tuple[int, str]:
  """Peak memory of one call: device statistics where the backend keeps
  them (GPU/TPU; process-wide peak so far), else XLA's compiled memory
  analysis (arguments + outputs + temporaries, less donated aliases)."""
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "peak_bytes_in_use" in stats:
      return int(stats["peak_bytes_in_use"]), "device"
  m = compiled.memory_analysis()
  total = (m.temp_size_in_bytes + m.argument_size_in_bytes +
           m.output_size_in_bytes - m.alias_size_in_bytes)
  return int(total), "compiled"


@dataclasses.dataclass
class Runner:
  """Keeps a program's live arguments between timed calls."""
  program: Program
  times_s: list = dataclasses.field(default_factory=list)
  last: Any = None

  def call(self, timed: bool) -> None:
    p = self.program
    start = time.perf_counter()
    out = p.compiled(*p.args)
    jax.block_until_ready(out)
    if timed:
      self.times_s.append(time.perf_counter() - start)
    p.args, self.last = p.next_args(p.args, out), out


def build(preset: Preset, routing: RoutingConfig, mode: str, batch: int,
          seq: int, seed: int = 0) -> tuple[Program, float]:
  """The compiled program for one row and its compiled FLOP count."""
  cfg = dataclasses.replace(preset.model,
                            max_seq_len=max(preset.model.max_seq_len, seq))
  model = SparseDepthTransformer(cfg, routing, rngs=nnx.Rngs(seed))
  tokens_BxS = jax.random.randint(jax.random.key(seed), (batch, seq), 0,
                                  cfg.vocab_size)
  if mode == "forward":
    program = forward_program(model, tokens_BxS)
  else:
    program = train_program(model, tokens_BxS, routing.aux_weight)
  return program, compiled_flops(program.count_fn, *program.args)


def capacity_of(preset: Preset, routing: RoutingConfig) -> float:
  """The capacity a row reports: 1 for dense, the deepest routed block's
  capacity for a routed model."""
  if routing.is_dense:
    return 1.0
  n_routed = preset.model.n_layers // routing.route_every
  return routed_capacities(routing, n_routed)[-1]


def measure_point(preset: Preset, mode: str, batch: int, seq: int,
                  repeats: int) -> list[dict]:
  """Dense and routed rows for one (batch, seq), timed in alternation."""
  variants = (("dense", DENSE), ("routed", preset.routed))
  built = [build(preset, r, mode, batch, seq) for _, r in variants]
  runners = [Runner(program) for program, _ in built]
  for runner in runners:
    runner.call(timed=False)  # warm-up
  for _ in range(repeats):
    for runner in runners:
      runner.call(timed=True)
  rows = []
  for (name, routing), (program, flops), runner in zip(variants, built,
                                                       runners):
    analytic = analytic_flops(preset.model, routing, batch, seq,
                              backward=(mode == "train"))
    time_s = statistics.median(runner.times_s)
    peak, source = peak_bytes(program.compiled)
    rows.append({
        "mode": mode, "model": name, "batch": batch, "seq": seq,
        "capacity": capacity_of(preset, routing),
        "flops_compiled": flops, "flops_analytic": analytic.total,
        "time_ms": 1e3 * time_s, "time_ms_min": 1e3 * min(runner.times_s),
        "peak_bytes": peak, "peak_source": source,
        "layers_per_token": float(program.layers(runner.last)),
        "tokens_per_s": batch * seq / time_s,
        "flops_per_s": flops / time_s,
    })
  return rows


# -- reporting ----------------------------------------------------------------


def rows_table(rows: list[dict]) -> str:
  head = ("| mode | model | batch | seq | capacity | GFLOP compiled | "
          "GFLOP analytic | time ms | peak MiB | layers/token | tokens/s | "
          "GFLOP/s |")
  lines = [head, "|---|---|" + "---:|" * 10]
  for r in rows:
    lines.append(
        f"| {r['mode']} | {r['model']} | {r['batch']} | {r['seq']} | "
        f"{r['capacity']:.3g} | {r['flops_compiled'] / 1e9:.3f} | "
        f"{r['flops_analytic'] / 1e9:.3f} | {r['time_ms']:.2f} | "
        f"{r['peak_bytes'] / 2**20:.1f} | {r['layers_per_token']:.2f} | "
        f"{r['tokens_per_s']:.0f} | {r['flops_per_s'] / 1e9:.1f} |")
  return "\n".join(lines)


def pairs(rows: list[dict]) -> list[dict]:
  """Routed over dense, per (mode, batch, seq)."""
  by_key = {(r["mode"], r["batch"], r["seq"], r["model"]): r for r in rows}
  out = []
  for (mode, batch, seq, model), routed in by_key.items():
    dense = by_key.get((mode, batch, seq, "dense"))
    if model != "routed" or dense is None:
      continue
    time_ratio = routed["time_ms"] / dense["time_ms"]
    min_ratio = routed["time_ms_min"] / dense["time_ms_min"]
    flop_ratio = routed["flops_analytic"] / dense["flops_analytic"]
    out.append({
        "mode": mode, "batch": batch, "seq": seq, "time_ratio": time_ratio,
        "flop_ratio": flop_ratio, "time_over_flop": time_ratio / flop_ratio,
        "min_time_over_flop": min_ratio / flop_ratio,
        "memory_ratio": routed["peak_bytes"] / dense["peak_bytes"],
        "speedup": 1.0 / time_ratio,
    })
  return out


def pairs_table(ratios: list[dict]) -> str:
  """Routed/dense ratios; the target compares median time ratio with the
  analytic FLOP ratio (`min` shows the same from the fastest repeats, which
  a busy machine disturbs least)."""
  lines = ["| mode | batch | seq | time routed/dense | analytic FLOP "
           "routed/dense | time ratio / FLOP ratio | (same, min times) | "
           "peak memory routed/dense |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for p in ratios:
    lines.append(f"| {p['mode']} | {p['batch']} | {p['seq']} | "
                 f"{p['time_ratio']:.3f} | {p['flop_ratio']:.3f} | "
                 f"{p['time_over_flop']:.3f} | {p['min_time_over_flop']:.3f} | "
                 f"{p['memory_ratio']:.3f} |")
  return "\n".join(lines)


def machine() -> dict:
  device = jax.devices()[0]
  return {"platform": device.platform, "device": device.device_kind,
          "devices": jax.device_count(), "cpu_count": os.cpu_count(),
          "processor": platform.processor() or platform.machine(),
          "python": platform.python_version(), "jax": jax.__version__}


def plot(rows: list[dict], ratios: list[dict], path: str) -> None:
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError:
    raise SystemExit("sdt_jax.bench: --plot needs matplotlib; "
                     "pip install matplotlib (or the [viz] extra)")
  fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
  for batch in sorted({r["batch"] for r in rows}):
    for model, style in (("dense", "--"), ("routed", "-")):
      pts = sorted((r["seq"], r["time_ms"]) for r in rows
                   if r["batch"] == batch and r["model"] == model)
      if pts:
        ax_t.plot(*zip(*pts), style, marker="o", label=f"{model} B={batch}")
    pts = sorted((p["seq"], p["time_ratio"], p["flop_ratio"]) for p in ratios
                 if p["batch"] == batch)
    if pts:
      seqs, time_r, flop_r = zip(*pts)
      ax_r.plot(seqs, time_r, marker="o", label=f"time B={batch}")
      ax_r.plot(seqs, flop_r, ":", color=ax_r.lines[-1].get_color(),
                label=f"analytic FLOPs B={batch}")
  for ax in (ax_t, ax_r):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length")
    ax.legend(fontsize=7)
  ax_t.set_yscale("log")
  ax_t.set_ylabel("median time per call (ms)")
  ax_r.axhline(1.0, color="grey", lw=0.8)
  ax_r.set_ylabel("routed / dense")
  mode = rows[0]["mode"] if rows else ""
  fig.suptitle(f"sdt_jax.bench ({mode})")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


# -- command line --------------------------------------------------------------


def _positive_ints(text: str) -> list[int]:
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a comma-separated list of integers")
  if not values or any(v <= 0 for v in values):
    raise argparse.ArgumentTypeError(
        f"{text!r} must list positive integers, such as 2,8,16")
  return values



def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m sdt_jax.bench",
      description="Dense vs routed SparseDepthTransformer, side by side.")
  parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                      help="model dimensions and routing (default: default)")
  parser.add_argument("--batch", type=_positive_ints, default=[2, 8, 16],
                      help="batch sizes, comma-separated (default 2,8,16)")
  parser.add_argument("--seq", type=_positive_ints,
                      default=[20, 64, 128, 256, 512, 1024],
                      help="sequence lengths (default: the prototype's grid)")
  parser.add_argument("--mode", choices=MODES, default="forward",
                      help="forward, or train = one jitted AdamW step")
  parser.add_argument("--repeats", type=_positive_ints, default=[5],
                      metavar="N", help="timed calls per row after warm-up")
  parser.add_argument("--unroll-layers", action="store_true",
                      help="model.scan_layers=false for both models: the "
                           "layer loop unrolled instead of scanned")
  parser.add_argument("--json", metavar="PATH", help="write rows as JSON")
  parser.add_argument("--plot", metavar="PATH", help="write a PNG plot")
  args = parser.parse_args(argv)
  if len(args.repeats) != 1:
    parser.error(f"--repeats takes one positive integer, not {args.repeats}")
  args.repeats = args.repeats[0]
  return args


def run(args: argparse.Namespace) -> dict:
  from tqdm import tqdm
  preset = PRESETS[args.preset]
  if args.unroll_layers:
    preset = dataclasses.replace(
        preset, model=dataclasses.replace(preset.model, scan_layers=False))
  grid = [(b, s) for b in args.batch for s in args.seq]
  rows = []
  with tqdm(grid, desc=f"bench {args.preset} {args.mode}", unit="point",
            file=sys.stderr) as bar:
    for batch, seq in bar:
      bar.set_postfix(batch=batch, seq=seq)
      rows.extend(measure_point(preset, args.mode, batch, seq, args.repeats))
  return {
      "rows": rows,
      "ratios": pairs(rows),
      "config": {"preset": args.preset, "about": preset.about,
                 "model": dataclasses.asdict(preset.model),
                 "routing": dataclasses.asdict(preset.routed),
                 "mode": args.mode, "repeats": args.repeats,
                 "batch": args.batch, "seq": args.seq},
      "machine": machine(),
  }


def main(argv=None) -> int:
  args = parse_args(argv)
  result = run(args)
  print(f"## {args.preset} ({args.mode}): {result['config']['about']}\n")
  print(rows_table(result["rows"]) + "\n")
  print(pairs_table(result["ratios"]))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  if args.plot:
    plot(result["rows"], result["ratios"], args.plot)
  return 0


if __name__ == "__main__":
  sys.exit(main())
