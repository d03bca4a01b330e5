"""FLOP counts that back every layer-savings claim.

XLA's `cost_analysis()` counts the body of a `lax.scan` (a while loop) once,
not once per trip: a model whose layers are scanned would be under-reported
by about its layer count. `compiled_flops` therefore traces the function
with every layer scan unrolled (`unrolled_layer_scans`) before compiling it
for counting. The program that runs keeps its scans; only the counting copy
is unrolled.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from sdt_jax.model.scan import unrolled_layer_scans


def compiled_flops(fn: Callable[..., Any], *args, **kwargs) -> float:
  """FLOPs of `fn(*args, **kwargs)` as compiled by XLA, all layers counted.

  Under sharding XLA reports the per-device program's count.
  """
  with unrolled_layer_scans():
    # A fresh wrapper, so no trace cached outside this context is reused.
    compiled = jax.jit(lambda *a: fn(*a, **kwargs)).lower(*args).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
    cost = cost[0]
  return float(cost["flops"])
