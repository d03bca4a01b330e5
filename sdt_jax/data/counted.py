"""The iterator protocol both batch sources share: endless, with the next
global batch index as the whole resumable state, and per-process rows."""

from __future__ import annotations


class CountedBatches:
  """Base of the batch iterators: state(), restore(), this process's rows."""

  def __init__(self, batch_size: int, process_index: int, process_count: int):
    self.global_batch = batch_size
    self.local_batch = batch_size // process_count
    self.row0 = process_index * self.local_batch  # first row of this process
    self.batch = 0

  def state(self) -> dict:
    return {"batch": self.batch}

  def restore(self, state: dict) -> None:
    self.batch = int(state["batch"])

  def __iter__(self):
    return self

  def first_row(self) -> int:
    """Stream position of this process's first row in the next batch."""
    return self.batch * self.global_batch + self.row0
