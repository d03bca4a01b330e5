"""`python -m sdt_jax.bench`: command line and output shape (tiny preset)."""

import json

import pytest

from sdt_jax import bench

ROW_KEYS = {"mode", "model", "batch", "seq", "capacity", "flops_compiled",
            "flops_analytic", "time_ms", "peak_bytes", "layers_per_token",
            "tokens_per_s"}


@pytest.mark.parametrize("argv", [
    ["--seq", "0"], ["--batch", "2,x"], ["--preset", "nope"],
    ["--mode", "eval"], ["--repeats", "0"], ["--repeats", "2,3"],
])
def test_bad_arguments_exit_with_one_line(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.parse_args(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1].startswith("python -m sdt_jax.bench: error:")


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_tiny_run_writes_rows(mode, tmp_path, capsys):
  out = tmp_path / "bench.json"
  assert bench.main(["--preset", "tiny", "--batch", "2", "--seq", "16",
                     "--mode", mode, "--repeats", "1",
                     "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  rows = result["rows"]
  assert [r["model"] for r in rows] == ["dense", "routed"]
  for row in rows:
    assert ROW_KEYS <= set(row)
    assert row["mode"] == mode and row["time_ms"] > 0
    if mode == "forward":
      assert row["flops_compiled"] == pytest.approx(row["flops_analytic"],
                                                    rel=0.03)
    else:  # the compiled step also holds the loss and the AdamW update
      assert row["flops_compiled"] > 0.97 * row["flops_analytic"]
  dense, routed = rows
  assert dense["layers_per_token"] == 2.0
  assert routed["layers_per_token"] < dense["layers_per_token"]
  assert routed["flops_compiled"] < dense["flops_compiled"]
  assert {"config", "machine", "ratios"} <= set(result)
  table = capsys.readouterr().out
  assert "| routed |" in table and "time ratio / FLOP ratio" in table
