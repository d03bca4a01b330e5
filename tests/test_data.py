"""Data: tokenizers, the routing probe, text files, datasets, batching."""

import os

import numpy as np
import pytest

from sdt_jax import configs
from sdt_jax.data import (ByteTokenizer, DataError, WindowBatches, build_data,
                          eval_windows, load_corpus, load_tokenizer,
                          probe_example)
from sdt_jax.data import text as text_lib
from sdt_jax.data.train_tokenizer import main as train_tokenizer_main


def test_byte_tokenizer_round_trip():
  tok = ByteTokenizer()
  ids = tok.encode("héllo\n")
  assert ids.dtype == np.int32 and len(ids) == 7 and tok.decode(ids) == "héllo\n"


def test_bpe_tokenizer_train_and_load(tmp_path, text_file):
  out = tmp_path / "tok.json"
  assert train_tokenizer_main([str(text_file), "--vocab-size", "300",
                               "--out", str(out)]) == 0
  tok = load_tokenizer(str(out))
  assert 256 < tok.vocab_size <= 300
  ids = tok.encode("the cat sat on the mat\n")
  assert tok.decode(ids) == "the cat sat on the mat\n"
  assert len(ids) < len("the cat sat on the mat\n")  # merges were learnt
  cfg = configs.load_config(None, [
      "data.source=text", f"data.train_files={text_file}",
      f"data.tokenizer={out}", "data.seq_len=16", "data.batch_size=2"])
  data = build_data(cfg)
  assert data.vocab_size == tok.vocab_size
  assert next(data.train)["tokens"].max() < tok.vocab_size
  with pytest.raises(DataError, match="no such file"):
    load_tokenizer(str(tmp_path / "missing.json"))


def test_probe_labels_mark_the_position_before_the_hard_token():
  alphabet = 16
  tokens, hard = probe_example(5, seed=0, split="train", seq_len=256,
                               alphabet=alphabet, hard_rate=0.1)
  again, _ = probe_example(5, seed=0, split="train", seq_len=256,
                           alphabet=alphabet, hard_rate=0.1)
  np.testing.assert_array_equal(tokens, again)
  query, key = alphabet, tokens[0]
  assert 0.03 < hard.mean() < 0.2
  for t in range(1, 255):
    if hard[t]:   # the query; its next token needs the key and x[t-1]
      assert tokens[t] == query
      assert tokens[t + 1] == (key + tokens[t - 1]) % alphabet
    elif tokens[t + 1] != query:   # easy: the counting stream
      assert tokens[t + 1] == (tokens[t] + 1) % alphabet
  valid, _ = probe_example(5, seed=0, split="valid", seq_len=256,
                           alphabet=alphabet, hard_rate=0.1)
  assert not np.array_equal(tokens, valid)


def test_window_batches_shuffle_resume_and_shard():
  tokens = np.arange(10 * 8, dtype=np.int32)   # 10 windows of 8
  it = WindowBatches(tokens, seq_len=8, batch_size=5, seed=1)
  epoch = np.concatenate([next(it)["tokens"] for _ in range(2)])
  assert sorted(epoch[:, 0] // 8) == list(range(10))      # each window once
  assert not np.array_equal(epoch[:, 0] // 8, np.arange(10))  # shuffled
  state = it.state()
  following = [next(it)["tokens"] for _ in range(3)]
  resumed = WindowBatches(tokens, seq_len=8, batch_size=5, seed=1)
  resumed.restore(state)
  for want in following:
    np.testing.assert_array_equal(next(resumed)["tokens"], want)
  halves = [WindowBatches(tokens, seq_len=8, batch_size=4, seed=1,
                          process_index=i, process_count=2) for i in range(2)]
  whole = WindowBatches(tokens, seq_len=8, batch_size=4, seed=1)
  np.testing.assert_array_equal(
      np.concatenate([next(h)["tokens"] for h in halves]),
      next(whole)["tokens"])


def test_eval_windows_predict_every_token_once():
  tokens = np.arange(1, 50, dtype=np.int32)
  seen = []
  for tok_BxS, mask_BxS in eval_windows(tokens, seq_len=8, batch_size=3):
    seen += list(tok_BxS[mask_BxS])
  assert seen == list(tokens[1:])


def test_text_file_errors_are_one_line(tmp_path, monkeypatch):
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  latin = tmp_path / "latin.txt"
  latin.write_bytes("caf\xe9".encode("latin-1"))
  cases = [(tmp_path / "missing.txt", "does not exist"),
           (empty, "is empty"), (latin, "not UTF-8 text (byte 0xe9 at offset 3)"),
           (tmp_path, "is a directory")]
  for path, words in cases:
    with pytest.raises(DataError) as e:
      text_lib.read_file(str(path))
    assert words in str(e.value) and "\n" not in str(e.value)
  with pytest.raises(DataError, match="no file matches"):
    text_lib.expand([str(tmp_path / "*.none")], "data.train_files")
  monkeypatch.delenv("SDT_NOT_SET", raising=False)
  with pytest.raises(DataError, match="SDT_NOT_SET"):
    text_lib.expand(["${SDT_NOT_SET}/x.txt"], "data.train_files")


def test_text_source_and_seq_len_longer_than_data(tmp_path, text_file):
  cfg = configs.load_config(None, [
      "data.source=text", f"data.train_files={text_file}", "data.seq_len=32",
      "data.batch_size=4", "data.valid_fraction=0.1", "model.max_seq_len=32"])
  data = build_data(cfg)
  assert next(data.train)["tokens"].shape == (4, 32)
  corpus = load_corpus(cfg.data, "valid")
  train = load_corpus(cfg.data, "train")
  whole = text_file.read_bytes()
  assert train.n_bytes + corpus.n_bytes == len(whole)
  short = tmp_path / "short.txt"
  short.write_text("just a few words\n")
  cfg = configs.load_config(None, [
      "data.source=text", f"data.train_files={short}", "data.seq_len=64",
      "data.valid_fraction=0"])
  with pytest.raises(DataError, match="data.seq_len=64 is longer than"):
    build_data(cfg)


def test_hf_datasets_from_local_files(tmp_path):
  datasets = pytest.importorskip("datasets")
  rows = {"text": [f"story {i}: the fox and the hen met." for i in range(200)]}
  path = tmp_path / "saved"
  datasets.DatasetDict({
      "train": datasets.Dataset.from_dict(rows),
      "validation": datasets.Dataset.from_dict({"text": rows["text"][:20]}),
  }).save_to_disk(str(path))
  cfg = configs.load_config(None, [
      "data.source=hf", f"data.hf_name={path}", "data.seq_len=32",
      "data.batch_size=2", "model.max_seq_len=32"])
  data = build_data(cfg)
  text = ByteTokenizer().decode(next(data.train)["tokens"].ravel())
  assert "fox" in text or "hen" in text or "story" in text
  csv_dir = tmp_path / "csvs"
  csv_dir.mkdir()
  (csv_dir / "train.csv").write_text(
      "body\n" + "\n".join(f"line {i} about hens" for i in range(100)) + "\n")
  cfg = configs.load_config(None, [
      "data.source=hf", f"data.hf_name={csv_dir}", "data.hf_text_field=body",
      "data.seq_len=16", "data.batch_size=2", "model.max_seq_len=16"])
  data = build_data(cfg)   # no validation split: the tail of train is held out
  assert len(data.valid_batches) == cfg.train.eval_batches
  train = load_corpus(cfg.data, "train")
  valid = load_corpus(cfg.data, "valid")
  assert "line 99 about hens" in ByteTokenizer().decode(valid.tokens)
  assert "line 99 about hens" not in ByteTokenizer().decode(train.tokens)
  cfg = configs.load_config(None, [
      "data.source=hf", f"data.hf_name={csv_dir}", "data.hf_text_field=text"])
  with pytest.raises(DataError, match="not a column"):
    build_data(cfg)


def test_wikitext2_word_count(data_dir):
  text, _ = text_lib.read_files([os.path.join(data_dir, "wikitext-2",
                                              "valid.txt")], "data.valid_files")
  assert text_lib.word_count(text) == 217_646


def test_wikitext2_train_parts_join_to_the_full_file(data_dir):
  cfg = configs.load_config("wikitext2", ["data.seq_len=128"])
  os.environ.setdefault("SDT_DATA_DIR", data_dir)
  paths = text_lib.expand(cfg.data.train_files, "data.train_files")
  assert [os.path.basename(p) for p in paths] == [
      "train.part1.txt", "train.part2.txt", "train.part3.txt"]
  text, _ = text_lib.read_files(cfg.data.train_files, "data.train_files")
  assert len(text.encode("utf-8")) == 10_797_148
  assert text_lib.word_count(text) == 2_088_628


def test_tiny_shakespeare_bytes(data_dir):
  cfg = configs.load_config(None, [
      "data.source=text",
      f"data.train_files={data_dir}/tinyshakespeare/input.txt",
      "data.seq_len=64", "data.batch_size=8"])
  data = build_data(cfg)
  assert next(data.train)["tokens"].shape == (8, 64)
