"""Orbax checkpoints of a run: arrays (parameters, optimiser state, step) plus
JSON metadata (the config, the data iterator's state, FLOP totals).

Saves are atomic (Orbax writes a temporary directory and renames it), so a
half-written save never looks like a checkpoint. A finished checkpoint that
cannot be read is reported on stderr and the one before it is used.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that does not fit this run."""


class Checkpoints:
  """`ocp.CheckpointManager` over WORKDIR/checkpoints with items `state`
  (arrays) and `meta` (JSON)."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "meta"))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))["meta"]

  def latest_meta(self) -> dict | None:
    """Metadata of the newest checkpoint whose metadata reads, or None.
    (An unreadable checkpoint is reported by `restore_latest`.)"""
    for step in reversed(self.steps()):
      try:
        return self.read_meta(step)
      except Exception:
        continue
    return None

  def restore_latest(self, abstract_state, log=None, set_aside: bool = True):
    """(step, state, meta) of the newest readable checkpoint, or None when
    there is none. Unreadable ones are reported, skipped and (with
    `set_aside`) moved out of the way so that their steps can be saved
    again."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    steps = self.steps()
    for i, step in enumerate(reversed(steps)):
      try:
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore()))
        jax.block_until_ready(out["state"])
        return step, out["state"], out["meta"]
      except Exception as e:  # corrupt, truncated, missing files
        if "structures do not match" in str(e):
          raise CheckpointError(
              f"checkpoint at step {step} in {self.directory} holds state of "
              "another shape than this run's (different model or optimiser "
              "settings); use the settings it was made with or another "
              "workdir") from None
        older = steps[-i - 2] if i + 1 < len(steps) else None
        then = f"using step {older}" if older is not None else "none is left"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        moved = f"moved it to {self._set_aside(step)}; " if set_aside else ""
        log(f"checkpoint at step {step} in {self.directory} is unreadable "
            f"({type(e).__name__}: {reason}); {moved}{then}")
    if steps:
      raise CheckpointError(f"no checkpoint in {self.directory} is readable; "
                            "move it away or use another workdir")
    return None

  def _set_aside(self, step: int) -> str:
    """Move an unreadable step out of the manager's way (kept for
    inspection, never deleted), so the run can save that step again."""
    aside = os.path.join(os.path.dirname(self.directory), "unreadable_checkpoints",
                         f"{step}-{int(time.time())}")
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.move(os.path.join(self.directory, str(step)), aside)
    self.manager.reload()
    return aside

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
