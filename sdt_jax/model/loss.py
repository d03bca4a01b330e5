"""Next-token cross-entropy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def next_token_loss(logits_BxSxV: jax.Array, tokens_BxS: jax.Array,
                    mask_BxS: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Mean and summed NLL (nats) of tokens[:, 1:] given logits[:, :-1].

  mask_BxS, if given, weights each *target* position (1 = counted).
  Returns (mean_nll, (sum_nll, n_targets)).
  """
  nll_BxS = optax.softmax_cross_entropy_with_integer_labels(
      logits_BxSxV[:, :-1].astype(jnp.float32), tokens_BxS[:, 1:])
  w_BxS = (jnp.ones_like(nll_BxS) if mask_BxS is None
           else mask_BxS[:, 1:].astype(jnp.float32))
  total, count = jnp.sum(nll_BxS * w_BxS), jnp.sum(w_BxS)
  return total / jnp.maximum(count, 1.0), (total, count)
