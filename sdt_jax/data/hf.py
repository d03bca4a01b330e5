"""Hugging Face `datasets` as a text source (optional dependency, imported
only when used). `name` is a hub name or a local directory: a dataset saved
with `save_to_disk`, or a folder of data files `load_dataset` can read."""

from __future__ import annotations

import os

from sdt_jax.data.errors import DataError


def _datasets():
  try:
    import datasets
  except ImportError:
    raise DataError("data.source=hf needs the `datasets` package "
                    "(pip install 'sdt_jax[data]')") from None
  return datasets


def _load(name: str, config: str):
  datasets = _datasets()
  path = os.path.expanduser(os.path.expandvars(name))
  saved = os.path.isdir(path) and any(
      os.path.exists(os.path.join(path, f))
      for f in ("dataset_dict.json", "dataset_info.json", "state.json"))
  try:
    if saved:
      return datasets.load_from_disk(path)
    return datasets.load_dataset(path, config or None)
  except Exception as e:  # network, missing files, bad format: one line
    raise DataError(f"data.hf_name={name}: cannot load it "
                    f"({type(e).__name__}: {str(e).splitlines()[0][:160]})"
                    ) from None


def load_split_text(name: str, config: str, split: str, field: str
                    ) -> str | None:
  """The split's `field` values joined by newlines; None if the split is
  absent (a single saved Dataset counts as the train split)."""
  ds = _load(name, config)
  if hasattr(ds, "keys"):  # DatasetDict
    if split not in ds:
      return None
    ds = ds[split]
  elif split != "train":
    return None
  if field not in ds.column_names:
    raise DataError(f"data.hf_text_field={field!r} is not a column of "
                    f"{name} ({', '.join(ds.column_names)})")
  text = "\n".join(t for t in ds[field] if t)
  if not text:
    raise DataError(f"data.hf_name={name}: split {split} has no text")
  return text
