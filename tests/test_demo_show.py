"""`stprune show`: the kept-token masks per stage and the PNG it writes."""

import struct

import numpy as np
import pytest
import torch

import stprune
from stprune.cli import main
from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.show import kept_masks, render_kept_tokens
from stprune.demo.synthetic import generate_clip
from stprune.demo.videos import write_mp4


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def demo_clip(index: int = 5) -> tuple[np.ndarray, torch.Tensor]:
    info = load_demo_info()
    frames, _ = generate_clip(index, "val")
    return frames, frames_to_pixel_values(torch.from_numpy(frames)[None], info.mean, info.std)


@pytest.mark.parametrize("method", ["sta", "random"])
def test_kept_masks_follow_the_plan_and_only_shrink(method):
    model = load_demo_model()
    _, x = demo_clip()
    stprune.patch(model, method=method, r=8)
    masks, labels = kept_masks(model, x)
    plan = stprune.patch_info(model)
    assert len(masks) == len(plan.stages) == len(labels) == 3
    kept_before = np.ones_like(masks[0])
    for mask, stage in zip(masks, plan.stages, strict=True):
        assert mask.shape == (8, 36)  # 8 temporal slots of 6x6 patches
        assert not (mask & ~kept_before).any(), "a token pruned earlier came back"
        # every group of the stage loses exactly r tokens
        slots_per_group = 8 // stage.groups
        per_group = mask.reshape(stage.groups, slots_per_group * 36).sum(1)
        before = kept_before.reshape(stage.groups, slots_per_group * 36).sum(1)
        assert (per_group == before - stage.r).all()
        kept_before = mask
    assert f"after block {plan.stages[0].after_block}" in labels[0]


def test_kept_masks_match_the_trace_positions():
    model = load_demo_model()
    _, x = demo_clip(2)
    stprune.patch(model, method="sta", flops_target=0.6)
    masks, _ = kept_masks(model, x)
    last = stprune.last_trace(model).stages[-1].positions[0]
    assert sorted(np.flatnonzero(masks[-1].reshape(-1)).tolist()) == sorted(last.tolist())


def test_show_writes_a_png_with_a_row_per_stage(tmp_path, capsys):
    out = tmp_path / "vis.png"
    assert main(["show", "--model", "demo", "--clip", "3", "--flops-target", "0.6", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    width, height = png_size(out)
    assert width > height > 100  # 8 columns, 4 rows (input + 3 stages)


def test_show_reads_a_video_file(tmp_path):
    frames, _ = generate_clip(7, "val")
    video = tmp_path / "clip.mp4"
    write_mp4(video, frames)
    out = tmp_path / "vis.png"
    assert main(["show", "--model", "demo", "--video", str(video), "--r", "6", "--out", str(out)]) == 0
    png_size(out)


def test_render_whites_out_exactly_the_pruned_patches(tmp_path, monkeypatch):
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)  # 2 slots of 2x2 patches of 16 px
    mask = np.array([[True, False, True, True], [False, False, True, True]])
    drawn = []
    import matplotlib.axes

    real_imshow = matplotlib.axes.Axes.imshow

    def spy(self, img, *args, **kwargs):
        drawn.append(np.asarray(img).copy())
        return real_imshow(self, img, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    render_kept_tokens(frames, [mask], ["stage"], patch=16, tubelet=2, out=tmp_path / "r.png")
    # drawing order: slot 0 input, slot 0 stage, slot 1 input, slot 1 stage
    slot0, slot1 = drawn[1], drawn[3]
    assert (slot0[:16, 16:] == 255).all() and (slot0[:16, :16] == 0).all() and (slot0[16:] == 0).all()
    assert (slot1[:16] == 255).all() and (slot1[16:] == 0).all()


def test_show_refuses_what_it_cannot_draw(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert main(["show", "--model", "demo", "--clip", "-1", "--out", out]) == 2
    assert "-1" in capsys.readouterr().err
    model = load_demo_model()
    _, x = demo_clip()
    stprune.patch(model, method="tome", r=4)
    with pytest.raises(ValueError, match="merges tokens"):
        kept_masks(model, x)
    stprune.unpatch(model)
    with pytest.raises(ValueError, match="one clip"):
        stprune.patch(model, method="sta", r=4)
        kept_masks(model, torch.cat([x, x]))
