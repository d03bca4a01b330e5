"""The jitted programs of a run: the training step and the evaluation step,
with the mesh they run on.

State is a plain pytree, `{"params", "opt_state", "step", "bad_step"}`, so
Orbax saves it as is; the model is rebuilt inside each step from its
`nnx.split` graph definition. A non-finite loss (or update) leaves parameters and
optimiser state untouched and records the step in `bad_step` (the loop then
stops), so the last good state is never overwritten.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from sdt_jax.config import Config, ConfigError, MeshConfig
from sdt_jax.model import SparseDepthTransformer, next_token_loss

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
  """A (data, fsdp, tensor) mesh with Auto axes; -1 takes the rest."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [cfg.data, cfg.fsdp, cfg.tensor]
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ConfigError(f"mesh: {len(devices)} devices do not divide by the "
                        f"fixed axes' product {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ConfigError(f"mesh data*fsdp*tensor = {int(np.prod(sizes))} but "
                      f"there are {len(devices)} devices")
  return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES,
              axis_types=(AxisType.Auto,) * 3)


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
  """(replicated, batch-sharded); full parameter sharding is a later step."""
  return NamedSharding(mesh, P()), NamedSharding(mesh, P(BATCH_AXES))


def init_state(cfg: Config, tx) -> tuple[nnx.GraphDef, dict]:
  model = SparseDepthTransformer(cfg.model, cfg.routing,
                                 rngs=nnx.Rngs(cfg.seed))
  graphdef, params = nnx.split(model)
  params = nnx.to_pure_dict(params)
  return graphdef, {"params": params, "opt_state": tx.init(params),
                    "step": jnp.zeros((), jnp.int32),
                    "bad_step": jnp.full((), -1, jnp.int32)}


def loss_fn(params, graphdef, tokens_BxS, *, aux_weight, capacity, rng):
  model = nnx.merge(graphdef, params)
  logits, stats = model(tokens_BxS, routing_mode="topk", capacity=capacity,
                        rng=rng)
  lm, _ = next_token_loss(logits, tokens_BxS)
  return lm + aux_weight * stats.aux_loss, (lm, stats)


def train_step(state, tokens_BxS, *, graphdef, tx, schedule, cfg: Config,
               capacity: float):
  """One AdamW update on the top-k (training) routing."""
  step = state["step"]
  rng = (jax.random.fold_in(jax.random.key(cfg.seed), step)
         if cfg.routing.noise > 0 else None)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (total, (lm, stats)), grads = grad_fn(
      state["params"], graphdef, tokens_BxS, aux_weight=cfg.routing.aux_weight,
      capacity=capacity, rng=rng)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  finite = jnp.isfinite(total) & jnp.all(jnp.stack(
      [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(params)]))
  ok = finite & (state["bad_step"] < 0)
  keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b),
                                       new, old)
  new_state = {
      "params": keep(params, state["params"]),
      "opt_state": keep(opt_state, state["opt_state"]),
      "step": step + 1,
      "bad_step": jnp.where((state["bad_step"] < 0) & ~finite,
                            step + 1, state["bad_step"]),
  }
  metrics = {"loss": lm, "aux_loss": stats.aux_loss,
             "grad_norm": optax.tree.norm(grads), "lr": schedule(step),
             "layers_per_token": stats.mean_layers,
             "capacity_use": stats.layer_fraction_R,
             "agreement": stats.agreement_R}
  return new_state, metrics


def make_train_step(cfg: Config, graphdef, tx, schedule, mesh: Mesh,
                    capacity: float):
  """The jitted step for one capacity (the curriculum compiles one per
  stage); state is donated."""
  replicated, batch = shardings(mesh)
  fn = functools.partial(train_step, graphdef=graphdef, tx=tx,
                         schedule=schedule, cfg=cfg, capacity=capacity)
  return jax.jit(fn, donate_argnums=0, in_shardings=(replicated, batch),
                 out_shardings=(replicated, replicated))


def eval_sums(params, tokens_BxS, mask_BxS, hard_BxS, *, graphdef,
              routing_mode: str):
  """Summed NLL, target count, layers used and probe routing counts of one
  batch. Masks mark target positions; `hard` marks probe hard positions."""
  model = nnx.merge(graphdef, params)
  logits, stats = model(tokens_BxS, routing_mode=routing_mode)
  _, (nll, count) = next_token_loss(logits, tokens_BxS, mask_BxS)
  # Positions that are processed to predict a counted target.
  src_BxS = jnp.concatenate([mask_BxS[:, 1:], jnp.zeros_like(mask_BxS[:, :1])],
                            axis=1)
  w = src_BxS.astype(jnp.float32)
  sel = stats.selected_RxBxS.astype(jnp.float32) * w
  return {"nll": nll, "count": count,
          "layers": jnp.sum(stats.layers_per_token_BxS * w),
          "positions": jnp.sum(w),
          "routed": jnp.sum(sel),
          "routed_hard": jnp.sum(sel * hard_BxS),
          "hard": jnp.sum(hard_BxS * w)}


def make_eval_step(graphdef, mesh: Mesh, routing_mode: str):
  replicated, batch = shardings(mesh)
  fn = functools.partial(eval_sums, graphdef=graphdef,
                         routing_mode=routing_mode)
  return jax.jit(fn, in_shardings=(replicated, batch, batch, batch),
                 out_shardings=replicated)


def summarize(sums: dict, routing_mode: str) -> dict:
  """Loss, perplexity, layers per token and (probe) hard share from sums."""
  loss = sums["nll"] / max(sums["count"], 1.0)
  out = {"routing_mode": routing_mode, "loss": loss,
         "ppl": float(np.exp(min(loss, 80.0))),
         "layers_per_token": sums["layers"] / max(sums["positions"], 1.0)}
  if sums["hard"] > 0:
    out["hard_share"] = sums["routed_hard"] / max(sums["routed"], 1.0)
    out["hard_base_rate"] = sums["hard"] / max(sums["positions"], 1.0)
  return out


def evaluate_batches(eval_step, params, batches, mesh: Mesh) -> dict:
  """Summed eval statistics over batches of {"tokens", optional "mask" of
  counted targets (default all), optional probe "hard" labels}."""
  _, batch_sh = shardings(mesh)
  put = lambda x: jax.make_array_from_process_local_data(batch_sh, x)
  total = None
  for b in batches:
    tok = b["tokens"]
    mask = b.get("mask", np.ones_like(tok, bool))
    hard = b.get("hard", np.zeros_like(tok, bool))
    sums = jax.device_get(eval_step(params, put(tok), put(mask), put(hard)))
    total = sums if total is None else {k: total[k] + sums[k] for k in sums}
  return {k: float(v) for k, v in total.items()}
