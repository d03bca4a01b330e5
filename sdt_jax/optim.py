"""The optimiser a run uses: AdamW, a warmup-then-decay schedule, clipping."""

from __future__ import annotations

import jax
import optax

from sdt_jax.config import OptimConfig


def lr_schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0, then `cosine`, `linear` or `constant` to the end."""
  warmup = min(cfg.warmup_steps, max(total_steps - 1, 0))
  end = cfg.lr * cfg.min_lr_ratio
  decay_steps = max(total_steps - warmup, 1)
  if cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(cfg.lr, decay_steps,
                                        alpha=cfg.min_lr_ratio)
  elif cfg.schedule == "linear":
    decay = optax.linear_schedule(cfg.lr, end, decay_steps)
  else:
    decay = optax.constant_schedule(cfg.lr)
  if warmup == 0:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, cfg.lr, warmup), decay], [warmup])


def make_optimizer(cfg: OptimConfig, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """AdamW (weight decay on matrices only, not norms or thresholds) behind a
  global-norm clip."""
  schedule = lr_schedule(cfg, total_steps)
  adamw = optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay,
                      mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2,
                                                       params))
  # The same chain with or without clipping, so checkpoints fit either way.
  clip = (optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0
          else optax.identity())
  return optax.chain(clip, adamw), schedule
