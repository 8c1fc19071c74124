"""`stprune demo`: the fast mode end to end, its JSON and plot, and every method at a FLOPs target
on the bundled model."""

import json
import struct

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import stprune
from stprune.cli import main
from stprune.demo.benchmark import demo_settings, run_demo
from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.synthetic import generate_clips
from stprune.methods import encoder_methods

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def measured_macs(model, x) -> int:
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        model(pixel_values=x)
    return counter.get_total_flops() // 2


@pytest.fixture(scope="module")
def clips():
    info = load_demo_info()
    frames, labels = generate_clips(range(16), "val", 0)
    return frames_to_pixel_values(frames, info.mean, info.std), torch.as_tensor(labels)


def test_fast_demo_writes_the_documented_json_and_a_png(tmp_path, capsys):
    out_json, out_png = tmp_path / "demo.json", tmp_path / "demo.png"
    code = main(
        ["demo", "--fast", "--task", "easy", "--clips", "16", "--json", str(out_json), "--plot", str(out_png)]
        + ["--no-progress"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "flops_target=0.7" in printed and "unpruned" in printed
    results = json.loads(out_json.read_text())["results"]
    # every encoder method at the target, then RLT in its threshold mode (the demo gained RLT)
    assert [(r["method"], r["setting"]) for r in results] == [("none", "unpruned")] + [
        (m, "flops_target=0.7") for m in encoder_methods()
    ] + [("rlt", "threshold=0.1")]
    for r in results:
        assert {"method", "setting", "gflops", "top1", "clips_per_s"} <= set(r)
        assert isinstance(r["setting"], str)
        assert 0.0 <= r["top1"] <= 100.0 and r["clips_per_s"] > 0 and r["gflops"] > 0
        assert r["adaptive"] == (r["setting"] == "threshold=0.1")
    base = results[0]
    for r in results[1:]:
        assert r["gflops"] < base["gflops"]
        if not r["adaptive"]:
            assert r["gflops"] / base["gflops"] <= 0.7 + 0.02, r  # ToMe's r is planned, so allow rounding
    width, height = png_size(out_png)
    assert width > 200 and height > 200


def test_demo_rows_match_an_independent_evaluation(clips):
    """The demo's unpruned and STA top-1 are what evaluating the model directly gives."""
    x, labels = clips
    rows = run_demo(num_clips=16, targets=[0.7], methods=["sta"], batch_size=8, progress=False)
    assert [r.method for r in rows] == ["none", "sta"]
    model = load_demo_model()
    with torch.no_grad():
        base_top1 = 100.0 * (model(pixel_values=x).logits.argmax(-1) == labels).float().mean().item()
        stprune.patch(model, method="sta", flops_target=0.7)
        sta_top1 = 100.0 * (model(pixel_values=x).logits.argmax(-1) == labels).float().mean().item()
        r_sta = [s.r for s in stprune.patch_info(model).stages]
    assert rows[0].top1 == pytest.approx(base_top1)
    assert rows[1].top1 == pytest.approx(sta_top1)
    assert rows[1].r_per_stage == r_sta


@pytest.mark.parametrize("method", ["sta", "tome", "random"])
@pytest.mark.parametrize("target", [0.8, 0.6])
def test_each_method_meets_a_flops_target_on_the_demo_model(method, target, clips):
    x, labels = clips
    model = load_demo_model()
    base = measured_macs(model, x[:1])
    stprune.patch(model, method=method, flops_target=target)
    ratio = measured_macs(model, x[:1]) / base
    # measured FLOPs honour the target (ToMe plans with its per-block r, so allow its rounding)
    assert ratio <= target + (0.02 if method == "tome" else 1e-9), ratio
    assert ratio >= target - 0.12, ratio  # and do not overshoot wildly
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    assert logits.shape == (len(x), 12) and torch.isfinite(logits).all()
    stprune.unpatch(model)


def test_sta_keeps_the_demo_accuracy(clips):
    """The bundled model learned the task and STA's kept tokens carry it (48 fixed clips)."""
    info = load_demo_info()
    frames, labels = generate_clips(range(48), "val", 0)
    x, y = frames_to_pixel_values(frames, info.mean, info.std), torch.as_tensor(labels)
    model = load_demo_model()

    def top1() -> float:
        with torch.no_grad():
            return (model(pixel_values=x).logits.argmax(-1) == y).float().mean().item()

    base = top1()
    stprune.patch(model, method="sta", flops_target=0.7)
    sta = top1()
    stprune.unpatch(model)
    assert base >= 0.75, base  # chance is 1/12
    assert sta >= base - 0.1, (sta, base)


def test_demo_skips_a_target_a_method_cannot_reach(capsys):
    """ToMe's constant r per block cannot reach 0.5x on the 6-block demo model: a note, no crash."""
    rows = run_demo(num_clips=4, targets=[0.5], methods=["sta", "tome"], batch_size=4, progress=False)
    assert [r.method for r in rows] == ["none", "sta"]
    assert rows[1].ratio <= 0.5
    assert "skipped tome flops_target=0.5" in capsys.readouterr().out


def test_demo_rejects_bad_settings(capsys):
    assert main(["demo", "--fast", "--targets", "1.5", "--no-progress"]) == 2
    assert "1.5" in capsys.readouterr().err
    with pytest.raises(ValueError, match="0"):
        demo_settings([0.0])
    with pytest.raises(ValueError, match="'pca'"):
        demo_settings([0.7], ["sta", "pca"])
    with pytest.raises(ValueError, match="num_clips"):
        run_demo(num_clips=0, progress=False)


def test_demo_plot_accuracy_axis_ends_at_100_percent():
    from stprune.demo.benchmark import DemoRow, demo_figure

    rows = [
        DemoRow("none", "unpruned", 1.04, 1.0, 100.0, 51.1, []),
        DemoRow("sta", "flops_target=0.7", 0.70, 0.68, 99.8, 74.5, [10, 10, 10]),
        DemoRow("random", "flops_target=0.5", 0.50, 0.48, 95.4, 98.8, [17, 17, 17]),
    ]
    fig = demo_figure(rows)
    low, high = fig.axes[0].get_ylim()
    assert high == 100.0 and low <= 95.4
    assert fig.axes[0].get_ylabel() == "top-1 (%)"
