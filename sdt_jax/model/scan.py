"""`jax.lax.scan` over layers, with a switch to unroll it for FLOP counting.

XLA's cost analysis counts a while-loop body once, not once per trip, so a
scanned model's raw compiled FLOPs are short by about the number of layers.
`sdt_jax.flops` traces the model inside `unrolled_layer_scans()` so that
every layer appears in the compiled program and is counted.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax

_UNROLL = contextvars.ContextVar("sdt_jax_unroll_layer_scans", default=False)


@contextlib.contextmanager
def unrolled_layer_scans():
  """Within this context, newly traced layer scans are fully unrolled."""
  token = _UNROLL.set(True)
  try:
    yield
  finally:
    _UNROLL.reset(token)


def scan_layers(body, carry, xs):
  return jax.lax.scan(body, carry, xs, unroll=True if _UNROLL.get() else 1)
