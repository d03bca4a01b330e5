"""Where a bench step spends its time: per-HLO-op totals from a JAX trace.

  python experiments/profile_step.py --preset default --mode train \
      --batch 8 --seq 256 --top 25

Builds the same programs as `python -m sdt_jax.bench`, runs each a few
times under `jax.profiler.trace`, and sums the host-side XLA op events by
name, so dense and routed programs can be compared op by op.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import tempfile

import jax
from jax.profiler import ProfileData

from sdt_jax import bench


def op_times(program, calls: int) -> collections.Counter:
  """Total milliseconds per traced event name over `calls` calls."""
  runner = bench.Runner(program)
  runner.call(timed=False)
  with tempfile.TemporaryDirectory() as log_dir:
    with jax.profiler.trace(log_dir):
      for _ in range(calls):
        runner.call(timed=True)
    path, = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"),
                      recursive=True)
    profile = ProfileData.from_file(path)
  totals = collections.Counter()
  for plane in profile.planes:
    for line in plane.lines:
      for event in line.events:
        totals[event.name] += event.duration_ns / 1e6 / calls
  return totals


_INSTR = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name="([^"]*)"')


def op_labels(compiled) -> dict[str, str]:
  """HLO instruction name -> a short label from its JAX op_name."""
  labels = {}
  for line in compiled.as_text().splitlines():
    match = _INSTR.match(line)
    if match:
      name, op_name = match.groups()
      parts = [p for p in op_name.split("/") if p]
      backward = "transpose(" in op_name
      labels[name] = ("bwd " if backward else "fwd ") + "/".join(parts[-2:])
  return labels


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--preset", default="default", choices=bench.PRESETS)
  parser.add_argument("--mode", default="train", choices=bench.MODES)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=256)
  parser.add_argument("--calls", type=int, default=2)
  parser.add_argument("--top", type=int, default=25)
  parser.add_argument("--capacity", type=float, default=None,
                      help="override the routed model's capacity (1.0 "
                      "isolates the routing overhead at equal FLOPs)")
  args = parser.parse_args()
  preset = bench.PRESETS[args.preset]
  routed = preset.routed
  if args.capacity is not None:
    routed = dataclasses.replace(routed, capacity=args.capacity)
  for name, routing in (("dense", bench.DENSE), ("routed", routed)):
    program, _ = bench.build(preset, routing, args.mode, args.batch, args.seq)
    totals = op_times(program, args.calls)
    labels = op_labels(program.compiled)
    by_label = collections.Counter()
    for op, ms in totals.items():
      if op in labels:
        by_label[labels[op]] += ms
    step = max(totals.values())
    print(f"\n## {name}: {step:.1f} ms per call, {sum(by_label.values()):.1f}"
          " ms in labelled XLA ops; by op, then by JAX op name")
    for op, ms in totals.most_common(args.top):
      print(f"{ms:10.2f} ms  {op[:60]:60s} {labels.get(op, '')[:60]}")
    print()
    unlabelled = {op: ms for op, ms in totals.items()
                  if op not in labels and not op.startswith(("$", "Thunk"))}
    for op, ms in collections.Counter(unlabelled).most_common(5):
      print(f"{ms:10.2f} ms  {op[:60]:60s} (no JAX op name)")
    for label, ms in by_label.most_common(args.top):
      print(f"{ms:10.2f} ms  {label[:110]}")


if __name__ == "__main__":
  main()
