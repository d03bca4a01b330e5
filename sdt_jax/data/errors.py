"""The one error type for unusable data: its message is one line to show."""


class DataError(ValueError):
  """A data file or dataset cannot be used (missing, empty, not UTF-8, too
  short for the sequence length, ...)."""
