"""Training: a tiny run end to end, resume, signals, checkpoints, bad input."""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import read_jsonl, tiny_args, train_losses
from sdt_jax import train


def test_tiny_run_logs_checkpoints_and_summary(tmp_path, capsys):
  wd = tmp_path / "run"
  assert train.main(tiny_args(wd, "train.steps=12", "train.eval_every=6",
                              "train.tensorboard=true")) == 0
  records = read_jsonl(wd / "metrics.jsonl")
  steps = [r for r in records if "split" not in r]
  evals = [r for r in records if "split" in r]
  assert [r["step"] for r in steps] == list(range(1, 13))
  for key in ("loss", "lr", "tokens_per_s", "layers_per_token", "capacity_use",
              "agreement", "flops_per_token", "flops_total"):
    assert key in steps[0], key
  assert steps[-1]["loss"] < steps[0]["loss"]
  assert steps[-1]["flops_total"] == pytest.approx(
      12 * steps[-1]["flops_per_token"] * 4 * 32)
  assert {(r["step"], r["routing_mode"]) for r in evals} == {
      (6, "causal"), (6, "topk"), (12, "causal"), (12, "topk")}
  assert all({"split", "loss", "ppl", "routing_mode"} <= set(r) for r in evals)
  summary = json.loads((wd / "summary.json").read_text())
  assert summary["fwd_flops_ratio"] < 1.0
  assert 0 <= summary["probe_hard_share_topk"] <= 1
  assert sorted(os.listdir(wd / "checkpoints"))[:3] == ["12", "3", "6"] or \
      {"12", "9"} <= set(os.listdir(wd / "checkpoints"))
  try:
    import tensorboard  # noqa: F401  (event files only where it is installed)
    assert any(name.startswith("events") for name in os.listdir(wd / "tb"))
  except ImportError:
    assert not (wd / "tb").exists()
  err = capsys.readouterr().err
  assert "== summary ==" in err and "probe: hard positions" in err


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
  straight, paused = tmp_path / "straight", tmp_path / "paused"
  extra = ("routing.noise=0.1", "routing.curriculum=[[0, 0.5], [4, 0.25]]")
  assert train.main(tiny_args(straight, *extra)) == 0
  assert train.main(tiny_args(paused, *extra, "train.stop_at_step=4")) == 0
  assert sorted(train_losses(paused)) == [1, 2, 3, 4]
  assert train.main(tiny_args(paused, *extra)) == 0
  assert train_losses(paused) == train_losses(straight)  # bit-exact


def test_sigterm_saves_the_last_step(tmp_path):
  wd = tmp_path / "run"
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  proc = subprocess.Popen(
      [sys.executable, "-m", "sdt_jax.train",
       *tiny_args(wd, "train.steps=100000", "checkpoint.every=0")],
      stderr=subprocess.PIPE, text=True, env=env)
  metrics = wd / "metrics.jsonl"
  deadline = time.time() + 120
  while time.time() < deadline:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, err
  assert "received SIGTERM" in err
  last = max(train_losses(wd))
  saved = sorted(int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit())
  assert saved == [last]  # nothing past the last finished step is lost


def test_corrupt_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
  wd = tmp_path / "run"
  assert train.main(tiny_args(wd)) == 0          # checkpoints at 3 and 6
  state_dir = wd / "checkpoints" / "6" / "state"
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"garbage")
  os.makedirs(wd / "checkpoints" / "9.orbax-checkpoint-tmp-1234")  # half-written
  capsys.readouterr()
  assert train.main(tiny_args(wd, "train.steps=9")) == 0
  err = capsys.readouterr().err
  assert "checkpoint at step 6" in err and "using step 3" in err
  assert "resuming" in err and "from step 3" in err


def test_incompatible_checkpoint_is_one_line(tmp_path, capsys):
  wd = tmp_path / "run"
  assert train.main(tiny_args(wd, "train.steps=3", "train.progress=bar")) == 0
  assert "3/3" in capsys.readouterr().err   # the progress bar
  assert train.main(tiny_args(wd, "model.d_model=64")) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "model.d_model=32" in err


def test_nonfinite_loss_stops_and_keeps_the_good_checkpoint(tmp_path, capsys):
  wd = tmp_path / "run"
  assert train.main(tiny_args(wd, "train.steps=3")) == 0
  capsys.readouterr()
  code = train.main(tiny_args(wd, "train.steps=12", "optim.lr=1e30",
                              "optim.grad_clip=0", "checkpoint.every=1"))
  err = capsys.readouterr().err
  assert code == 1, err
  bad = int(re.search(r"non-finite at step (\d+)", err).group(1))
  assert bad > 3 and f"last good checkpoint is step {bad - 1}" in err
  saved = sorted(int(s) for s in os.listdir(wd / "checkpoints") if s.isdigit())
  assert saved[-1] == bad - 1   # nothing saved at or after the bad step
  losses = train_losses(wd)
  assert all(math.isfinite(losses[s]) for s in range(1, bad))


@pytest.mark.parametrize("make_args, words", [
    (lambda tmp: ["data.source=text", f"data.train_files={tmp}/none.txt"],
     "does not exist"),
    (lambda tmp: ["data.source=text", f"data.train_files={tmp}/short.txt"],
     "longer than"),
    (lambda tmp: [f"workdir={tmp}/short.txt/run"], "is not writable"),
    (lambda tmp: ["model.vocab_size=8"], "model.vocab_size=8 is smaller"),
])
def test_bad_input_is_one_line(tmp_path, capsys, make_args, words):
  (tmp_path / "short.txt").write_text("tiny\n")
  args = tiny_args(tmp_path / "run", "data.valid_fraction=0") + make_args(
      tmp_path)
  assert train.main(args) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and words in err, err


def test_two_device_mesh_splits_the_batch(tmp_path):
  wd = tmp_path / "run"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.run(
      [sys.executable, "-m", "sdt_jax.train",
       *tiny_args(wd, "train.steps=2", "checkpoint.every=0")],
      capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "2 cpu device(s)" in proc.stderr
  assert sorted(train_losses(wd)) == [1, 2]
