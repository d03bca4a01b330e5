"""Config: presets, dotted overrides, and one-line errors."""

import pytest

from sdt_jax import configs, train
from sdt_jax.config import ConfigError


def test_default_is_tiny_probe():
  cfg = configs.load_config()
  assert cfg.data.source == "probe"
  assert set(configs.presets()) >= {"tiny", "wikitext2", "tinystories",
                                    "gpt2_small"}


@pytest.mark.parametrize("name", ["tiny", "wikitext2", "tinystories",
                                  "gpt2_small"])
def test_every_preset_loads(name):
  cfg = configs.load_config(name)
  assert cfg.data.seq_len <= cfg.model.max_seq_len


def test_overrides_are_typed():
  cfg = configs.load_config(None, [
      "routing.capacity=0.25", "train.steps=200", "workdir=runs/a",
      "routing.curriculum=[[0, 0.5], [100, 0.25]]",
      "data.train_files=a.txt,b.txt", "train.tensorboard=false", "seed=3",
      "optim.lr=1e-3"])
  assert cfg.routing.capacity == 0.25 and cfg.train.steps == 200
  assert cfg.workdir == "runs/a" and cfg.seed == 3
  assert cfg.routing.curriculum == ((0, 0.5), (100, 0.25))
  assert cfg.data.train_files == ("a.txt", "b.txt")
  assert cfg.train.tensorboard is False and cfg.optim.lr == 1e-3


@pytest.mark.parametrize("override, words", [
    ("routing.capcity=0.2", ["unknown key routing.capcity",
                             "did you mean routing.capacity"]),
    ("trian.steps=5", ["unknown key trian.steps", "train.steps"]),
    ("train.steps=abc", ["train.steps", "expected an integer"]),
    ("train.steps=2.5", ["train.steps", "integer"]),
    ("routing.capacity=1.5", ["routing.capacity", "(0, 1]"]),
    ("routing.policy=moe", ["routing.policy", "mod, depth, dense"]),
    ("optim.lr=-1", ["optim.lr", "positive"]),
    ("train.tensorboard=maybe", ["train.tensorboard", "true or false"]),
    ("model.n_heads=3", ["model.n_heads", "divide"]),
    ("data.seq_len=4096", ["data.seq_len", "model.max_seq_len"]),
    ("routing.curriculum=[[5, 0.5], [1, 0.2]]", ["routing.curriculum"]),
    ("steps", ["not KEY=VALUE"]),
])
def test_bad_values_name_the_key(override, words):
  with pytest.raises(ConfigError) as e:
    configs.load_config(None, [override])
  message = str(e.value)
  assert "\n" not in message
  for w in words:
    assert w in message, message


def test_yaml_file_and_safe_loading(tmp_path):
  good = tmp_path / "run.yaml"
  good.write_text("train:\n  steps: 7\nrouting:\n  capacity: 0.5\n")
  cfg = configs.load_config(str(good), ["train.steps=9"])
  assert cfg.train.steps == 9 and cfg.routing.capacity == 0.5
  unsafe = tmp_path / "unsafe.yaml"
  unsafe.write_text("train: !!python/object/apply:os.system ['echo hi']\n")
  with pytest.raises(ConfigError, match="not valid YAML"):
    configs.load_config(str(unsafe))
  wrong = tmp_path / "wrong.yaml"
  wrong.write_text("train:\n  stepz: 7\n")
  with pytest.raises(ConfigError, match="did you mean train.steps"):
    configs.load_config(str(wrong))
  with pytest.raises(ConfigError, match="neither a preset nor a file"):
    configs.load_config("no_such_preset")


def test_cli_prints_one_line_and_exits_2(capsys):
  assert train.main(["routing.capcity=0.2"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "did you mean routing.capacity" in err
  assert train.main(["--help"]) == 0


def test_round_trip_through_dict():
  cfg = configs.load_config(None, ["routing.curriculum=[[0, 0.5]]"])
  assert configs.from_dict(configs.to_dict(cfg)) == cfg
