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


def scan_layers(body, carry, xs, *, unroll: bool = False):
  """`jax.lax.scan(body, carry, xs)`; a scan of one trip is a plain call.

  `unroll=True` (`model.scan_layers=false`) unrolls the loop: a longer
  compile, but no stacking of per-layer residuals into loop buffers, which
  took 15-20% of a CPU training step at bench sizes (README, benchmarks).

  A one-trip loop still costs a while loop (carry copies, a loop test) and
  the `depth` policy makes one scan per distinct capacity, often of one
  block each: at small shapes that overhead was a visible part of a step.
  """
  if _length(xs) == 1:
    carry, ys = body(carry, jax.tree.map(lambda a: a[0], xs))
    return carry, jax.tree.map(lambda a: a[None], ys)
  return jax.lax.scan(body, carry, xs, unroll=True if unroll or _UNROLL.get() else 1)


def _length(xs) -> int | None:
  leaves = jax.tree.leaves(xs)
  return leaves[0].shape[0] if leaves else None
