"""`stprune bench`'s memory column: what one forward holds beyond the weights and the input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import clip, tiny_videomae

import stprune
from stprune.bench.compare import make_settings, measure_flops_rows, measure_speed_rows
from stprune.bench.speed import LiveTensorMemory, forward_memory_mb, measure_speed
from stprune.cli import main
from stprune.errors import SettingError

MIB = 2**20


def test_live_tensor_memory_counts_new_storages_until_they_are_freed():
    weight = torch.ones(1024, 1024)  # made before tracking: never counted
    with LiveTensorMemory() as mem:
        a = torch.ones(256, 1024)  # 1 MiB
        b = a * 2  # 2 MiB live
        del a
        c = b + weight[:256]  # still 2 MiB live (a was freed)
        v = c.view(-1)  # a view: no new memory
        c.add_(1)  # in place: none
        t = weight.t()  # a view of a tensor from before: none
    assert mem.peak == 2 * MIB
    assert mem.live == 2 * MIB  # b and c (v, t are views)
    del b, c, v, t
    assert mem.live == 0


def test_forward_memory_is_deterministic_and_smaller_when_pruned():
    model = tiny_videomae(hidden=64, image=64)
    x = {"pixel_values": clip(batch=2)}
    base = forward_memory_mb(model, x)
    assert base == forward_memory_mb(model, x)  # not process noise: the same every time
    # at least the MLP's hidden activations of one block, (B, L, 2 * hidden) float32
    assert base * MIB >= 2 * 128 * 128 * 4
    assert base * MIB < x["pixel_values"].numel() * 4 * 50  # far below the process's resident set
    stprune.patch(model, r=8)
    pruned = forward_memory_mb(model, x)
    stprune.unpatch(model)
    assert pruned < base


def test_measure_speed_on_cpu_reports_forward_memory_not_process_memory():
    model = tiny_videomae()
    res = measure_speed(model, {"pixel_values": clip(batch=1)}, warmup=0, iters=1, memory=True)
    assert res.peak_memory_mb is None  # CUDA only
    assert res.forward_memory_mb == forward_memory_mb(model, {"pixel_values": clip(batch=1)})
    assert measure_speed(model, {"pixel_values": clip(1)}, 0, 1).forward_memory_mb is None  # opt-in


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"rounds": 0}, "rounds"), ({"batch_size": 0}, "batch_size"), ({"iters": 0}, "iters")],
)
def test_measure_speed_rows_rejects_bad_counts(kwargs, name):
    model = tiny_videomae()
    rows = measure_flops_rows(model, make_settings([4]))
    with pytest.raises(SettingError, match=f"{name} must be >= 1; got 0"):
        measure_speed_rows(model, rows, **kwargs)


def test_bench_json_and_table_carry_forward_memory(tmp_path, capsys):
    d = tmp_path / "m"
    tiny_videomae().save_pretrained(d)
    out = tmp_path / "b.json"
    argv = ["bench", "--model", str(d), "--r", "4", "--iters", "1", "--warmup", "0", "--rounds", "1"]
    assert main([*argv, "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fwd MiB |" in printed and "fwd MiB: memory one forward" in printed
    res = json.loads(out.read_text())["results"]
    assert all(r["forward_memory_mb"] > 0 and r["peak_memory_mb"] is None for r in res)
    assert res[1]["forward_memory_mb"] < res[0]["forward_memory_mb"]
