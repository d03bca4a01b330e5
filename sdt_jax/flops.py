"""FLOP counts that back every layer-savings claim.

Two counts that check each other:

- `analytic_flops`: what the model computes, from its configuration. Every
  matmul costs 2*m*n*k (attention scores and values included, the output
  head included; the embedding lookup is a gather and costs nothing). The
  elementwise work XLA also counts (norms, rotary, softmax, GELU, residual
  adds, gates) is estimated per element and reported apart as `pointwise`.
  Not counted: top-k, sort, gathers and scatters (data movement and
  comparisons, not arithmetic), the loss and the optimizer update.
- `compiled_flops`: XLA's own count of the compiled program.

XLA's `cost_analysis()` counts the body of a `lax.scan` (a while loop) once,
not once per trip: a model whose layers are scanned would be under-reported
by about its layer count (`raw_compiled_flops` shows this). `compiled_flops`
therefore traces the function with every layer scan unrolled
(`unrolled_layer_scans`) before compiling it for counting. The program that
runs keeps its scans; only the counting copy is unrolled.

Under sharding, XLA compiles one program per device and its cost analysis
describes that program: compiled counts are per device. Analytic counts are
global (the whole batch).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from sdt_jax.config import (ModelConfig, RoutingConfig, check_compatible,
                            routed_capacities, tokens_for)
from sdt_jax.model.scan import unrolled_layer_scans

# Elementwise FLOPs per element, as XLA's cost analysis counts these ops
# (measured once on the ops in sdt_jax/model/layers.py; transcendentals such
# as exp, tanh, rsqrt and cos are counted apart by XLA and left out here).
_NORM = 4.0      # square, mean, rsqrt-multiply, scale (3 without a scale)
_ROPE = 3.25     # two multiplies and an add per output, plus the phases
_GELU = 8.0      # tanh approximation
_SOFTMAX = 7.0   # scale, mask select, max, subtract, sum, divide; mask build
# Forward + backward elementwise work relative to the forward's (measured:
# the backward of norms, softmax and GELU costs about three forwards).
_BACKWARD_POINTWISE = 4.0


@dataclasses.dataclass(frozen=True)
class LayerFlops:
  """FLOPs of one part of the model, summed over the batch."""
  name: str        # "embed", "block 0", "block 1 (routed)", "scorer", "head"
  tokens: int      # tokens per sequence the part processes
  matmul: float
  pointwise: float

  @property
  def total(self) -> float:
    return self.matmul + self.pointwise


@dataclasses.dataclass(frozen=True)
class FlopCount:
  """Analytic FLOPs of one forward (or forward + backward) pass."""
  layers: tuple[LayerFlops, ...]
  backward: bool

  @property
  def matmul(self) -> float:
    return sum(l.matmul for l in self.layers)

  @property
  def pointwise(self) -> float:
    return sum(l.pointwise for l in self.layers)

  @property
  def total(self) -> float:
    return self.matmul + self.pointwise

  def table(self) -> str:
    """The per-layer breakdown as a Markdown table."""
    lines = ["| part | tokens/seq | matmul GFLOP | pointwise GFLOP |",
             "|---|---:|---:|---:|"]
    for l in self.layers:
      lines.append(f"| {l.name} | {l.tokens} | {l.matmul / 1e9:.4f} | "
                   f"{l.pointwise / 1e9:.4f} |")
    lines.append(f"| total | | {self.matmul / 1e9:.4f} | "
                 f"{self.pointwise / 1e9:.4f} |")
    return "\n".join(lines)


def block_flops(cfg: ModelConfig, n: int) -> tuple[float, float]:
  """(matmul, pointwise) FLOPs of one block on n tokens of one sequence.

  Attention is computed over the full n x n square (the causal mask is a
  select, not a saving).
  """
  D, H, K, F = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.d_ff
  matmul = (2 * n * D * 3 * H * K      # q, k, v projections
            + 2 * n * n * H * K        # scores q.k
            + 2 * n * n * H * K        # probs.v
            + 2 * n * H * K * D        # output projection
            + 2 * 2 * n * D * F)       # MLP up and down
  pointwise = n * (2 * _NORM * D         # two RMSNorms
                   + 2 * _ROPE * H * K   # rotary on q and k
                   + _SOFTMAX * H * n    # softmax over n keys per head
                   + _GELU * F           # MLP activation
                   + 3 * D)              # x + attn, attn + mlp, residual add
  return float(matmul), float(pointwise)


def _router_flops(cfg: ModelConfig, routing: RoutingConfig, S: int, k: int,
                  backward: bool) -> tuple[float, float]:
  """Extra (matmul, pointwise) FLOPs of routing one block, per sequence."""
  D = cfg.d_model
  matmul = 0.0
  pointwise = k * D + 16.0 * S   # the gate multiply; gate, BCE, agreement
  if routing.policy == "mod":
    # The selection logit and the stop-gradient causal logit are one
    # product in the forward pass; backward adds both operand gradients of
    # the first and the weight gradient of the second.
    matmul += 2 * S * D * (4 if backward else 1)
    pointwise += 2 * (_NORM - 1) * D * S  # two unscaled RMSNorms
  if routing.causal_predictor == "mlp":
    P = routing.predictor_hidden
    fwd = 2 * S * D * P + 2 * S * P
    matmul += fwd * (2 if backward else 1)  # stop-gradient input: weights only
    pointwise += _GELU * S * P
  return matmul, pointwise


def _scorer_flops(cfg: ModelConfig, S: int, backward: bool) -> LayerFlops:
  """The `depth` policy's scorer MLP, run once on the embeddings."""
  D = cfg.d_model
  matmul = (2 * S * D * D + 2 * S * D) * (3 if backward else 1)
  pointwise = (_NORM - 1 + _GELU) * S * D
  return LayerFlops("scorer", S, matmul,
                    pointwise * (_BACKWARD_POINTWISE if backward else 1.0))


def analytic_flops(model_cfg: ModelConfig, routing_cfg: RoutingConfig,
                   batch: int, seq: int, *, capacity: float | None = None,
                   backward: bool = False) -> FlopCount:
  """FLOPs of a top-k-mode forward pass (or forward + backward) of a batch.

  `capacity` overrides `routing_cfg.capacity` as in the model's forward.
  Backward is counted as twice the forward matmuls (one product for each
  operand's gradient); with `model.remat=full` the blocks' forward is
  counted once more for the recomputation. The backward pointwise count is
  an estimate (three times the forward's, `_BACKWARD_POINTWISE`).
  """
  check_compatible(model_cfg, routing_cfg)
  cfg, S = model_cfg, seq
  mult = 3.0 if backward else 1.0
  pmult = _BACKWARD_POINTWISE if backward else 1.0
  if backward and cfg.remat == "full":
    mult, pmult = mult + 1.0, pmult + 1.0
  if routing_cfg.is_dense:
    routed_every, ks = 0, []
  else:
    routed_every = routing_cfg.route_every
    n_routed = cfg.n_layers // routed_every
    ks = [tokens_for(c, S) for c in
          routed_capacities(routing_cfg, n_routed, capacity)]

  parts = [LayerFlops("embed", S, 0.0, 0.0)]
  if not routing_cfg.is_dense and routing_cfg.policy == "depth":
    parts.append(_scorer_flops(cfg, S, backward))
  for layer in range(cfg.n_layers):
    routed = routed_every and (layer + 1) % routed_every == 0
    n = ks[layer // routed_every] if routed else S
    matmul, pointwise = block_flops(cfg, n)
    matmul, pointwise = matmul * mult, pointwise * pmult
    name = f"block {layer}"
    if routed:
      r_matmul, r_pointwise = _router_flops(cfg, routing_cfg, S, n, backward)
      matmul += r_matmul
      pointwise += r_pointwise * pmult
      name += f" (routed, k={n})"
    parts.append(LayerFlops(name, n, matmul, pointwise))
  D, V = cfg.d_model, cfg.vocab_size
  parts.append(LayerFlops("head", S, 2.0 * S * D * V * (3 if backward else 1),
                          _NORM * S * D * pmult))
  scaled = tuple(dataclasses.replace(p, matmul=p.matmul * batch,
                                     pointwise=p.pointwise * batch)
                 for p in parts)
  return FlopCount(scaled, backward)


def _cost_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
    cost = cost[0]
  return float(cost.get("flops", 0.0))


def compiled_flops(fn: Callable[..., Any], *args, **kwargs) -> float:
  """FLOPs of `fn(*args, **kwargs)` as compiled by XLA, all layers counted.

  Under sharding XLA reports the per-device program's count.
  """
  with unrolled_layer_scans():
    # A fresh wrapper, so no trace cached outside this context is reused.
    compiled = jax.jit(lambda *a: fn(*a, **kwargs)).lower(*args).compile()
  return _cost_flops(compiled)


def raw_compiled_flops(fn: Callable[..., Any], *args, **kwargs) -> float:
  """XLA's count of `fn` as it runs, layer scans kept: each scan body is
  counted once, so a scanned model is under-reported (for comparison)."""
  compiled = jax.jit(lambda *a: fn(*a, **kwargs)).lower(*args).compile()
  return _cost_flops(compiled)
