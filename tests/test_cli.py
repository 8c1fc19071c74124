"""The CLI: flops and bench on a local HF model directory (tiny, random weights, offline)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_videomae, tiny_vivit

from stprune.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_videomae")
    tiny_videomae().save_pretrained(d)
    return d


def test_flops_command_json(model_dir, tmp_path, capsys):
    out = tmp_path / "f.json"
    assert (
        main(
            ["flops", "--model", str(model_dir), "--r", "2", "4", "--flops-target", "0.8", "--json", str(out)]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "unpruned" in text and "r=4" in text
    res = json.loads(out.read_text())["results"]
    assert [r["setting"] for r in res] == ["unpruned", "r=2", "r=4", "flops_target=0.8"]
    assert res[0]["ratio"] == 1.0 and res[2]["gflops"] < res[1]["gflops"] < res[0]["gflops"]
    assert res[3]["ratio"] <= 0.8
    assert res[2]["tokens_per_block"] == [128, 96, 96, 80, 80, 72]


def test_bench_command_json(model_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    args = [
        "bench",
        "--model",
        str(model_dir),
        "--r",
        "4",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--rounds",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    res = json.loads(out.read_text())["results"]
    assert len(res) == 2 and all(r["clips_per_s"] > 0 and r["latency_ms"] > 0 for r in res)
    assert res[0]["speedup"] == 1.0


def test_flops_on_vivit_preset_runs_on_meta(tmp_path):
    # vivit-b is built on the meta device from its config: exact counts, no weights
    out = tmp_path / "v.json"
    assert main(["flops", "--model", "vivit-b", "--r", "64", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]
    assert res[1]["tokens_per_block"][0] == 1 + 16 * 196 and res[1]["tokens_per_block"][1] == 1 + 16 * 132


def test_bad_model_spec_is_a_clear_error(capsys):
    assert main(["flops", "--model", "./nope", "--r", "2"]) == 2
    err = capsys.readouterr().err
    assert "stprune flops: error: model './nope': no such file or directory, and not a preset" in err


def test_bad_r_is_a_clear_error(model_dir, capsys):
    assert main(["flops", "--model", str(model_dir), "--r", "50"]) == 2
    assert "r=50 is too large for groups of 16 tokens" in capsys.readouterr().err


def test_vivit_dir_and_module_entry_point(tmp_path):
    d = tmp_path / "vivit"
    tiny_vivit().save_pretrained(d)
    proc = subprocess.run(
        [sys.executable, "-m", "stprune", "flops", "--model", str(d), "--r", "3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "VivitForVideoClassification" in proc.stdout


def test_cpu_benchmark_script_quick_mode(tmp_path):
    out = tmp_path / "q.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/cpu_vit.py", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    assert [r["setting"] for r in res] == ["unpruned", "r=64", "flops_target=0.7"]
    assert res[2]["ratio"] <= 0.7


def test_gpu_benchmark_script_plumbing_on_cpu(tmp_path):
    """The GPU benchmark's code paths (settings at matched FLOPs, profiler share, compile with
    graph-break count) run end to end on a tiny model on CPU."""
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/gpu_bench.py",
            "--quick",
            "--device",
            "cpu",
            "--profile",
            "--compile",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rep = json.loads((tmp_path / "gpu_quick.json").read_text())["models"]["tiny"]
    methods = [r["method"] for r in rep["rows"]]
    assert methods == ["none", "sta", "sta", "tome", "tome", "random", "random"]
    sta_ratio = {r["setting"]: r["ratio"] for r in rep["rows"] if r["method"] == "sta"}
    for r in rep["rows"][3:]:
        assert r["ratio"] <= max(sta_ratio.values()) + 1e-3  # baselines at matched (not higher) FLOPs
    assert rep["compile"]["graph_breaks"] == 0
    assert 0 < rep["sta_share"]["host_share"] < 1
