"""Token routing: which tokens a routed block processes, and how.

Top-k mode (training): per sequence, the k = ceil(capacity * S) tokens with
the largest selection logits, sorted ascending so the subset keeps its order.
The block runs on the gathered [B, k, D] subset only (static shapes, so the
skipped compute is really skipped) and its gated update is scattered back.
Unselected tokens are never written.

Masked mode (causal inference): each token decides from its own logit; the
block runs over the sequence with unselected tokens removed as keys and left
unchanged. The decode path makes these same decisions without the masks.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# f(x_BxKxD, pos_BxK, key_mask_BxK | None) -> residual update [B, K, D]
UpdateFn = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]


def gate(logit_BxS: jax.Array, kind: str) -> jax.Array:
  """Multiplier on a routed block's update; it puts the router on the
  gradient path (`one` is for tests: it makes routing at capacity 1 equal a
  dense block)."""
  if kind == "sigmoid":
    return jax.nn.sigmoid(logit_BxS)
  if kind == "logit":
    return logit_BxS
  return jnp.ones_like(logit_BxS)


def top_k_sorted(score_BxS: jax.Array, k: int) -> jax.Array:
  """Indices [B, k] of the k largest scores, in ascending position order."""
  _, idx_BxK = jax.lax.top_k(score_BxS, k)
  return jnp.sort(idx_BxK, axis=-1)


def membership(idx_BxK: jax.Array, seq_len: int) -> jax.Array:
  """Boolean [B, S] mask of the positions listed in idx."""
  rows_Bx1 = jnp.arange(idx_BxK.shape[0])[:, None]
  return jnp.zeros((idx_BxK.shape[0], seq_len), bool).at[rows_Bx1, idx_BxK].set(True)


def apply_top_k(x_BxSxD: jax.Array, pos_BxS: jax.Array, idx_BxK: jax.Array,
                gate_BxS: jax.Array, update: UpdateFn) -> jax.Array:
  """Gather the selected tokens, run the block on them, scatter back."""
  take = lambda a, i: jnp.take_along_axis(a, i, axis=1)
  x_BxKxD = take(x_BxSxD, idx_BxK[..., None])
  pos_BxK = take(pos_BxS, idx_BxK)
  g_BxK = take(gate_BxS, idx_BxK)
  u_BxKxD = g_BxK[..., None].astype(x_BxSxD.dtype) * update(x_BxKxD, pos_BxK, None)
  rows_Bx1 = jnp.arange(x_BxSxD.shape[0])[:, None]
  return x_BxSxD.at[rows_Bx1, idx_BxK].add(u_BxKxD.astype(x_BxSxD.dtype))


def apply_masked(x_BxSxD: jax.Array, pos_BxS: jax.Array, sel_BxS: jax.Array,
                 gate_BxS: jax.Array, update: UpdateFn) -> jax.Array:
  """Same result as `apply_top_k` for the tokens in `sel`, computed densely."""
  u_BxSxD = gate_BxS[..., None].astype(x_BxSxD.dtype) * update(x_BxSxD, pos_BxS, sel_BxS)
  return jnp.where(sel_BxS[..., None], x_BxSxD + u_BxSxD.astype(x_BxSxD.dtype), x_BxSxD)


def bce_with_logits(logit_BxS: jax.Array, target_BxS: jax.Array) -> jax.Array:
  """Mean binary cross-entropy teaching sign(logit) to predict `target`."""
  logit = logit_BxS.astype(jnp.float32)
  target = target_BxS.astype(jnp.float32)
  return jnp.mean(jnp.maximum(logit, 0) - logit * target +
                  jnp.log1p(jnp.exp(-jnp.abs(logit))))
