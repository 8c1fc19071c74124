"""Video-LLM presets and the ``flops`` / ``bench`` commands on them."""

from __future__ import annotations

import json

import pytest
import torch

import stprune
from stprune.adapters import get_adapter
from stprune.architectures.presets import build_preset, is_video_llm_preset, preset_names
from stprune.bench.flops import count_macs
from stprune.bench.video_llm import Prompt, video_llm_rows
from stprune.cli import main

VIDEO_LLM_PRESETS = [n for n in preset_names() if is_video_llm_preset(n)]

#: parameters of the released checkpoints (their model cards), in billions, and whether the LM
#: head shares the embedding's weights there (the presets keep them separate: the same MACs)
RELEASED = {
    "qwen2.5-vl-3b": (3.75, True),
    "qwen2.5-vl-7b": (8.29, False),
    "qwen3-vl-4b": (4.44, True),
    "qwen3-vl-8b": (8.77, False),
    "llava-onevision-0.5b": (0.89, True),
    "llava-onevision-7b": (8.03, False),
}


def run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_presets_have_the_released_shapes(name):
    with torch.device("meta"):
        model = build_preset(name)
    billions, tied = RELEASED[name]
    params = sum(p.numel() for p in model.parameters())
    if tied:
        params -= model.lm_head.weight.numel()
    assert abs(params / 1e9 - billions) < 0.01 * billions, params


def test_every_video_llm_preset_is_listed_and_patchable():
    assert set(RELEASED) | {"qwen2.5-vl-mini"} == set(VIDEO_LLM_PRESETS)
    for name in VIDEO_LLM_PRESETS:
        with torch.device("meta"):
            model = build_preset(name)
        stprune.patch(model, "sta", keep_ratio=0.5)
        assert stprune.patch_info(model).flops_ratio < 1
        stprune.unpatch(model)


def test_prompt_costs_equal_flop_counter_on_a_small_preset():
    model = build_preset("qwen2.5-vl-mini")
    adapter = get_adapter(model)
    prompt = Prompt(num_frames=4, size=(56, 84), text_tokens=8)
    rows = video_llm_rows(model, ["sta", "evs"], keep_ratios=[0.5], prompt=prompt)
    inputs = adapter.example_prompt(1, 4, (56, 84), 8)
    assert count_macs(model, inputs) == rows[0].cost.macs_unpruned
    for row in rows[1:]:
        stprune.patch(model, row.method, **row.options)
        try:
            assert count_macs(model, inputs) == row.cost.macs
            assert stprune.last_trace(model).length_out == row.cost.length_out
        finally:
            stprune.unpatch(model)


def test_prompt_cost_of_a_patched_model():
    with torch.device("meta"):
        model = build_preset("qwen2.5-vl-7b")
    with pytest.raises(ValueError, match="not patched"):
        stprune.prompt_cost(model)
    stprune.patch(model, "sta", keep_ratio=0.25)
    cost = stprune.prompt_cost(model, num_frames=64, size=(448, 448), text_tokens=64)
    assert (cost.video_tokens, cost.video_kept, cost.length, cost.length_out) == (8192, 2048, 8258, 2114)
    assert stprune.prompt_cost(model, num_frames=64, size=448, text_tokens=64) == cost  # int: square
    assert cost.prefill_ratio < 0.25 < cost.ratio < 1
    encoder = build_preset("videomae-s")
    stprune.patch(encoder, "sta", r=8)
    with pytest.raises(NotImplementedError, match="not a video LLM"):
        stprune.prompt_cost(encoder)


def test_flops_on_a_checkpoint_sized_preset(capsys, tmp_path):
    out_json = tmp_path / "r.json"
    argv = ["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "0.5", "0.25", "--num-frames", "64"]
    code, out, err = run([*argv, "--image-size", "448", "--json", str(out_json)], capsys)
    assert code == 0, err
    assert "8192 tokens" in out and "| sta | keep_ratio=0.5 | 4096/8192 | 4162 |" in out
    data = json.loads(out_json.read_text())
    rows = {r["setting"]: r for r in data["results"]}
    assert rows["unpruned"]["sequence_length"] == 8258
    assert 0 < rows["keep_ratio=0.25"]["prefill_ratio"] < rows["keep_ratio=0.5"]["prefill_ratio"] < 1
    # KV cache: 2 (K, V) x 28 layers x 4 heads x 128 x 2 bytes per token
    assert rows["unpruned"]["kv_cache_mib_bf16"] == pytest.approx(8258 * 2 * 28 * 512 * 2 / 2**20)


@pytest.mark.parametrize(
    ("model", "prompt"),
    [
        (
            "qwen2.5-vl-7b",
            "prompt: one video (64 frames of 448x448, 32 x 16 x 16 = 8192 tokens) between 64 text",
        ),
        ("llava-onevision-7b", "prompt: one video (32 frames, 32 x 14 x 14 = 6272 tokens) between 64 text"),
    ],
)
def test_flops_without_a_clip_counts_the_presets_reference_video(model, prompt, capsys):
    """No --num-frames / --image-size: the README table's video, stated, not a toy example."""
    code, out, err = run(["flops", "--model", model, "--keep-ratio", "0.5"], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith(prompt)
    code, out, err = run(["flops", "--model", model, "--keep-ratio", "0.5", "--num-frames", "1"], capsys)
    assert code == 0, err
    assert "(1 frame" in out.splitlines()[0]


def test_bench_runs_on_the_small_preset(capsys):
    argv = ["bench", "--model", "qwen2.5-vl-mini", "--keep-ratio", "0.5", "--num-frames", "4"]
    argv += ["--image-size", "56", "--prompt-tokens", "4", "--rounds", "1", "--iters", "1", "--warmup", "0"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "prefill speed-up" in out and "| sta | keep_ratio=0.5 |" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "0"], "--keep-ratio"),
        (["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "1.5"], "(0, 1]"),
        (["flops", "--model", "qwen2.5-vl-7b", "--flops-target", "0.5"], "--flops-target is not defined"),
        (
            ["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "0.5", "--image-size", "10"],
            "--image-size 10: height must be an int >= 28; got 10",
        ),
        (
            ["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "0.5", "--image-size", "100"],
            "multiples of 28",
        ),
        (["flops", "--model", "qwen2.5-vl-7b", "--keep-ratio", "0.5", "--method", "tome"], "merges tokens"),
        (["flops", "--model", "llava-onevision-7b", "--keep-ratio", "0.5", "--image-size", "448"], "384x384"),
        (["flops", "--model", "videomae-b", "--keep-ratio", "0.5"], "--keep-ratio is for video LLMs"),
        (["flops", "--model", "qwen2.5-vl-7b"], "--keep-ratio"),
        (["flops", "--model", "videomae-s", "--prompt-tokens", "10"], "--prompt-tokens is for video LLMs"),
        (["show", "--model", "qwen2.5-vl-mini", "--out", "x.png"], "qwen2.5-vl-mini is a video LLM"),
        (["eval", "--model", "qwen2.5-vl-mini", "--data", "{list}", "--out", "{out}"], "is a video LLM"),
        (["export", "--model", "demo", "--method", "rlt", "--out", "{out}/m.pt2"], "--method rlt needs --r"),
    ],
)
def test_bad_values_fail_in_one_line(capsys, tmp_path, argv, needle):
    (tmp_path / "list.txt").write_text("a.mp4 0\n")
    argv = [a.format(list=tmp_path / "list.txt", out=tmp_path / "out") for a in argv]
    code, out, err = run(argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], err
