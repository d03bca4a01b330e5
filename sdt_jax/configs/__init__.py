"""Presets shipped with the package, and how a run's `Config` is built.

`load_config(preset, overrides)` reads a preset (a name shipped here, such as
`tiny`, or a path to a YAML file; safe loading only), applies dotted
`key=value` overrides, and checks every value against the field it sets.
Mistakes raise `ConfigError` with one line naming the key and what is
allowed, with the nearest key name when a key is unknown.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import os
import types
import typing
from typing import Any, Sequence

import yaml

from sdt_jax.config import Config, ConfigError

DEFAULT_PRESET = "tiny"


def presets() -> list[str]:
  """Names of the presets shipped in this package."""
  root = importlib.resources.files(__package__)
  return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def read_yaml(preset: str) -> dict:
  """The nested dict of a preset name or a YAML path."""
  if preset in presets():
    text = (importlib.resources.files(__package__) / f"{preset}.yaml").read_text()
    where = f"preset {preset}"
  elif os.path.isfile(preset):
    try:
      with open(preset, encoding="utf-8") as f:
        text = f.read()
    except (OSError, UnicodeDecodeError) as e:
      raise ConfigError(f"--config {preset}: cannot read it ({e})") from None
    where = preset
  else:
    raise ConfigError(f"--config {preset!r} is neither a preset nor a file; "
                      f"presets: {', '.join(presets())}")
  try:
    data = yaml.safe_load(text)
  except yaml.YAMLError as e:
    line = getattr(getattr(e, "problem_mark", None), "line", None)
    at = f" at line {line + 1}" if line is not None else ""
    raise ConfigError(f"{where}: not valid YAML{at}") from None
  if data is None:
    return {}
  if not isinstance(data, dict):
    raise ConfigError(f"{where}: expected a mapping of sections, got "
                      f"{type(data).__name__}")
  return data


def load_config(preset: str | None = None,
                overrides: Sequence[str] = ()) -> Config:
  """Preset (default `tiny`) + `key=value` overrides -> a checked Config."""
  return apply_overrides(read_yaml(preset or DEFAULT_PRESET), overrides)


def apply_overrides(tree: dict, overrides: Sequence[str] = ()) -> Config:
  """A checked Config from a nested dict and `key=value` overrides, each
  value parsed against the type of the field it sets."""
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep or not key:
      raise ConfigError(f"argument {item!r} is not KEY=VALUE (for example "
                        "train.steps=200)")
    _set_dotted(tree, key.strip(), _Raw(raw))
  return from_dict(tree)


def from_dict(tree: dict) -> Config:
  """A Config from a nested dict (YAML, JSON or overrides)."""
  return _build(Config, tree, "")


def to_dict(cfg) -> dict:
  """A JSON-ready nested dict (tuples become lists)."""
  return json_ready(dataclasses.asdict(cfg))


def json_ready(x):
  if isinstance(x, dict):
    return {k: json_ready(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_ready(v) for v in x]
  return x


def all_keys(cls=Config, prefix: str = "") -> list[str]:
  """Every dotted key a Config accepts."""
  keys = []
  for name, tp in _hints(cls).items():
    if dataclasses.is_dataclass(tp):
      keys += all_keys(tp, f"{prefix}{name}.")
    else:
      keys.append(prefix + name)
  return keys


# -- internals ----------------------------------------------------------------


class _Raw(str):
  """A command-line value: parsed against the type of the field it sets."""


def _set_dotted(tree: dict, key: str, value) -> None:
  parts = key.split(".")
  node = tree
  for i, part in enumerate(parts[:-1]):
    child = node.setdefault(part, {})
    if not isinstance(child, dict):
      raise ConfigError(f"{'.'.join(parts[:i + 1])} is a value, not a section; "
                        f"cannot set {key}")
    node = child
  node[parts[-1]] = value


@functools.cache
def _hints(cls) -> dict[str, Any]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str) -> ConfigError:
  near = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
  hint = f"; did you mean {near[0]}?" if near else (
      "; the sections are model, routing, data, optim, train, mesh, "
      "checkpoint, plus workdir and seed")
  return ConfigError(f"unknown key {key}{hint}")


def _build(cls, tree, prefix: str):
  if not isinstance(tree, dict):
    raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping of "
                      f"keys, got {tree!r}")
  hints = _hints(cls)
  kwargs = {}
  for name, value in tree.items():
    key = f"{prefix}{name}"
    if name not in hints:
      while isinstance(value, dict) and value:  # name the full dotted key
        name, value = next(iter(value.items()))
        key = f"{key}.{name}"
      raise _unknown(key)
    tp = hints[name]
    if dataclasses.is_dataclass(tp):
      kwargs[name] = _build(tp, value, key + ".")
    else:
      kwargs[name] = _coerce(key, value, tp)
  return cls(**kwargs)


def _parse_raw(raw: _Raw, tp):
  if tp is str:
    return str(raw)
  try:
    return yaml.safe_load(raw) if raw.strip() else ""
  except yaml.YAMLError:
    return str(raw)


def _describe(tp) -> str:
  if typing.get_origin(tp) is tuple:
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
      return f"a list of {_describe(args[0])}"
    return "[" + ", ".join(_describe(a) for a in args) + "]"
  return {bool: "true or false", int: "an integer", float: "a number",
          str: "a string"}.get(tp, str(tp))


def _coerce(key: str, value, tp):
  """`value` as type `tp`, or a ConfigError naming the key."""
  if isinstance(value, _Raw):
    value = _parse_raw(value, tp)
  bad = ConfigError(f"{key}={value!r} has the wrong type; expected "
                    f"{_describe(tp)}")
  if tp is bool:
    if isinstance(value, bool):
      return value
    raise bad
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise bad
    if isinstance(value, float) and not value.is_integer():
      raise bad
    return int(value)
  if tp is float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
      try:
        value = float(value)
      except ValueError:
        raise bad from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise bad
    return float(value)
  if tp is str:
    if isinstance(value, (dict, list)) or value is None:
      raise bad
    return str(value)
  if typing.get_origin(tp) is tuple:
    args = typing.get_args(tp)
    if isinstance(value, str) and args[0] is str:
      value = [v for v in value.split(",") if v] if value else []
    if value is None:
      value = []
    if not isinstance(value, (list, tuple)):
      raise bad
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(f"{key}[{i}]", v, args[0])
                   for i, v in enumerate(value))
    if len(value) != len(args):
      raise bad
    return tuple(_coerce(f"{key}[{i}]", v, a)
                 for i, (v, a) in enumerate(zip(value, args)))
  if isinstance(tp, types.UnionType):
    raise bad
  raise bad
