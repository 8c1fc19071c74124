"""`stprune show`: the kept-token masks per pruning point, the figure and the PNG it writes, on
every model family (VideoMAE, ViViT, Video Swin)."""

import struct

import numpy as np
import pytest
import torch
from conftest import TINY_SWIN, tiny_videomae, tiny_vivit

import stprune
from stprune.adapters.base import InputGrid
from stprune.cli import main
from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.show import (
    StageMask,
    kept_figure,
    kept_masks,
    render_kept_tokens,
    show,
    show_model,
    synthetic_clip,
)
from stprune.demo.synthetic import generate_clip
from stprune.demo.videos import write_mp4
from stprune.errors import SettingError
from stprune.models import VideoSwin, get_adapter

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def demo_clip(index: int = 5) -> tuple[np.ndarray, torch.Tensor]:
    info = load_demo_info()
    frames, _ = generate_clip(index, "val")
    return frames, frames_to_pixel_values(torch.from_numpy(frames)[None], info.mean, info.std)


def tiny_swin() -> VideoSwin:
    torch.manual_seed(0)
    return VideoSwin(TINY_SWIN).eval()


@pytest.mark.parametrize("method", ["sta", "random"])
def test_kept_masks_follow_the_plan_and_only_shrink(method):
    model = load_demo_model()
    _, x = demo_clip()
    stprune.patch(model, method=method, r=8)
    masks, logits = kept_masks(model, x)
    plan = stprune.patch_info(model)
    assert logits.shape == (1, 12)
    assert len(masks) == len(plan.stages) == 3
    kept_before = np.ones((8, 36), dtype=bool)
    for sm, stage in zip(masks, plan.stages, strict=True):
        assert sm.mask.shape == (8, 6, 6)  # 8 temporal slots of 6x6 patches
        mask = sm.mask.reshape(8, 36)
        assert sm.kept == mask.sum() and sm.total == 288
        assert not (mask & ~kept_before).any(), "a token pruned earlier came back"
        # every group of the stage loses exactly r tokens
        slots_per_group = 8 // stage.groups
        per_group = mask.reshape(stage.groups, slots_per_group * 36).sum(1)
        before = kept_before.reshape(stage.groups, slots_per_group * 36).sum(1)
        assert (per_group == before - stage.r).all()
        kept_before = mask
    assert f"after block {plan.stages[0].after_block}" in masks[0].label


def test_kept_masks_match_the_trace_positions():
    model = load_demo_model()
    _, x = demo_clip(2)
    stprune.patch(model, method="sta", flops_target=0.6)
    masks, _ = kept_masks(model, x)
    last = stprune.last_trace(model).stages[-1].positions[0]
    assert sorted(np.flatnonzero(masks[-1].mask.reshape(-1)).tolist()) == sorted(last.tolist())


def test_show_writes_a_png_with_a_row_per_stage(tmp_path, capsys):
    out = tmp_path / "vis.png"
    assert main(["show", "--model", "demo", "--clip", "3", "--flops-target", "0.6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "prediction:" in printed and "kept " in printed
    width, height = png_size(out)
    assert width > height > 100  # 8 columns, 4 rows (input + 3 stages)


def test_show_of_the_hard_demo_model_draws_a_hard_task_clip(tmp_path, capsys, monkeypatch):
    import stprune.demo.show as show_mod
    from stprune.demo.tasks import generate_clip

    seen = []
    real = show_mod.show_model
    monkeypatch.setattr(
        show_mod,
        "show_model",
        lambda model, out, frames, *a: seen.append(frames) or real(model, out, frames, *a),
    )
    out = tmp_path / "hard.png"
    assert main(["show", "--model", "demo-hard", "--clip", "2", "--out", str(out)]) == 0
    frames, label = generate_clip("hard", 2, "val")
    np.testing.assert_array_equal(seen[0], frames)
    printed = capsys.readouterr().out
    assert "hard demo validation clip 2 (label: " in printed and f"(class {label}))" in printed


def test_show_reads_a_video_file(tmp_path):
    frames, _ = generate_clip(7, "val")
    video = tmp_path / "clip.mp4"
    write_mp4(video, frames)
    out = tmp_path / "vis.png"
    assert main(["show", "--model", "demo", "--video", str(video), "--r", "6", "--out", str(out)]) == 0
    png_size(out)


def test_show_labels_columns_with_the_frames_it_sampled(tmp_path, monkeypatch):
    """A 40-frame video: 16 frames spread over it; each column names its first frame's index in the
    video (1, 6, 11, ...), not its place in the clip (0, 2, 4, ...)."""
    from stprune.demo import show as show_module
    from stprune.eval.sampling import ssv2_clip_indices

    frames = np.concatenate(
        [generate_clip(7, "val")[0], generate_clip(8, "val")[0], generate_clip(9, "val")[0]]
    )
    video = tmp_path / "long.mp4"
    write_mp4(video, frames[:40])
    titles: list[list[str]] = []
    draw = show_module.kept_figure

    def spy(*args, **kwargs):
        fig = draw(*args, **kwargs)
        titles.append([ax.get_title() for ax in fig.axes[:8]])  # the input row, one panel per slot
        return fig

    monkeypatch.setattr(show_module, "kept_figure", spy)
    show("demo", tmp_path / "v.png", video=video, r=6)
    sampled = ssv2_clip_indices(40, 16, 1)[0]
    assert titles[-1] == [f"frame {sampled[2 * s]}" for s in range(8)]
    assert titles[-1][:3] == ["frame 1", "frame 6", "frame 11"]
    show("demo", tmp_path / "c.png", clip=2, r=6)  # a demo clip: its own 16 frames, in order
    assert titles[-1] == [f"frame {2 * s}" for s in range(8)]


def test_show_refuses_a_text_file_and_a_too_short_video(tmp_path, capsys):
    listed = tmp_path / "LIST.txt"  # a video list given as --video: FFmpeg's tty demuxer opens it
    listed.write_text("".join(f"videos/val_{i:05d}.mp4 {i % 12}\n" for i in range(400)))
    code = main(["show", "--video", str(listed), "--out", str(tmp_path / "a.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "LIST.txt' is a text file, not a video" in err
    short = tmp_path / "short.mp4"
    write_mp4(short, generate_clip(7, "val")[0][:5])
    code = main(["show", "--video", str(short), "--out", str(tmp_path / "b.png")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "short.mp4' has 5 frames; the model takes 16 per clip" in err
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_show_predicts_what_the_pruned_model_predicts(tmp_path):
    res = show("demo", tmp_path / "p.png", clip=4, r=8)
    model = load_demo_model()
    _, x = demo_clip(4)
    with torch.no_grad():
        unpruned = int(model(pixel_values=x).logits.argmax(-1))
        stprune.patch(model, method="sta", r=8)
        pruned = int(model(pixel_values=x).logits.argmax(-1))
    assert (res.prediction, res.prediction_unpruned) == (pruned, unpruned)
    names = load_demo_info().class_names
    assert f"prediction: {names[pruned]} (class {pruned})" in res.title
    ratio = stprune.patch_info(model).flops_ratio  # a ViT's plan is what every clip uses
    assert res.title.startswith(f"sta, FLOPs ratio {ratio:.2f} on this clip: ") and "planned" not in res.title
    assert [sm.kept for sm in res.stages] == [288 - 8 * 8, 224 - 4 * 8, 192 - 2 * 8]  # T0, T0/2, T0/4 groups


def test_render_whites_out_exactly_the_pruned_patches(tmp_path, monkeypatch):
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)  # 2 slots of 2x2 patches of 16 px
    mask = np.array([[True, False, True, True], [False, False, True, True]]).reshape(2, 2, 2)
    grid = InputGrid("pixel_values", "BTCHW", 4, (32, 32), 2, (2, 2), 2, (16, 16))
    drawn = []
    import matplotlib.axes

    real_imshow = matplotlib.axes.Axes.imshow

    def spy(self, img, *args, **kwargs):
        drawn.append(np.asarray(img).copy())
        return real_imshow(self, img, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    render_kept_tokens(frames, [StageMask("stage", mask, 5, 8)], grid, tmp_path / "r.png")
    # drawing order: slot 0 input, slot 0 stage, slot 1 input, slot 1 stage
    slot0, slot1 = drawn[1], drawn[3]
    assert (slot0[:16, 16:] == 255).all() and (slot0[:16, :16] == 0).all() and (slot0[16:] == 0).all()
    assert (slot1[:16] == 255).all() and (slot1[16:] == 0).all()


def test_a_coarser_grid_whites_out_larger_cells(monkeypatch):
    """A Swin stage after patch merging: one cell of a 1x1 grid covers the whole 2x2 input grid."""
    frames = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    grid = InputGrid("x", "BCTHW", 2, (32, 32), 1, (2, 2), 2, (16, 16))
    fig = kept_figure(frames, [StageMask("merged", np.zeros((1, 1, 1), dtype=bool), 0, 1)], grid)
    img = fig.axes[1].get_images()[0].get_array()
    assert (np.asarray(img) == 255).all()


def test_the_figure_has_a_legend_titles_and_a_panel_per_slot_and_stage():
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    grid = InputGrid("pixel_values", "BTCHW", 4, (32, 32), 2, (2, 2), 2, (16, 16))
    masks = [StageMask(f"after block {b} (r=1)", np.ones((2, 2, 2), dtype=bool), 8, 8) for b in (0, 1, 2)]
    fig = kept_figure(frames, masks, grid, title="sta: prediction: class 1")
    assert len(fig.axes) == (1 + 3) * 2
    legend = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
    assert "white" in legend and "pruned" in legend
    assert "kept 8/8" in fig.axes[2].get_ylabel()  # row label of the first pruning point
    assert fig.axes[3].get_title() == "4/4"  # kept / tokens of that slot


def family_models(tmp_path):
    vm, vv = tmp_path / "videomae", tmp_path / "vivit"
    tiny_videomae(frames=16, image=64).save_pretrained(vm)
    tiny_vivit(frames=16, image=64).save_pretrained(vv)
    return vm, vv


@pytest.mark.filterwarnings("ignore:.*no image_mean/image_std")  # tiny dirs have no processor config
@pytest.mark.parametrize("family", ["videomae", "vivit"])
def test_show_works_on_every_hf_family(tmp_path, capsys, family):
    vm, vv = family_models(tmp_path)
    out = tmp_path / f"{family}.png"
    spec = str(vm if family == "videomae" else vv)
    assert main(["show", "--model", spec, "--clip", "2", "--r", "4", "--out", str(out)]) == 0
    assert out.is_file() and png_size(out)[0] > 100
    res = show(spec, tmp_path / "again.png", clip=2, r=4)
    assert (res.rows, res.columns, res.panels) == (4, 8, 32)  # input + 3 stages, 8 slots
    assert [sm.mask.shape for sm in res.stages] == [(8, 4, 4)] * 3
    assert [sm.total for sm in res.stages] == [128] * 3  # ViViT's CLS token is not drawn
    assert [sm.kept for sm in res.stages] == [128 - 8 * 4, 96 - 4 * 4, 80 - 2 * 4]


def test_show_works_on_video_swin(tmp_path):
    model = tiny_swin()
    grid = get_adapter(model).input_grid()
    assert grid == InputGrid("x", "BCTHW", 8, (64, 64), 4, (16, 16), 2, (4, 4), 0)
    frames, _ = synthetic_clip(1, grid.num_frames, grid.image_size)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    res = show_model(model, tmp_path / "swin.png", frames, MEAN, STD, "tiny swin", r=2)
    assert (tmp_path / "swin.png").is_file()
    stprune.patch(model, r=2)
    points = stprune.patch_info(model).stages
    stprune.unpatch(model)
    assert len(res.stages) == len(points) >= 2 and res.columns == 4
    assert res.panels == (1 + len(points)) * 4
    grids = {(4, 16, 16), (4, 8, 8), (4, 4, 4), (4, 2, 2)}
    assert {sm.mask.shape for sm in res.stages} <= grids
    for sm in res.stages:
        assert 0 < sm.kept < sm.total == sm.mask.size and sm.kept == sm.mask.sum()
    assert not stprune.is_patched(model)


@pytest.mark.slow
def test_show_cli_on_the_video_swin_preset(tmp_path, capsys):
    out = tmp_path / "swin_t.png"
    assert main(["show", "--model", "video-swin-t", "--clip", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "after block 0 (r=" in printed and "prediction: class" in printed
    assert png_size(out)[0] > 500


def test_synthetic_clip_is_resampled_to_the_model_input():
    frames, label = synthetic_clip(3, 32, (112, 128))
    assert frames.shape == (32, 112, 128, 3) and frames.dtype == np.uint8
    same, same_label = synthetic_clip(3, 16, (96, 96))
    demo, demo_label = generate_clip(3, "val")
    assert np.array_equal(same, demo) and label == same_label == demo_label


def test_show_refuses_what_it_cannot_draw(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert main(["show", "--model", "demo", "--clip", "-1", "--out", out]) == 2
    assert "-1" in capsys.readouterr().err
    with pytest.raises(SettingError, match="-1"):
        show("demo", out, clip=-1)
    model = load_demo_model()
    _, x = demo_clip()
    stprune.patch(model, method="tome", r=4)
    with pytest.raises(SettingError, match="merges tokens"):
        kept_masks(model, x)
    stprune.unpatch(model)
    with pytest.raises(SettingError, match="one clip"):
        stprune.patch(model, method="sta", r=4)
        kept_masks(model, torch.cat([x, x]))


@pytest.mark.parametrize(
    ("args", "kw"),
    [(["--rlt-threshold", "0.1"], {"threshold": 0.1}), (["--method", "rlt", "--r", "100"], {"r": 100})],
)
def test_show_draws_rlt_input_stage(tmp_path, capsys, args, kw):
    out = tmp_path / "rlt.png"
    assert main(["show", "--model", "demo", "--clip", "3", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    png_size(out)
    model = load_demo_model()
    _, x = demo_clip(3)
    stprune.patch(model, method="rlt", **kw)
    masks, _ = kept_masks(model, x)
    st = stprune.last_trace(model).stages[0]
    assert len(masks) == 1 and masks[0].label.startswith("input, before block 0")
    assert sorted(np.flatnonzero(masks[0].mask.reshape(-1)).tolist()) == st.positions[0].tolist()
    assert f"kept {masks[0].kept}/288 tokens" in printed
    assert masks[0].mask[0].all()  # the first tubelet is always kept


def test_show_rlt_threshold_needs_rlt(tmp_path, capsys):
    out = str(tmp_path / "x.png")
    assert main(["show", "--clip", "1", "--method", "sta", "--rlt-threshold", "0.1", "--out", out]) == 2
    assert "--rlt-threshold" in capsys.readouterr().err
