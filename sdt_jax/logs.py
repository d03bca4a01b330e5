"""Where a run reports: a progress bar or plain lines, `metrics.jsonl`, and
TensorBoard event files when the `tensorboard` package is installed."""

from __future__ import annotations

import json
import math
import os
import sys
import time


def _fmt(x) -> str:
  return f"{x:.4g}" if isinstance(x, float) else str(x)


class _TensorBoard:
  """Scalars to a TensorBoard event file, with no TensorFlow needed."""

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    self._event, self._summary = event_pb2, summary_pb2
    self._writer = EventFileWriter(logdir)

  def scalars(self, step: int, values: dict, prefix: str) -> None:
    pb = self._summary
    items = [pb.Summary.Value(tag=f"{prefix}/{k}", simple_value=float(v))
             for k, v in values.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    self._writer.add_event(self._event.Event(
        wall_time=time.time(), step=step, summary=pb.Summary(value=items)))

  def close(self) -> None:
    self._writer.close()


class RunLog:
  """metrics.jsonl + progress display + optional TensorBoard."""

  def __init__(self, workdir: str, *, total_steps: int, start_step: int,
               progress: str = "auto", tensorboard: bool = True,
               stream=None, metrics: bool = True):
    self.stream = stream or sys.stderr
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._file = open(self.path, "a", encoding="utf-8") if metrics else None
    self.bar = None
    use_bar = progress == "bar" or (progress == "auto" and self.stream.isatty())
    self.lines = progress != "none" and not use_bar
    if use_bar:
      from tqdm import tqdm
      self.bar = tqdm(total=total_steps, initial=start_step, file=self.stream,
                      dynamic_ncols=True, unit="step")
    self.tb = None
    if tensorboard:
      try:
        self.tb = _TensorBoard(os.path.join(workdir, "tb"))
      except ImportError:
        pass
    self.total_steps = total_steps

  def write(self, record: dict) -> None:
    """One JSON object per line; NaN/inf written as strings so the file
    stays valid JSON."""
    if self._file is None:
      return
    clean = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in record.items()}
    self._file.write(json.dumps(clean) + "\n")
    self._file.flush()

  def train(self, record: dict) -> None:
    self.write(record)
    if self.tb:
      flat = {k: v for k, v in record.items() if k != "step"}
      for k in ("capacity_use", "agreement"):
        for i, v in enumerate(record.get(k) or []):
          flat[f"{k}_{i}"] = v
      self.tb.scalars(record["step"], flat, "train")
    msg = (f"loss {record['loss']:.4f}  tok/s {record['tokens_per_s']:,.0f}  "
           f"layers/tok {record['layers_per_token']:.2f}")
    if self.bar is not None:
      self.bar.set_postfix_str(msg, refresh=False)
    elif self.lines:
      self.print(f"step {record['step']}/{self.total_steps}  {msg}  "
                 f"lr {record['lr']:.2e}")

  def eval(self, record: dict) -> None:
    self.write(record)
    if self.tb:
      vals = {k: v for k, v in record.items()
              if k not in ("step", "split", "routing_mode")}
      self.tb.scalars(record["step"], vals,
                      f"{record['split']}_{record['routing_mode']}")
    extra = "".join(f"  {k} {_fmt(record[k])}" for k in
                    ("layers_per_token", "hard_share") if k in record)
    self.print(f"eval step {record['step']} {record['split']} "
               f"[{record['routing_mode']}]  loss {record['loss']:.4f}  "
               f"ppl {record['ppl']:.3f}{extra}")

  def advance(self, n: int = 1) -> None:
    if self.bar is not None:
      self.bar.update(n)

  def print(self, line: str) -> None:
    if self.bar is not None:
      self.bar.write(line, file=self.stream)
    else:
      print(line, file=self.stream, flush=True)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
    if self.tb:
      self.tb.close()
    if self._file is not None:
      self._file.close()
