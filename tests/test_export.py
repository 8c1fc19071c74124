"""stprune.export: ONNX (run in ONNX Runtime) and torch.export programs equal the patched PyTorch
model, every block of the exported graph sees the planned token count, and what cannot be exported
is refused in one line before any tracing. Needs the export extra (in the dev extra: CI runs these)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from conftest import tiny_videomae, tiny_vivit

import stprune
from stprune.adapters import HFVJEPA2Adapter, VideoSwinAdapter
from stprune.cli import main
from stprune.deploy import MissingDependencyError, export_refusal, run_onnx
from stprune.errors import SettingError, UnsupportedModelError
from stprune.models import get_adapter

ROOT = Path(__file__).resolve().parents[1]


def small_videomae():
    return tiny_videomae(depth=3, frames=8, image=32)


def small_vivit():
    return tiny_vivit(depth=3, frames=8, image=32)


def demo_model():
    """The bundled trained demo model: vid-TLDR's saliency normalises attention entropies whose spread
    is tiny on random weights (near-uniform attention), so there float32 itself moves its logits by
    ~1e-3 (vs float64, in PyTorch too); a trained model's attention is not uniform."""
    from stprune.architectures.loading import load_model

    return load_model("demo").model


# (family, method, patch settings): every family x method whose shapes are static
CASES = {
    "videomae-vid_tldr": (demo_model, dict(method="vid_tldr", flops_target=0.7)),
    "videomae-unpruned": (small_videomae, None),
    "videomae-sta": (small_videomae, dict(method="sta", r=2)),
    "videomae-tome": (small_videomae, dict(method="tome", r=2)),
    "videomae-rlt": (small_videomae, dict(method="rlt", r=5)),
    "vivit-sta": (small_vivit, dict(method="sta", r=2)),
    "vivit-tome": (small_vivit, dict(method="tome", r=2)),
    "vjepa2-sta": (HFVJEPA2Adapter.example_model, dict(method="sta", r=4)),
    "video-swin-sta-static": (
        VideoSwinAdapter.example_model,
        dict(method="sta", r=2, shifted_windows="static"),
    ),
}


def _clip(model, batch, seed):
    example = next(iter(get_adapter(model).example_inputs(batch).values()))
    return torch.randn(example.shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_onnx_equals_pytorch_and_keeps_the_planned_tokens(case, tmp_path):
    build, setting = CASES[case]
    model = build()
    if setting:
        stprune.patch(model, **setting)
    clip = _clip(model, 1, 0)
    result = stprune.export(model, clip, tmp_path / "m.onnx")  # verify=True: checks or raises
    with torch.no_grad():
        model(**{result.input_name: clip})
    traced = stprune.last_trace(model).tokens_per_block if setting else result.planned_tokens
    assert result.graph_tokens == result.planned_tokens == list(traced)
    assert result.max_abs_diff <= 1e-4
    if setting:
        assert result.planned_tokens != get_adapter(model).unpruned_tokens_per_block()  # it prunes
    # another batch size and other clips: the same tokens (they do not depend on the data), the
    # same outputs as PyTorch
    other = _clip(model, 2, 1)
    got, tokens = run_onnx(result.path, other, with_tokens=True)
    with torch.no_grad():
        out = model(**{result.input_name: other})
    want = out if isinstance(out, torch.Tensor) else out.logits
    assert tokens == result.planned_tokens
    assert (got - want).abs().max().item() <= 1e-4


def test_onnx_graph_declares_fixed_token_counts(tmp_path):
    """The sequence length entering every block is a number in the ONNX graph, not a symbol."""
    from stprune.deploy import _onnx_metadata, _probe_values

    model = small_videomae()
    stprune.patch(model, method="sta", r=2)
    result = stprune.export(model, None, tmp_path / "m.onnx")
    graph = onnx.load(str(result.path))
    meta = _onnx_metadata(graph)
    assert meta["planned_tokens"] == [16, 8, 4] and meta["method"] == "sta"
    shapes = {v.name: v.type.tensor_type.shape.dim for v in graph.graph.value_info}
    dims = [shapes[v] for v in _probe_values(graph, meta["probes"])]
    assert [d[1].dim_value for d in dims] == [16, 8, 4]  # (batch, tokens, channels), tokens fixed
    assert all(d[0].dim_param for d in dims)  # the batch is the one dynamic dimension
    inputs = graph.graph.input
    assert [i.name for i in inputs] == ["pixel_values"] and graph.graph.output[0].name == "logits"


@pytest.mark.parametrize("case", ["videomae-sta", "random", "vid_tldr", "video-swin-sta-static"])
def test_pt2_program_equals_pytorch(case, tmp_path):
    if case in ("random", "vid_tldr"):
        build, setting = small_videomae, dict(method=case, r=2)
    else:
        build, setting = CASES[case]
    model = build()
    stprune.patch(model, **setting)
    clip = _clip(model, 1, 0)
    result = stprune.export(model, clip, tmp_path / "m.pt2")
    assert result.graph_tokens == result.planned_tokens and result.max_abs_diff == 0.0
    program = torch.export.load(str(result.path)).module()
    other = _clip(model, 3, 2)
    with torch.no_grad():
        out = model(**{result.input_name: other})
        want = out if isinstance(out, torch.Tensor) else out.logits
        assert torch.equal(program(other), want)


def test_static_batch_export_takes_only_its_batch(tmp_path):
    model = small_videomae()
    stprune.patch(model, method="sta", r=2)
    result = stprune.export(model, _clip(model, 2, 0), tmp_path / "m.onnx", dynamic_batch=False)
    assert result.max_abs_diff <= 1e-4 and result.input_shape == (2, 8, 3, 32, 32)
    assert not result.dynamic_batch
    with pytest.raises(Exception, match="(?i)dimension|shape|index"):
        run_onnx(result.path, _clip(model, 1, 1))


def _no_tracing(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the exporter must not run for a refused setting")

    monkeypatch.setattr(torch.onnx, "export", never)
    monkeypatch.setattr(torch.export, "export", never)


def test_unexportable_settings_are_refused_before_tracing(tmp_path, monkeypatch):
    _no_tracing(monkeypatch)
    rlt = stprune.patch(small_videomae(), method="rlt", threshold=0.1)
    swin_pad = stprune.patch(VideoSwinAdapter.example_model(), r=2)  # the default padded layout
    random = stprune.patch(small_videomae(), method="random", r=2)
    cases = [
        (rlt, ".onnx", "threshold mode keeps a token count per clip"),
        (rlt, ".pt2", "threshold mode keeps a token count per clip"),
        (swin_pad, ".onnx", "shifted_windows='pad' layout pads each shifted window"),
        (random, ".onnx", "ONNX has only from opset 26"),
        (torch.compile(small_videomae()), ".onnx", "torch.compile wrapper"),
    ]
    for model, ext, message in cases:
        with pytest.raises(UnsupportedModelError, match=message) as err:
            stprune.export(model, None, tmp_path / f"m{ext}")
        assert "\n" not in str(err.value)
        assert not (tmp_path / f"m{ext}").exists()
    assert export_refusal(random, "pt2") is None  # random pruning exports to .pt2
    with torch.device("meta"):
        meta = small_videomae()
    with pytest.raises(UnsupportedModelError, match="meta device"):
        stprune.export(meta, None, tmp_path / "m.onnx")
    with pytest.raises(SettingError, match=r"use \.onnx .* or \.pt2"):
        stprune.export(small_videomae(), None, tmp_path / "m.tflite")


def test_video_llm_is_refused(tmp_path, monkeypatch):
    _no_tracing(monkeypatch)
    llm = stprune.load_model("qwen2.5-vl-mini", weights=False).model
    assert "is a video LLM" in export_refusal(llm)


def test_missing_extra_is_named(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a)
    )
    with pytest.raises(
        MissingDependencyError, match=r"onnxscript is not installed: pip install 'stprune\[export\]'"
    ):
        stprune.export(small_videomae(), None, tmp_path / "m.onnx")


def test_export_restores_training_mode_and_takes_a_loaded_model(tmp_path):
    loaded = stprune.ResolvedModel(small_videomae().train(), None, "tiny")
    result = stprune.export(loaded, None, tmp_path / "sub" / "m.pt2", verify=False)
    assert loaded.model.training and result.path.is_file() and result.graph_tokens is None


def test_base_install_does_not_pull_the_export_extra():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {"onnx", "onnxruntime", "onnxscript"}
    assert not any(dep.split(">")[0].split("=")[0].strip() in names for dep in project["dependencies"])
    for extra in ("export", "dev"):
        assert names <= {
            d.split(">")[0].split("=")[0].strip() for d in project["optional-dependencies"][extra]
        }


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_export")
    small_videomae().save_pretrained(d)
    return d


def test_cli_export_onnx_and_json(model_dir, tmp_path, capsys):
    out, record = tmp_path / "m.onnx", tmp_path / "m.json"
    assert (
        main(["export", "--model", str(model_dir), "--r", "2", "--out", str(out), "--json", str(record)]) == 0
    )
    text = capsys.readouterr().out
    assert "input pixel_values (B, 8x3x32x32), any batch size; output logits" in text
    assert "sta r=2,2,2: tokens entering each block as planned: 16, 8, 4" in text
    assert "checked in ONNX Runtime: the same tokens" in text
    info = json.loads(record.read_text())
    assert info["graph_tokens"] == [16, 8, 4] and info["max_abs_diff"] <= 1e-4 and out.is_file()


def test_cli_export_refusals_in_one_line(model_dir, tmp_path, capsys):
    code = main(
        [
            "export",
            "--model",
            str(model_dir),
            "--method",
            "random",
            "--r",
            "2",
            "--out",
            str(tmp_path / "m.onnx"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("stprune export: error: method 'random'")
    # argparse: the extension names the format
    assert main(["export", "--model", str(model_dir), "--out", str(tmp_path / "m.txt")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", "--model", "qwen2.5-vl-mini", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "is a video LLM" in capsys.readouterr().err


def test_cli_bench_in_onnxruntime(model_dir, tmp_path, capsys):
    out = tmp_path / "b.json"
    args = ["bench", "--model", str(model_dir), "--r", "2", "--runtime", "onnxruntime", "--iters", "1"]
    args += ["--warmup", "0", "--rounds", "2", "--json", str(out)]
    assert main(args) == 0
    res = json.loads(out.read_text())
    assert res["runtime"] == "onnxruntime" and [r["setting"] for r in res["results"]] == ["unpruned", "r=2"]
    assert all(r["latency_ms"] > 0 and float(r["max |diff|"]) <= 1e-4 for r in res["results"])
    assert res["results"][0]["speedup"] == 1.0
    printed = capsys.readouterr().out
    assert "fwd MiB" not in printed and "forward memory: not measured in this runtime" in printed


def test_cli_bench_onnxruntime_refuses_what_it_cannot_run(model_dir, capsys):
    base = ["bench", "--model", str(model_dir), "--runtime", "onnxruntime"]
    assert main([*base, "--amp", "bf16"]) == 2
    assert "times the float32 export" in capsys.readouterr().err
    assert main([*base, "--method", "random", "--r", "2"]) == 2
    assert "ONNX has only from opset 26" in capsys.readouterr().err


def test_ort_benchmark_script_quick_mode(tmp_path):
    out = tmp_path / "ort.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/ort_vit.py", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    assert [r["setting"] for r in res] == ["unpruned", "flops_target=0.7"]
    assert res[1]["ratio"] <= 0.7 and all(float(r["max |diff|"]) <= 1e-4 for r in res)
