"""The default run (`python -m sdt_jax.train`, the tiny preset on the routing
probe) for several seeds, one table row each: wall time, loss, validation
perplexity (causal routing), layers per token, FLOPs vs dense, and the share
of routed slots at hard positions against their base rate.

  python experiments/probe_seeds.py [SEED ...] [prefix=runs/probe] [key=value ...]

Seeds default to 0 1 2. Runs go to {prefix}_seed{N}; an existing one is
resumed (delete it to time a fresh run). Other key=value arguments go to
every run, e.g. 'routing.curriculum=[]' for a fixed capacity.
"""

import json
import os
import sys
import time

# This checkout's package, even where another copy is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sdt_jax import train  # noqa: E402


def main(argv):
  seeds = [int(a) for a in argv if a.isdigit()] or [0, 1, 2]
  prefix = next((a.split("=", 1)[1] for a in argv if a.startswith("prefix=")),
                "runs/probe")
  extra = [a for a in argv if "=" in a and not a.startswith("prefix=")]
  rows = []
  for seed in seeds:
    workdir = f"{prefix}_seed{seed}"
    t0 = time.time()
    code = train.main([f"seed={seed}", f"workdir={workdir}",
                       "train.progress=none", *extra])
    if code:
      return code
    with open(os.path.join(workdir, "summary.json")) as f:
      s = json.load(f)
    rows.append(
        f"| {seed} | {time.time() - t0:.0f} | {s['train_loss_first']:.2f} -> "
        f"{s['train_loss']:.3f} | {s['valid_ppl_causal']:.3f} | "
        f"{s['layers_per_token_topk']:.2f} / {s['n_layers']} | "
        f"{s['fwd_flops_ratio']:.2f} | {s['probe_hard_share_topk']:.1%} "
        f"({s['probe_hard_share_causal']:.1%} causal) | "
        f"{s['probe_hard_base_rate']:.1%} | {s['probe_hard_ratio']:.2f}x |")
  print("| seed | wall s | train loss | valid ppl (causal) | layers/token | "
        "fwd FLOPs vs dense | hard share of routed slots | hard base rate | "
        "ratio |")
  print("|---|---|---|---|---|---|---|---|---|")
  print("\n".join(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
