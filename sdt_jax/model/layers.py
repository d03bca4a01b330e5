"""The transformer block as pure functions of one layer's parameters.

Shapes are carried in names: B batch, S tokens (the full sequence or a routed
subset of it), D model width, H heads, K head width, F MLP width.
Positions are always the tokens' *original* positions, so a gathered
sub-sequence gets the right causal mask and rotary phases.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_NEG_INF = -1e30  # finite, so a fully masked row cannot produce NaN


def rms_norm(x_BxSxD: jax.Array, scale_D: jax.Array | None = None,
             eps: float = 1e-6) -> jax.Array:
  x32 = x_BxSxD.astype(jnp.float32)
  y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  if scale_D is not None:
    y = y * scale_D.astype(jnp.float32)
  return y.astype(x_BxSxD.dtype)


def rope(x_BxSxHxK: jax.Array, pos_BxS: jax.Array,
         theta: float = 10_000.0) -> jax.Array:
  """Rotary embedding (rotate-half form) at the given integer positions."""
  half = x_BxSxHxK.shape[-1] // 2
  freq_K2 = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle_BxSx1xK2 = (pos_BxS.astype(jnp.float32)[..., None] * freq_K2)[:, :, None]
  cos, sin = jnp.cos(angle_BxSx1xK2), jnp.sin(angle_BxSx1xK2)
  x1, x2 = jnp.split(x_BxSxHxK.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x_BxSxHxK.dtype)


def attention_mask(pos_BxS: jax.Array,
                   key_mask_BxS: jax.Array | None = None) -> jax.Array:
  """[B, Sq, Sk] True where query q may attend to key k.

  Causality comes from positions. `key_mask` removes keys (tokens that a
  routed block does not process have no keys there); a token always sees
  itself so no row is empty.
  """
  q_Bx1xS, k_BxSx1 = pos_BxS[:, :, None], pos_BxS[:, None, :]
  allowed = q_Bx1xS >= k_BxSx1
  if key_mask_BxS is not None:
    allowed &= key_mask_BxS[:, None, :] | (q_Bx1xS == k_BxSx1)
  return allowed


def linear(x: jax.Array, w: jax.Array, n_in: int = 1) -> jax.Array:
  """Contract the last `n_in` axes of x with the first `n_in` axes of w.

  Computed as one 2-D matmul over the flattened tokens, the same product as
  the equivalent einsum. Its autodiff transpose is then also a plain 2-D
  matmul: an einsum such as "bsd,df->bsf" has a weight gradient that
  contracts two axes (b and s), which XLA on CPU lowers with a strided
  transposing copy of the [B, S, F] cotangent (measured: that copy took
  40% of a training step).
  """
  in_shape, out_shape = x.shape[-n_in:], w.shape[n_in:]
  assert w.shape[:n_in] == in_shape, (x.shape, w.shape)
  size_in = math.prod(in_shape)
  y_NxO = x.reshape(-1, size_in) @ w.reshape(size_in, -1)
  return y_NxO.reshape(x.shape[:-n_in] + out_shape)


def attention(p: dict, h_BxSxD: jax.Array, pos_BxS: jax.Array,
              mask_BxSxS: jax.Array, theta: float) -> jax.Array:
  q = rope(linear(h_BxSxD, p["wq"]), pos_BxS, theta)
  k = rope(linear(h_BxSxD, p["wk"]), pos_BxS, theta)
  v = linear(h_BxSxD, p["wv"])
  scores_BxHxSxS = jnp.einsum("bqhk,bshk->bhqs", q, k).astype(jnp.float32)
  scores_BxHxSxS *= q.shape[-1] ** -0.5
  scores_BxHxSxS = jnp.where(mask_BxSxS[:, None], scores_BxHxSxS, _NEG_INF)
  probs = jax.nn.softmax(scores_BxHxSxS, axis=-1).astype(v.dtype)
  o_BxSxHxK = jnp.einsum("bhqs,bshk->bqhk", probs, v)
  return linear(o_BxSxHxK, p["wo"], n_in=2)


def mlp(p: dict, h_BxSxD: jax.Array) -> jax.Array:
  u_BxSxF = jax.nn.gelu(linear(h_BxSxD, p["w_up"]))
  return linear(u_BxSxF, p["w_down"])


def block_update(p: dict, x_BxSxD: jax.Array, pos_BxS: jax.Array,
                 key_mask_BxS: jax.Array | None = None,
                 theta: float = 10_000.0) -> jax.Array:
  """The residual update f(x) of a pre-norm block: block(x) = x + f(x)."""
  mask = attention_mask(pos_BxS, key_mask_BxS)
  a_BxSxD = attention(p, rms_norm(x_BxSxD, p["attn_norm"]), pos_BxS, mask,
                      theta)
  m_BxSxD = mlp(p, rms_norm(x_BxSxD + a_BxSxD, p["mlp_norm"]))
  return a_BxSxD + m_BxSxD
