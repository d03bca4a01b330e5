"""python -m sdt_jax.train (the training CLI is its own issue)."""

import sys


def main() -> int:
  print("sdt_jax.train: the training CLI is not built yet; the model is in "
        "sdt_jax.model (see README.md).", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
