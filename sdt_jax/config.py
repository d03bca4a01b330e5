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
  scan_layers: bool = True       # False: unroll the layer loop (see model/scan.py)

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
    _require(isinstance(self.scan_layers, bool),
             f"model.scan_layers={self.scan_layers!r} must be true or false")

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


# -- the run's configuration: data, optimiser, loop, mesh, checkpoints -------

SOURCES = ("probe", "text", "hf")
SCHEDULES = ("cosine", "linear", "constant")
PROGRESS = ("auto", "bar", "lines", "none")


def _positive_int(key: str, value, zero_ok: bool = False) -> None:
  low = 0 if zero_ok else 1
  _require(isinstance(value, int) and not isinstance(value, bool)
           and value >= low,
           f"{key}={value!r} must be an integer >= {low}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where tokens come from and how they are batched.

  `source`: `probe` (the built-in synthetic routing probe), `text` (local
  UTF-8 files: globs, `${VARS}` expanded) or `hf` (a Hugging Face
  `datasets` hub name or local directory). `tokenizer`: `bytes` or a path
  to a `tokenizers` tokenizer.json. `batch_size` is global (all processes).
  """
  source: str = "probe"
  tokenizer: str = "bytes"
  train_files: tuple[str, ...] = ()
  valid_files: tuple[str, ...] = ()
  test_files: tuple[str, ...] = ()
  valid_fraction: float = 0.05     # held-out tail when no valid files/split
  hf_name: str = ""
  hf_config: str = ""
  hf_text_field: str = "text"
  hf_train_split: str = "train"
  hf_valid_split: str = "validation"
  seq_len: int = 128
  batch_size: int = 16
  word_level: bool = False          # also report word-level perplexity
  probe_alphabet: int = 16          # tokens of the probe's counting stream
  probe_hard_rate: float = 0.1      # chance a position is followed by a query

  def __post_init__(self):
    _choice("data.source", self.source, SOURCES)
    _require(isinstance(self.tokenizer, str) and self.tokenizer != "",
             "data.tokenizer must be 'bytes' or a path to a tokenizer.json")
    _positive_int("data.seq_len", self.seq_len)
    _require(self.seq_len >= 2, f"data.seq_len={self.seq_len} must be >= 2")
    _positive_int("data.batch_size", self.batch_size)
    _require(0.0 <= self.valid_fraction < 1.0,
             f"data.valid_fraction={self.valid_fraction!r} must be in [0, 1)")
    _positive_int("data.probe_alphabet", self.probe_alphabet)
    _require(2 <= self.probe_alphabet <= 254,
             f"data.probe_alphabet={self.probe_alphabet} must be in [2, 254]")
    _require(0.0 < self.probe_hard_rate < 0.5,
             f"data.probe_hard_rate={self.probe_hard_rate!r} must be in "
             "(0, 0.5)")
    if self.source == "text":
      _require(bool(self.train_files),
               "data.train_files is empty; give a file, glob or list for "
               "data.source=text")
    if self.source == "hf":
      _require(bool(self.hf_name),
               "data.hf_name is empty; give a hub name or a local directory "
               "for data.source=hf")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with warmup and a decaying schedule, plus gradient clipping."""
  lr: float = 3e-3
  schedule: str = "cosine"
  warmup_steps: int = 50
  min_lr_ratio: float = 0.1        # final lr as a share of `lr`
  weight_decay: float = 0.1
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  grad_clip: float = 1.0           # global-norm clip; 0 disables it

  def __post_init__(self):
    _require(isinstance(self.lr, (int, float)) and self.lr > 0,
             f"optim.lr={self.lr!r} must be positive")
    _choice("optim.schedule", self.schedule, SCHEDULES)
    _positive_int("optim.warmup_steps", self.warmup_steps, zero_ok=True)
    _require(0.0 <= self.min_lr_ratio <= 1.0,
             f"optim.min_lr_ratio={self.min_lr_ratio!r} must be in [0, 1]")
    _require(self.weight_decay >= 0,
             f"optim.weight_decay={self.weight_decay!r} must be >= 0")
    for key in ("b1", "b2"):
      value = getattr(self, key)
      _require(0.0 <= value < 1.0, f"optim.{key}={value!r} must be in [0, 1)")
    _require(self.eps > 0, f"optim.eps={self.eps!r} must be positive")
    _require(self.grad_clip >= 0,
             f"optim.grad_clip={self.grad_clip!r} must be >= 0 (0 = off)")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Length of the run, logging and evaluation cadence."""
  steps: int = 300
  log_every: int = 25
  eval_every: int = 100            # 0: only at the end
  eval_batches: int = 4
  progress: str = "auto"           # bar on a terminal, plain lines otherwise
  tensorboard: bool = True         # event files when a writer is installed
  stop_at_step: int = 0            # save and stop here, as if preempted

  def __post_init__(self):
    _positive_int("train.steps", self.steps)
    _positive_int("train.stop_at_step", self.stop_at_step, zero_ok=True)
    _positive_int("train.log_every", self.log_every)
    _positive_int("train.eval_every", self.eval_every, zero_ok=True)
    _positive_int("train.eval_batches", self.eval_batches)
    _choice("train.progress", self.progress, PROGRESS)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh axes; -1 on one axis takes the remaining devices."""
  data: int = -1
  fsdp: int = 1
  tensor: int = 1

  def __post_init__(self):
    sizes = (self.data, self.fsdp, self.tensor)
    for key, value in zip(("data", "fsdp", "tensor"), sizes):
      _require(isinstance(value, int) and (value >= 1 or value == -1),
               f"mesh.{key}={value!r} must be a positive integer or -1")
    _require(sizes.count(-1) <= 1, "only one mesh axis may be -1")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """Orbax checkpoints under WORKDIR/checkpoints."""
  every: int = 100                 # 0: only at the end and on a signal
  keep: int = 3

  def __post_init__(self):
    _positive_int("checkpoint.every", self.every, zero_ok=True)
    _positive_int("checkpoint.keep", self.keep)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run needs; presets and key=value overrides build it."""
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  routing: RoutingConfig = dataclasses.field(default_factory=RoutingConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
  train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
  mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
  checkpoint: CheckpointConfig = dataclasses.field(
      default_factory=CheckpointConfig)
  workdir: str = "runs/tiny"
  seed: int = 0

  def __post_init__(self):
    _require(isinstance(self.workdir, str) and self.workdir != "",
             "workdir must be a non-empty path")
    _positive_int("seed", self.seed, zero_ok=True)
    check_compatible(self.model, self.routing)
    _require(self.data.seq_len <= self.model.max_seq_len,
             f"data.seq_len={self.data.seq_len} exceeds model.max_seq_len="
             f"{self.model.max_seq_len}; raise model.max_seq_len or lower "
             "data.seq_len")
