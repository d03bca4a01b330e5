"""python -m sdt_jax.train [--config PRESET_OR_YAML] [key=value ...]

Trains a SparseDepthTransformer: presets and dotted overrides
(`sdt_jax.configs`), the data pipeline (`sdt_jax.data`), AdamW
(`sdt_jax.optim`), one jitted step with donated state (`sdt_jax.steps`),
Orbax checkpoints (`sdt_jax.checkpoint`) and logs (`sdt_jax.logs`).

A workdir that holds checkpoints is resumed from its newest readable one.
SIGTERM/SIGINT finish the current step, save, and exit (128 + signal). A
non-finite loss stops the run without saving over the last good checkpoint.
Bad configuration or data ends the run with one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import jax
import numpy as np
from flax import nnx

from sdt_jax import checkpoint as ckpt_lib
from sdt_jax import configs
from sdt_jax.config import Config, ConfigError, RoutingConfig
from sdt_jax.data import DataError, build_data
from sdt_jax.flops import compiled_flops
from sdt_jax.logs import RunLog
from sdt_jax.model import SparseDepthTransformer
from sdt_jax.optim import make_optimizer
from sdt_jax.steps import (evaluate_batches, init_state, make_eval_step,
                           make_mesh, make_train_step, shardings, summarize,
                           train_step)

USAGE = __doc__.split("\n\n")[0] + """

  --config NAME|FILE   a shipped preset ({presets}) or a YAML file
  key=value            dotted overrides, e.g. train.steps=200 workdir=runs/a
"""

# Config fields that fix the shape or meaning of saved state: a checkpoint
# made with other values cannot be resumed.
RESUME_KEYS = ("model.vocab_size", "model.d_model", "model.n_heads",
               "model.n_layers", "model.mlp_ratio", "model.max_seq_len",
               "model.rope_theta", "model.param_dtype", "routing.policy",
               "routing.route_every", "routing.causal_predictor",
               "routing.predictor_hidden",
               "data.source", "data.tokenizer", "data.probe_alphabet")


class WorkdirError(OSError):
  """The workdir cannot be created or written."""


def parse_args(argv):
  """(preset, overrides) from the command line, or None for --help."""
  preset, overrides, i = None, [], 0
  while i < len(argv):
    arg = argv[i]
    if arg in ("-h", "--help"):
      return None
    if arg == "--config":
      if i + 1 >= len(argv):
        raise ConfigError("--config needs a preset name or a YAML file")
      preset, i = argv[i + 1], i + 2
      continue
    if arg.startswith("--config="):
      preset = arg.split("=", 1)[1]
    elif arg.startswith("-"):
      raise ConfigError(f"unknown option {arg}; use --config NAME and "
                        "key=value overrides")
    else:
      overrides.append(arg)
    i += 1
  return preset, overrides


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    parsed = parse_args(argv)
    if parsed is None:
      print(USAGE.format(presets=", ".join(configs.presets())))
      return 0
    cfg = configs.load_config(*parsed)
    return train(cfg)
  except (ConfigError, DataError, ckpt_lib.CheckpointError, WorkdirError) as e:
    print(f"sdt_jax.train: error: {e}", file=sys.stderr, flush=True)
    return 2


def prepare_workdir(path: str) -> None:
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"workdir {path} is not writable "
                       f"({e.strerror or e})") from None


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def check_resume(saved: dict, cfg: Config, workdir: str) -> None:
  """One clear line when a checkpoint's config cannot be resumed here."""
  old, new = _flat(saved), _flat(configs.to_dict(cfg))
  for key in sorted(new):
    if key in RESUME_KEYS and key in old and old[key] != new[key]:
      raise ckpt_lib.CheckpointError(
          f"workdir {workdir} holds checkpoints made with {key}={old[key]!r}, "
          f"not {new[key]!r}; use the same value or another workdir")


class _Signals:
  """SIGTERM/SIGINT set a flag; the loop saves and exits after the step."""

  def __init__(self):
    self.received = None
    self._old = {}

  def __enter__(self):
    try:
      for s in (signal.SIGTERM, signal.SIGINT):
        self._old[s] = signal.signal(s, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      pass
    return self

  def _handle(self, signum, frame):
    if self.received is not None:  # a second signal: stop now
      raise KeyboardInterrupt
    self.received = signum

  def __exit__(self, *exc):
    for s, handler in self._old.items():
      signal.signal(s, handler)


def _abstract(tree):
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                     sharding=getattr(a, "sharding", None)),
      tree)


def forward_flops_per_token(cfg: Config, routing: RoutingConfig) -> float:
  """Compiled forward FLOPs per token (top-k mode) of a model shaped like
  cfg.model with the given routing, counted on abstract arrays."""
  model = nnx.eval_shape(lambda: SparseDepthTransformer(
      cfg.model, routing, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model)
  B, S = cfg.data.batch_size, cfg.data.seq_len
  tokens = jax.ShapeDtypeStruct((B, S), np.int32)
  fwd = lambda p, t: nnx.merge(graphdef, p)(t, routing_mode="topk")[0]
  return compiled_flops(fwd, params, tokens) / (B * S)


def train(cfg: Config, stream=None) -> int:
  """Run (or resume) training; returns the process exit code."""
  stream = stream or sys.stderr
  say = lambda m: print(m, file=stream, flush=True)
  t_start = time.time()
  workdir = cfg.workdir
  prepare_workdir(workdir)
  data = build_data(cfg, jax.process_index(), jax.process_count())
  if data.vocab_size > cfg.model.vocab_size:
    raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller "
                      f"than the data's {data.vocab_size} tokens; set "
                      f"model.vocab_size={data.vocab_size}")
  mesh = make_mesh(cfg.mesh)
  replicated, batch_sh = shardings(mesh)
  total_steps = cfg.train.steps
  tx, schedule = make_optimizer(cfg.optim, total_steps)
  graphdef, state = init_state(cfg, tx)
  state = jax.device_put(state, replicated)

  ckpts = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"),
                               cfg.checkpoint.keep)
  flops_total, start = 0.0, 0
  if ckpts.steps():
    saved = ckpts.latest_meta()
    if saved is not None:
      check_resume(saved["config"], cfg, workdir)
    restored = ckpts.restore_latest(_abstract(state), log=say)
    if restored is not None:
      start, state, meta = restored
      data.train.restore(meta["data_state"])
      flops_total = float(meta.get("flops_total", 0.0))
      say(f"sdt_jax.train: resuming {workdir} from step {start}")
  if start >= total_steps:
    say(f"sdt_jax.train: {workdir} is already at step {start} "
        f"(train.steps={total_steps}); nothing to train. Raise train.steps "
        "or use another workdir.")
    ckpts.close()
    return 0
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(configs.to_dict(cfg), f, indent=1)

  B, S = cfg.data.batch_size, cfg.data.seq_len
  say(f"sdt_jax.train: {cfg.model.n_layers} layers x d{cfg.model.d_model}, "
      f"routing {cfg.routing.policy} capacity {cfg.routing.capacity:g}, "
      f"data {cfg.data.source}, batch {B}x{S}, steps {start}->{total_steps}, "
      f"{len(jax.devices())} {jax.default_backend()} device(s), "
      f"workdir {workdir}")
  lead = jax.process_index() == 0  # one process writes logs
  log = RunLog(workdir, total_steps=total_steps, start_step=start,
               progress=cfg.train.progress if lead else "none",
               tensorboard=cfg.train.tensorboard and lead, stream=stream,
               metrics=lead)
  eval_steps = {m: make_eval_step(graphdef, mesh, m) for m in ("causal", "topk")}

  def meta():
    return {"config": configs.to_dict(cfg), "data_state": data.train.state(),
            "flops_total": flops_total, "step": step}

  def run_eval(at_step) -> dict:
    out = {}
    for mode, fn in eval_steps.items():
      rec = summarize(evaluate_batches(fn, state["params"], data.valid_batches,
                                       mesh), mode)
      log.eval({"step": at_step, "split": "valid", **rec})
      out[mode] = rec
    return out

  step_fns, flops_per_step = {}, {}
  step, first_loss, last = start, None, {}
  t_log, step_log = time.time(), start
  code = 0
  with _Signals() as signals:
    while step < total_steps:
      capacity = cfg.routing.capacity_at(step)
      if capacity not in step_fns:
        step_fns[capacity] = make_train_step(cfg, graphdef, tx, schedule, mesh,
                                             capacity)
        flops_per_step[capacity] = compiled_flops(
            lambda s, t: train_step(s, t, graphdef=graphdef, tx=tx,
                                    schedule=schedule, cfg=cfg,
                                    capacity=capacity),
            _abstract(state), jax.ShapeDtypeStruct((B, S), np.int32))
      batch = next(data.train)
      tokens = jax.make_array_from_process_local_data(batch_sh, batch["tokens"])
      state, metrics = step_fns[capacity](state, tokens)
      step += 1
      flops_total += flops_per_step[capacity]
      log.advance()
      stop = signals.received is not None
      pause = step == cfg.train.stop_at_step and step < total_steps
      saving = (stop or pause or step == total_steps or
                (cfg.checkpoint.every and step % cfg.checkpoint.every == 0))
      if step % cfg.train.log_every == 0 or saving or step == start + 1:
        bad = int(state["bad_step"])
        if bad >= 0:
          ckpts.wait()
          good = [s for s in ckpts.steps() if s < bad]
          where = (f"the last good checkpoint is step {good[-1]}" if good
                   else "no checkpoint was saved before it")
          say(f"sdt_jax.train: error: the loss became non-finite at step "
              f"{bad}; stopped at step {step} without saving; {where} "
              f"({ckpts.directory}). Lower optim.lr or check the data.")
          code = 1
          break
        m = jax.device_get(metrics)
        now = time.time()
        tps = (step - step_log) * B * S / max(now - t_log, 1e-9)
        t_log, step_log = now, step
        last = {"step": step, "loss": float(m["loss"]),
                "aux_loss": float(m["aux_loss"]), "lr": float(m["lr"]),
                "grad_norm": float(m["grad_norm"]), "tokens_per_s": tps,
                "layers_per_token": float(m["layers_per_token"]),
                "capacity": capacity,
                "capacity_use": [float(x) for x in m["capacity_use"]],
                "agreement": [float(x) for x in m["agreement"]],
                "flops_per_token": flops_per_step[capacity] / (B * S),
                "flops_total": flops_total}
        first_loss = first_loss if first_loss is not None else last["loss"]
        log.train(last)
      if (cfg.train.eval_every and step % cfg.train.eval_every == 0 and
          step < total_steps and not (stop or pause)):
        run_eval(step)
      if saving:
        ckpts.save(step, state, meta())
      if stop:
        name = signal.Signals(signals.received).name
        ckpts.wait()
        log.print(f"sdt_jax.train: received {name}; saved step {step} to "
                  f"{ckpts.directory}; rerun the same command to resume")
        code = 128 + signals.received
        break
      if pause:
        ckpts.wait()
        log.print(f"sdt_jax.train: stopped at train.stop_at_step={step}; saved "
                  f"to {ckpts.directory}; rerun without it to resume")
        break

  ckpts.wait()  # the final save is on disk before anything else can fail
  if code == 0 and step >= total_steps:
    final = run_eval(step)
    summary = _summary(cfg, final, last, first_loss, flops_total,
                       time.time() - t_start)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
    log.close()
    for line in _summary_lines(summary):
      say(line)
  else:
    log.close()
  ckpts.close()
  return code


def _summary(cfg: Config, final: dict, last: dict, first_loss, flops_total,
             wall_s) -> dict:
  dense = RoutingConfig(policy="dense")
  fpt = forward_flops_per_token(cfg, cfg.routing)
  fpt_dense = forward_flops_per_token(cfg, dense)
  causal, topk = final["causal"], final["topk"]
  out = {
      "steps": last.get("step"), "wall_s": round(wall_s, 1),
      "train_loss_first": first_loss, "train_loss": last.get("loss"),
      "valid_loss_causal": causal["loss"], "valid_ppl_causal": causal["ppl"],
      "valid_loss_topk": topk["loss"], "valid_ppl_topk": topk["ppl"],
      "layers_per_token_topk": topk["layers_per_token"],
      "layers_per_token_causal": causal["layers_per_token"],
      "n_layers": cfg.model.n_layers,
      "fwd_flops_per_token": fpt, "fwd_flops_per_token_dense": fpt_dense,
      "fwd_flops_ratio": fpt / fpt_dense, "train_flops_total": flops_total,
  }
  if "hard_share" in topk:
    out.update(probe_hard_share_topk=topk["hard_share"],
               probe_hard_share_causal=causal.get("hard_share"),
               probe_hard_base_rate=topk["hard_base_rate"],
               probe_hard_ratio=topk["hard_share"] / topk["hard_base_rate"])
  return out


def _summary_lines(s: dict) -> list[str]:
  lines = [
      "== summary ==",
      f"steps {s['steps']}  wall {s['wall_s']:.1f} s",
      f"train loss {s['train_loss_first']:.4f} -> {s['train_loss']:.4f}",
      f"valid loss {s['valid_loss_causal']:.4f}  ppl {s['valid_ppl_causal']:.3f}"
      f" (causal routing; top-k: ppl {s['valid_ppl_topk']:.3f})",
      f"layers per token {s['layers_per_token_topk']:.2f} top-k, "
      f"{s['layers_per_token_causal']:.2f} causal, of {s['n_layers']}",
      f"forward FLOPs per token {s['fwd_flops_per_token']:,.0f} vs dense "
      f"{s['fwd_flops_per_token_dense']:,.0f} ({s['fwd_flops_ratio']:.2f}x); "
      f"training total {s['train_flops_total']:.3g}",
  ]
  if "probe_hard_share_topk" in s:
    lines.append(
        f"probe: hard positions take {s['probe_hard_share_topk']:.1%} of routed "
        f"slots (causal {s['probe_hard_share_causal']:.1%}) vs base rate "
        f"{s['probe_hard_base_rate']:.1%}: {s['probe_hard_ratio']:.2f}x")
  return lines


if __name__ == "__main__":
  sys.exit(main())
