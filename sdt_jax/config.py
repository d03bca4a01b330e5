"""Configuration dataclasses and their validation.

Every bad value raises `ConfigError` with one line that names the key, the
value and what is allowed, so a command-line user sees the fix, not a
traceback wall.
"""

from __future__ import annotations

import dataclasses
import math

POLICIES = ("mod", "depth", "dense")
GATES = ("sigmoid", "logit", "one")
PREDICTORS = ("router", "mlp")
DTYPES = ("float32", "bfloat16", "float16")
REMAT = ("none", "full", "dots")


class ConfigError(ValueError):
  """A configuration value is out of range, of the wrong type, or unknown."""


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _choice(key: str, value, allowed) -> None:
  _require(value in allowed,
           f"{key}={value!r} is unknown; choose one of {', '.join(allowed)}")


def _unit_interval(key: str, value: float) -> None:
  _require(isinstance(value, (int, float)) and 0.0 < value <= 1.0,
           f"{key}={value!r} is outside (0, 1]; use a fraction such as 0.125")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Dimensions and numerics of the transformer."""
  vocab_size: int = 256
  d_model: int = 128
  n_heads: int = 4
  n_layers: int = 4
  mlp_ratio: float = 4.0
  max_seq_len: int = 1024
  rope_theta: float = 10_000.0
  dtype: str = "float32"         # compute dtype
  param_dtype: str = "float32"   # storage dtype of the parameters
  remat: str = "none"            # none | full (recompute all) | dots (keep matmul outputs)

  def __post_init__(self):
    for key in ("vocab_size", "d_model", "n_heads", "n_layers", "max_seq_len"):
      value = getattr(self, key)
      _require(isinstance(value, int) and value > 0,
               f"model.{key}={value!r} must be a positive integer")
    _require(self.d_model % self.n_heads == 0,
             f"model.n_heads={self.n_heads} does not divide "
             f"model.d_model={self.d_model}; pick a divisor of {self.d_model}")
    _require((self.d_model // self.n_heads) % 2 == 0,
             f"model.d_model/model.n_heads={self.d_model // self.n_heads} must "
             "be even for rotary embeddings; change model.n_heads")
    _require(self.mlp_ratio > 0,
             f"model.mlp_ratio={self.mlp_ratio!r} must be positive")
    _choice("model.dtype", self.dtype, DTYPES)
    _choice("model.param_dtype", self.param_dtype, DTYPES)
    _choice("model.remat", self.remat, REMAT)

  @property
  def head_dim(self) -> int:
    return self.d_model // self.n_heads

  @property
  def d_ff(self) -> int:
    return int(self.mlp_ratio * self.d_model)


@dataclasses.dataclass(frozen=True)
class RoutingConfig:
  """Which tokens each block processes.

  `route_every` blocks form a group whose last block is routed; 0 (or
  policy `dense`) is the dense baseline. `capacity` is the fraction of a
  sequence's tokens a routed block takes (`mod`), or the deepest level of
  the linear schedule `depth` uses when `depth_schedule` is empty.
  """
  policy: str = "mod"
  route_every: int = 2
  capacity: float = 0.125
  depth_schedule: tuple[float, ...] = ()
  gate: str = "sigmoid"
  causal_predictor: str = "router"   # router logit sign, or a small MLP
  predictor_hidden: int = 64
  aux_weight: float = 0.01           # weight of the causal-router BCE loss
  noise: float = 0.0                 # std of logit noise during training
  curriculum: tuple[tuple[int, float], ...] = ()  # (step, capacity) stages

  def __post_init__(self):
    _choice("routing.policy", self.policy, POLICIES)
    _choice("routing.gate", self.gate, GATES)
    _choice("routing.causal_predictor", self.causal_predictor, PREDICTORS)
    _require(isinstance(self.route_every, int) and self.route_every >= 0,
             f"routing.route_every={self.route_every!r} must be an integer "
             ">= 0 (0 = dense)")
    _unit_interval("routing.capacity", self.capacity)
    for i, c in enumerate(self.depth_schedule):
      _unit_interval(f"routing.depth_schedule[{i}]", c)
    _require(list(self.depth_schedule) == sorted(self.depth_schedule,
                                                 reverse=True),
             f"routing.depth_schedule={list(self.depth_schedule)} must not "
             "increase with depth")
    _require(isinstance(self.predictor_hidden, int) and
             self.predictor_hidden > 0,
             f"routing.predictor_hidden={self.predictor_hidden!r} must be a "
             "positive integer")
    _require(self.aux_weight >= 0,
             f"routing.aux_weight={self.aux_weight!r} must be >= 0")
    _require(self.noise >= 0, f"routing.noise={self.noise!r} must be >= 0")
    steps = [s for s, _ in self.curriculum]
    _require(steps == sorted(steps) and len(set(steps)) == len(steps),
             f"routing.curriculum steps {steps} must be strictly increasing")
    for step, c in self.curriculum:
      _require(isinstance(step, int) and step >= 0,
               f"routing.curriculum step {step!r} must be an integer >= 0")
      _unit_interval(f"routing.curriculum capacity at step {step}", c)

  @property
  def is_dense(self) -> bool:
    return self.policy == "dense" or self.route_every == 0

  def capacity_at(self, step: int) -> float:
    """Capacity in force at a training step under the curriculum."""
    capacity = self.capacity
    for start, c in self.curriculum:
      if step >= start:
        capacity = c
    return capacity


def check_compatible(model: ModelConfig, routing: RoutingConfig) -> None:
  """Checks that need both configs."""
  if routing.is_dense:
    return
  _require(routing.route_every <= model.n_layers,
           f"routing.route_every={routing.route_every} is larger than "
           f"model.n_layers={model.n_layers}; use a value <= {model.n_layers}")
  _require(model.n_layers % routing.route_every == 0,
           f"routing.route_every={routing.route_every} does not divide "
           f"model.n_layers={model.n_layers}; use a divisor of "
           f"{model.n_layers}")
  n_routed = model.n_layers // routing.route_every
  if routing.depth_schedule:
    _require(routing.policy == "depth",
             "routing.depth_schedule is only used by routing.policy=depth; "
             "remove it or set the policy")
    _require(len(routing.depth_schedule) == n_routed,
             f"routing.depth_schedule has {len(routing.depth_schedule)} "
             f"entries but the model has {n_routed} routed blocks")


def routed_capacities(routing: RoutingConfig, n_routed: int,
                      capacity: float | None = None) -> tuple[float, ...]:
  """Capacity of each routed block, shallow to deep.

  `capacity` overrides `routing.capacity` (the curriculum uses this). For
  `depth` without an explicit schedule the capacity falls linearly from 1.0
  at the first routed block to `capacity` at the last; an explicit schedule
  is scaled so that its last entry equals an overriding capacity.
  """
  c = routing.capacity if capacity is None else capacity
  _unit_interval("capacity", c)
  if routing.policy != "depth":
    return (c,) * n_routed
  if routing.depth_schedule:
    scale = 1.0 if capacity is None else c / routing.depth_schedule[-1]
    return tuple(min(1.0, s * scale) for s in routing.depth_schedule)
  if n_routed == 1:
    return (c,)
  return tuple(1.0 - (1.0 - c) * i / (n_routed - 1) for i in range(n_routed))


def tokens_for(capacity: float, seq_len: int) -> int:
  """k = ceil(capacity * S), robust to float round-off, clamped to [1, S]."""
  return max(1, min(seq_len, math.ceil(capacity * seq_len - 1e-9)))
