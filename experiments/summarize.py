"""Check bench results (JSON from `python -m sdt_jax.bench --json`) against
the speed targets of the compute-accounting issue, as Markdown.

  python experiments/summarize.py experiments/results/default_*.json

Targets: with seq >= 256, routed/dense time within 1.10x of the analytic
FLOP ratio (forward and train); routed never slower than dense on the grid;
the train step's peak memory lower than dense.
"""

from __future__ import annotations

import json
import sys


def summarize(path: str) -> list[str]:
  with open(path) as f:
    result = json.load(f)
  preset, mode = result["config"]["preset"], result["config"]["mode"]
  ratios = result["ratios"]
  long = [p for p in ratios if p["seq"] >= 256]
  worst = max(long, key=lambda p: p["time_over_flop"])
  within = sum(p["time_over_flop"] <= 1.10 for p in long)
  slowest = max(ratios, key=lambda p: p["time_ratio"])
  slower = [f"B={p['batch']} S={p['seq']} ({p['time_ratio']:.2f})"
            for p in ratios if p["time_ratio"] > 1.0]
  lines = [
      f"- `{preset}` {mode}: seq >= 256, time ratio / FLOP ratio <= 1.10 at "
      f"{within} of {len(long)} points (worst {worst['time_over_flop']:.3f} at "
      f"B={worst['batch']} S={worst['seq']}; "
      f"median-of-points {sorted(p['time_over_flop'] for p in long)[len(long) // 2]:.3f}).",
      f"  Routed slower than dense at {len(slower)} of {len(ratios)} points"
      + (f": {', '.join(slower)}" if slower else
         f" (slowest routed/dense {slowest['time_ratio']:.3f})") + "."]
  if mode == "train":
    worse = [f"B={p['batch']} S={p['seq']} ({p['memory_ratio']:.2f})"
             for p in ratios if p["memory_ratio"] >= 1.0]
    lines.append(f"  Peak memory routed/dense < 1 at "
                 f"{len(ratios) - len(worse)} of {len(ratios)} points"
                 + (f"; not at {', '.join(worse)}" if worse else "") + ".")
  return lines


def main() -> None:
  for path in sys.argv[1:]:
    print("\n".join(summarize(path)))


if __name__ == "__main__":
  main()
