"""Evaluation: whole-split loss, perplexity, bits per byte, word-level ppl."""

import math
import os

import pytest

from conftest import read_jsonl, tiny_args
from sdt_jax import evaluate, train
from sdt_jax.data import text as text_lib


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
  """A few steps on a small WikiText-style file, byte level."""
  tmp = tmp_path_factory.mktemp("evaluate")
  corpus = tmp / "corpus.txt"
  corpus.write_text("".join(f" the {w} sat on the mat number {i} . \n"
                            for i, w in enumerate(["cat", "dog", "fox"] * 50)))
  valid = tmp / "valid.txt"
  valid.write_text(" the cat sat on the mat . \n the dog ran home . \n" * 6)
  wd = tmp / "run"
  assert train.main(tiny_args(wd, "data.source=text",
                              f"data.train_files={corpus}",
                              f"data.valid_files={valid}",
                              f"data.test_files={valid}",
                              "data.word_level=true")) == 0
  return wd, valid


def test_evaluate_reports_loss_ppl_bpb_and_word_ppl(text_run, capsys):
  wd, valid = text_run
  capsys.readouterr()
  assert evaluate.main([f"workdir={wd}", "split=test"]) == 0
  out = capsys.readouterr().out
  assert "[causal]" in out and "[topk]" in out and "bits_per_byte" in out
  records = [r for r in read_jsonl(wd / "metrics.jsonl")
             if r.get("source") == "evaluate"]
  causal = next(r for r in records if r["routing_mode"] == "causal")
  text = valid.read_text()
  n_bytes = len(text.encode())
  assert causal["tokens"] == n_bytes - 1          # every byte but the first
  nll = causal["loss"] * causal["tokens"]
  assert causal["ppl"] == pytest.approx(math.exp(causal["loss"]), rel=1e-5)
  assert causal["bits_per_byte"] == pytest.approx(nll / (math.log(2) * n_bytes),
                                                  rel=1e-5)
  assert causal["words"] == text_lib.word_count(text) == 6 * (7 + 1 + 5 + 1)
  assert causal["word_ppl"] == pytest.approx(math.exp(nll / causal["words"]),
                                             rel=1e-5)


def test_evaluate_probe_reports_hard_share(tmp_path, capsys):
  wd = tmp_path / "run"
  assert train.main(tiny_args(wd, "train.steps=3")) == 0
  capsys.readouterr()
  assert evaluate.main([f"workdir={wd}", "max_batches=2",
                        "routing_mode=topk"]) == 0
  out = capsys.readouterr().out
  assert "hard_share" in out and "[topk]" in out and "[causal]" not in out


@pytest.mark.parametrize("argv, words", [
    ([], "workdir=DIR is required"),
    (["workdir=/nonexistent/run"], "has no checkpoints"),
    (["workdir=x", "splt=test"], "did you mean split"),
    (["workdir=x", "split=dev"], "choose valid, test or train"),
])
def test_evaluate_bad_arguments_are_one_line(argv, words, capsys):
  assert evaluate.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and words in err, err


def test_evaluate_other_data_via_overrides(text_run, tmp_path, capsys):
  wd, _ = text_run
  other = tmp_path / "other.txt"
  other.write_text("a fox and a hen . \n" * 10)
  assert evaluate.main([f"workdir={wd}", f"data.valid_files={other}",
                        "routing_mode=causal"]) == 0
  assert "other.txt" in capsys.readouterr().out
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"\xff\xfe")
  assert evaluate.main([f"workdir={wd}", f"data.valid_files={bad}"]) == 2
  assert "not UTF-8" in capsys.readouterr().err
