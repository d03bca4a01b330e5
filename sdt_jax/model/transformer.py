"""SparseDepthTransformer: a decoder-only LM whose routed blocks process only
a learned subset of each sequence's tokens.

Blocks are stacked parameters run by `jax.lax.scan` over *groups*: a group is
`route_every` blocks whose last block is routed. Groups in a run of equal
capacity share one scan (the `depth` policy's falling schedule gives one
scan per distinct capacity, since k is a static shape). The dense baseline
is the same code with groups of one unrouted block.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import einops
import jax
import jax.numpy as jnp
from flax import nnx

from sdt_jax.config import (ModelConfig, RoutingConfig, check_compatible,
                            routed_capacities, tokens_for)
from sdt_jax.model import routing
from sdt_jax.model.layers import block_update, linear, rms_norm
from sdt_jax.model.scan import scan_layers

ROUTING_MODES = ("topk", "causal")

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
}


class ForwardStats(NamedTuple):
  """What a forward pass reports about where depth went.

  R is the number of routed blocks (0 for the dense baseline).
  """
  layers_per_token_BxS: jax.Array   # blocks that processed each token
  mean_layers: jax.Array            # average layers per token
  layer_fraction_R: jax.Array       # share of tokens each routed block took
  agreement_R: jax.Array            # causal decision == top-k membership
  selected_RxBxS: jax.Array         # which tokens each routed block took
  aux_loss: jax.Array               # causal-router BCE, mean over blocks


def _param(key, shape, std, dtype, axes):
  return nnx.Param(std * jax.random.normal(key, shape, dtype), logical_axes=axes)


def _ones(shape, dtype, axes):
  return nnx.Param(jnp.ones(shape, dtype), logical_axes=axes)


class SparseDepthTransformer(nnx.Module):

  def __init__(self, cfg: ModelConfig, route: RoutingConfig, *,
               rngs: nnx.Rngs):
    check_compatible(cfg, route)
    self.cfg, self.route = cfg, route
    L, D, H, K, F, V = (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.head_dim,
                        cfg.d_ff, cfg.vocab_size)
    dt = jnp.dtype(cfg.param_dtype)
    out_std = (2 * L) ** -0.5  # residual projections shrink with depth
    p = lambda shape, std, axes: _param(rngs.params(), shape, std, dt, axes)

    self.embed_VxD = p((V, D), 1.0, ("vocab", "embed"))
    self.attn_norm = _ones((L, D), dt, ("layers", "embed"))
    self.wq = p((L, D, H, K), D ** -0.5, ("layers", "embed", "heads", "head_dim"))
    self.wk = p((L, D, H, K), D ** -0.5, ("layers", "embed", "heads", "head_dim"))
    self.wv = p((L, D, H, K), D ** -0.5, ("layers", "embed", "heads", "head_dim"))
    self.wo = p((L, H, K, D), D ** -0.5 * out_std,
                ("layers", "heads", "head_dim", "embed"))
    self.mlp_norm = _ones((L, D), dt, ("layers", "embed"))
    self.w_up = p((L, D, F), D ** -0.5, ("layers", "embed", "mlp"))
    self.w_down = p((L, F, D), F ** -0.5 * out_std, ("layers", "mlp", "embed"))
    self.final_norm = _ones((D,), dt, ("embed",))
    self.head_DxV = p((D, V), D ** -0.5, ("embed", "vocab"))

    if route.is_dense:
      return
    G = L // route.route_every
    if route.policy == "mod":
      self.router_GxD = p((G, D), D ** -0.5, ("layers", "embed"))
    else:  # depth: one scorer on the embeddings, a threshold per routed block
      self.scorer_in_DxD = p((D, D), D ** -0.5, ("embed", "mlp"))
      self.scorer_out_D = p((D,), D ** -0.5, ("mlp",))
      self.threshold_G = nnx.Param(jnp.zeros((G,), dt), logical_axes=("layers",))
      self.log_scale_G = nnx.Param(jnp.zeros((G,), dt), logical_axes=("layers",))
    if route.causal_predictor == "mlp":
      P = route.predictor_hidden
      self.pred_in_GxDxP = p((G, D, P), D ** -0.5, ("layers", "embed", "mlp"))
      self.pred_out_GxP = p((G, P), P ** -0.5, ("layers", "mlp"))

  # -- parameters as plain arrays ---------------------------------------------

  def _blocks(self, dtype) -> dict:
    names = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_up", "w_down")
    return {n: getattr(self, n)[...].astype(dtype) for n in names}

  def _routers(self) -> dict:
    """Router arrays stacked over routed blocks, named per block (the scan
    strips the leading G axis)."""
    names = {"router_GxD": "router_D", "threshold_G": "threshold",
             "log_scale_G": "log_scale", "pred_in_GxDxP": "pred_in_DxP",
             "pred_out_GxP": "pred_out_P"}
    return {short: getattr(self, n)[...].astype(jnp.float32)
            for n, short in names.items() if hasattr(self, n)}

  @property
  def n_routed(self) -> int:
    return 0 if self.route.is_dense else self.cfg.n_layers // self.route.route_every

  # -- forward ----------------------------------------------------------------

  def __call__(self, tokens_BxS: jax.Array, *, routing_mode: str = "topk",
               capacity: float | None = None, rng: jax.Array | None = None,
               positions_BxS: jax.Array | None = None
               ) -> tuple[jax.Array, ForwardStats]:
    """Logits [B, S, V] (float32) and routing statistics.

    routing_mode: "topk" (training; not causal: top-k looks at the whole
      sequence) or "causal" (each token's decision reads only its own state).
    capacity: overrides routing.capacity (static; the curriculum uses it).
    rng: enables router noise (routing.noise > 0) in top-k mode.
    """
    if routing_mode not in ROUTING_MODES:
      raise ValueError(f"routing_mode={routing_mode!r} is unknown; choose one "
                       f"of {', '.join(ROUTING_MODES)}")
    cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
    B, S = tokens_BxS.shape
    pos_BxS = (jnp.broadcast_to(jnp.arange(S), (B, S)) if positions_BxS is None
               else positions_BxS)
    x_BxSxD = self.embed_VxD[...][tokens_BxS].astype(dtype)
    update = functools.partial(_update, theta=cfg.rope_theta)

    if self.route.is_dense:
      def dense_body(x, p):
        return x + update(p)(x, pos_BxS, None), None
      x_BxSxD, _ = scan_layers(self._remat(dense_body), x_BxSxD,
                               self._blocks(dtype), unroll=not cfg.scan_layers)
      stats = _dense_stats(B, S, cfg.n_layers)
    else:
      x_BxSxD, stats = self._routed_layers(x_BxSxD, pos_BxS, routing_mode,
                                           capacity, rng, update, dtype)

    h_BxSxD = rms_norm(x_BxSxD, self.final_norm[...])
    logits = linear(h_BxSxD, self.head_DxV[...].astype(dtype))
    return logits.astype(jnp.float32), stats

  def _remat(self, body):
    if self.cfg.remat == "none":
      return body
    return jax.checkpoint(body, policy=_REMAT_POLICIES[self.cfg.remat])

  def _routed_layers(self, x_BxSxD, pos_BxS, mode, capacity, rng, update, dtype):
    route, R = self.route, self.route.route_every
    B, S, _ = x_BxSxD.shape
    G = self.n_routed
    blocks = jax.tree.map(
        lambda a: einops.rearrange(a, "(g r) ... -> g r ...", r=R),
        self._blocks(dtype))
    routers = self._routers()
    noisy = rng is not None and route.noise > 0 and mode == "topk"

    score_BxS = None
    if route.policy == "depth":  # one score per token, from its embedding
      h = rms_norm(x_BxSxD).astype(jnp.float32)
      score_BxS = jax.nn.gelu(h @ self.scorer_in_DxD[...].astype(jnp.float32)
                              ) @ self.scorer_out_D[...].astype(jnp.float32)
    keys = jax.random.split(rng, G) if noisy else None

    body = functools.partial(
        _routed_group, R=R, mode=mode, route=route, pos_BxS=pos_BxS,
        score_BxS=score_BxS, update=update)
    ks = [tokens_for(c, S) for c in routed_capacities(route, G, capacity)]
    carry = (x_BxSxD, jnp.ones((B, S), bool))
    outs = []
    for start, stop in _runs(ks):  # one scan per run of equal k
      xs = jax.tree.map(lambda a: a[start:stop], (blocks, routers, keys))
      carry, out = scan_layers(self._remat(functools.partial(body, k=ks[start])),
                               carry, xs, unroll=not self.cfg.scan_layers)
      outs.append(out)
    sel_RxBxS, aux_R, agree_R = (jnp.concatenate(o) for o in zip(*outs))

    layers_BxS = (G * (R - 1) + jnp.sum(sel_RxBxS, axis=0)).astype(jnp.float32)
    return carry[0], ForwardStats(
        layers_per_token_BxS=layers_BxS,
        mean_layers=jnp.mean(layers_BxS),
        layer_fraction_R=jnp.mean(sel_RxBxS, axis=(1, 2), dtype=jnp.float32),
        agreement_R=agree_R,
        selected_RxBxS=sel_RxBxS,
        aux_loss=jnp.mean(aux_R))


def _update(p, *, theta):
  return lambda x, pos, key_mask: block_update(p, x, pos, key_mask, theta)


def _runs(values):
  """[(start, stop)] of the maximal runs of equal consecutive values."""
  starts = [i for i in range(len(values)) if i == 0 or values[i] != values[i - 1]]
  return list(zip(starts, starts[1:] + [len(values)]))


def _dense_stats(B, S, n_layers) -> ForwardStats:
  empty = jnp.zeros((0,), jnp.float32)
  layers = jnp.full((B, S), float(n_layers))
  return ForwardStats(layers, jnp.mean(layers), empty, empty,
                      jnp.zeros((0, B, S), bool), jnp.zeros((), jnp.float32))


def _router_logits(route, routers, x_BxSxD, score_BxS):
  """Per-token logits [B, S] of one routed block: `logit` ranks tokens for
  top-k and scales the update through the gate; `causal` is the decision
  used at inference (route iff > 0), trained by the aux loss on
  stop-gradient inputs.
  """
  h_BxSxD = rms_norm(x_BxSxD).astype(jnp.float32)
  h_sg = jax.lax.stop_gradient(h_BxSxD)
  if route.policy == "mod":
    logit = h_BxSxD @ routers["router_D"]
  else:  # depth: the embedding score, shared by every routed block
    logit = score_BxS
  if route.causal_predictor == "mlp":
    causal = jax.nn.gelu(h_sg @ routers["pred_in_DxP"]) @ routers["pred_out_P"]
  elif route.policy == "mod":
    causal = h_sg @ routers["router_D"]
  else:
    causal = (jnp.exp(routers["log_scale"]) *
              (jax.lax.stop_gradient(score_BxS) - routers["threshold"]))
  return logit, causal


def _routed_group(carry, xs, *, k, R, mode, route, pos_BxS, score_BxS, update):
  """One scan step: R-1 dense blocks, then one routed block."""
  x_BxSxD, prev_sel_BxS = carry
  blocks, routers, key = xs
  for r in range(R - 1):
    x_BxSxD = x_BxSxD + update(jax.tree.map(lambda a: a[r], blocks))(
        x_BxSxD, pos_BxS, None)
  routed_update = update(jax.tree.map(lambda a: a[R - 1], blocks))
  S = x_BxSxD.shape[1]

  logit, causal = _router_logits(route, routers, x_BxSxD, score_BxS)
  select = logit
  if key is not None:  # probabilistic gating: explore near the top-k border
    select = select + route.noise * jax.random.normal(key, select.shape)

  idx_BxK = routing.top_k_sorted(select, k)
  in_top_k_BxS = routing.membership(idx_BxK, S)
  sel_causal_BxS = causal > 0
  if route.policy == "depth":  # nested: once dropped, a token stays out
    sel_causal_BxS &= prev_sel_BxS
  g_BxS = routing.gate(logit, route.gate)
  if mode == "topk":
    x_BxSxD = routing.apply_top_k(x_BxSxD, pos_BxS, idx_BxK, g_BxS, routed_update)
    sel_BxS = in_top_k_BxS
  else:
    x_BxSxD = routing.apply_masked(x_BxSxD, pos_BxS, sel_causal_BxS, g_BxS,
                                   routed_update)
    sel_BxS = sel_causal_BxS
  aux = routing.bce_with_logits(causal, jax.lax.stop_gradient(in_top_k_BxS))
  agree = jnp.mean(sel_causal_BxS == in_top_k_BxS, dtype=jnp.float32)
  return (x_BxSxD, sel_BxS), (sel_BxS, aux, agree)
