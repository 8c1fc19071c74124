"""Video Swin architecture: against slow, independent references written here.

The references follow torchvision's ``swin3d_*`` / the official Video Swin code as read from
their sources, but are formulated differently from ``stprune.architectures.video_swin.model``:

* attention over the whole padded grid with a dense mask (tokens attend only inside their
  rolled window) instead of pad/roll/partition/reverse;
* the shift mask from "did the cyclic roll wrap this token around" instead of region slices;
* patch merging via reshape/permute instead of strided slices;
* the whole network as a functional forward that reads torchvision key names directly.

Equivalence with torchvision itself is checked by ``tests/test_video_swin_reference_data.py``
against data written by ``benchmarks/swin_torchvision_parity.py`` (run in a separate venv).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from stprune.architectures.video_swin.model import (
    relative_position_index,
    shift_attention_mask,
    window_attention,
    window_layout,
    window_partition,
    window_reverse,
)
from stprune.architectures.video_swin.weights import export_state_dict
from stprune.models import (
    VideoSwin,
    VideoSwinConfig,
    load_video_swin,
    video_swin_b,
    video_swin_s,
    video_swin_t,
)

SMALL = VideoSwinConfig(
    embed_dim=8,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    num_classes=5,
    patch_size=(2, 4, 4),
    window_size=(2, 3, 3),
)


def randomized(model: VideoSwin, seed: int) -> VideoSwin:
    """Fill every parameter with random values (LayerNorm weights around 1), in place."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            if "relative_position_bias_table" in name:
                p.copy_(0.5 * noise)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.15 * noise)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------


def ref_window_attention(x, sd, prefix, heads, window, nominal_shift):
    """Windowed attention of torchvision's ``shifted_window_attention_3d``, formulated globally.

    x: (B, T, H, W, C) float64, already normed. Returns (B, T, H, W, C) after the projection.
    """
    b, t, h, w, c = x.shape
    grid = (t, h, w)
    win = [g if g <= n else n for g, n in zip(grid, window, strict=True)]
    shift = [0 if g <= n else s for g, n, s in zip(grid, window, nominal_shift, strict=True)]
    padded = [math.ceil(g / n) * n for g, n in zip(grid, win, strict=True)]
    xp = x.new_zeros(b, *padded, c)
    xp[:, :t, :h, :w] = x
    count = padded[0] * padded[1] * padded[2]
    coords = torch.stack(torch.meshgrid(*[torch.arange(p) for p in padded], indexing="ij"), -1).reshape(
        count, 3
    )
    rolled = (coords - torch.tensor(shift)) % torch.tensor(padded)
    window_id = rolled // torch.tensor(win)
    same_window = (window_id[:, None, :] == window_id[None, :, :]).all(-1)
    inner = rolled % torch.tensor(win)
    flat = inner[:, 0] * win[1] * win[2] + inner[:, 1] * win[2] + inner[:, 2]
    # both references index the full window's table with the flat position inside the (possibly
    # shrunk) window, i.e. they read that flat position as a coordinate of the full window
    wt, wh, ww = window
    full = torch.stack([flat // (wh * ww), (flat // ww) % wh, flat % ww], -1)
    rel = full[:, None, :] - full[None, :, :] + torch.tensor([wt - 1, wh - 1, ww - 1])
    index = rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]
    bias = sd[prefix + "attn.relative_position_bias_table"][index].permute(2, 0, 1)  # (heads, L, L)
    wrapped = coords < torch.tensor(shift)  # positions the roll carried around the border
    crossed = (wrapped[:, None, :] != wrapped[None, :, :]).any(-1)
    tokens = xp.reshape(b, count, c)
    qkv = F.linear(tokens, sd[prefix + "attn.qkv.weight"], sd[prefix + "attn.qkv.bias"])
    q, k, v = qkv.view(b, count, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (q * (c // heads) ** -0.5) @ k.transpose(-1, -2) + bias + crossed * -100.0
    logits = logits.masked_fill(~same_window, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, count, c)
    out = F.linear(out, sd[prefix + "attn.proj.weight"], sd[prefix + "attn.proj.bias"])
    return out.reshape(b, *padded, c)[:, :t, :h, :w]


def ref_merge(x, sd, prefix):
    b, t, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    h2, w2 = x.shape[2] // 2, x.shape[3] // 2
    x = x.reshape(b, t, h2, 2, w2, 2, c).permute(0, 1, 2, 4, 5, 3, 6).reshape(b, t, h2, w2, 4 * c)
    x = F.layer_norm(x, (4 * c,), sd[prefix + "norm.weight"], sd[prefix + "norm.bias"])
    return F.linear(x, sd[prefix + "reduction.weight"])


def ref_layer_norm(x, sd, name):
    return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def reference_forward(sd, cfg, clip):
    """The whole classifier, reading torchvision ``swin3d`` key names."""
    pads = [(-s) % p for s, p in zip(clip.shape[2:], cfg.patch_size, strict=True)]
    clip = F.pad(clip, (0, pads[2], 0, pads[1], 0, pads[0]))
    x = F.conv3d(clip, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = ref_layer_norm(x.permute(0, 2, 3, 4, 1), sd, "patch_embed.norm")
    for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
        for j in range(depth):
            p = f"features.{2 * i}.{j}."
            shift = (0, 0, 0) if j % 2 == 0 else tuple(n // 2 for n in cfg.window_size)
            x = x + ref_window_attention(
                ref_layer_norm(x, sd, p + "norm1"), sd, p, heads, cfg.window_size, shift
            )
            hidden = F.gelu(
                F.linear(ref_layer_norm(x, sd, p + "norm2"), sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"])
            )
            x = x + F.linear(hidden, sd[p + "mlp.3.weight"], sd[p + "mlp.3.bias"])
        if i < len(cfg.depths) - 1:
            x = ref_merge(x, sd, f"features.{2 * i + 1}.")
    x = ref_layer_norm(x, sd, "norm").mean(dim=(1, 2, 3))
    return F.linear(x, sd["head.weight"], sd["head.bias"])


def ref_mask_by_slices(padded, window, shift):
    """The shift mask built the way both references build it: region ids by Python slices."""
    ids = torch.zeros(padded)
    count = 0
    spans = [((0, -n), (-n, -s), (-s, None)) for n, s in zip(window, shift, strict=True)]
    for a in spans[0]:
        for b in spans[1]:
            for c in spans[2]:
                ids[a[0] : a[1], b[0] : b[1], c[0] : c[1]] = count
                count += 1
    wins = window_partition(ids[None, ..., None], window)[..., 0]
    diff = wins[:, None, :] - wins[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


# ---------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("padded", "window", "shift"),
    [
        ((4, 6, 6), (2, 3, 3), (1, 1, 1)),
        ((2, 6, 9), (2, 3, 3), (0, 1, 1)),
        ((8, 14, 14), (8, 7, 7), (4, 3, 3)),
    ],
)
def test_shift_mask_matches_slice_construction(padded, window, shift):
    ours = shift_attention_mask(padded, window, shift, dtype=torch.float64)
    assert torch.equal(ours, ref_mask_by_slices(padded, window, shift).to(torch.float64))
    assert (ours == -100).any()  # the case really masks something


def test_relative_position_index_by_coordinates():
    window = (2, 3, 4)
    index = relative_position_index(window)
    coords = [(t, h, w) for t in range(2) for h in range(3) for w in range(4)]
    spans = [2 * n - 1 for n in window]
    for i, a in enumerate(coords):
        for j, b in enumerate(coords):
            d = [a[k] - b[k] + window[k] - 1 for k in range(3)]
            assert index[i, j] == (d[0] * spans[1] + d[1]) * spans[2] + d[2]
    assert index.max() == spans[0] * spans[1] * spans[2] - 1


def test_window_partition_roundtrip_and_order():
    x = torch.arange(2 * 4 * 6 * 3 * 1, dtype=torch.float32).view(2, 4, 6, 3, 1)
    windows = window_partition(x, (2, 3, 3))
    assert windows.shape == (2 * 2 * 2 * 1, 18, 1)
    # second window of the first clip: t in [0, 2), h in [3, 6), w in [0, 3), raster order
    expected = x[0, 0:2, 3:6, 0:3].reshape(-1, 1)
    assert torch.equal(windows[1], expected)
    assert torch.equal(window_reverse(windows, (2, 3, 3), (4, 6, 3)), x)


def test_patch_merging_neighbour_order():
    model = VideoSwin(SMALL)
    merge = model.stages[0].downsample
    x = torch.zeros(1, 1, 2, 2, 8)
    for dh in range(2):
        for dw in range(2):
            x[0, 0, dh, dw] = 10 * dh + dw + 1
    merged = merge.merge(x)[0, 0, 0, 0].view(4, 8)[:, 0]
    assert merged.tolist() == [1, 11, 2, 12]  # (h0,w0), (h1,w0), (h0,w1), (h1,w1)


@pytest.mark.parametrize(
    ("grid", "shifted"),
    [
        ((3, 5, 5), True),  # padding on every axis + shift
        ((4, 6, 6), True),  # exact multiples + shift
        ((1, 5, 2), True),  # T and W shrink the window, H pads and shifts
        ((2, 2, 2), False),  # shrunk window of 8 tokens: the bias-index corner case
        ((3, 5, 5), False),
    ],
)
def test_block_attention_matches_reference(grid, shifted):
    model = randomized(VideoSwin(SMALL).double(), seed=1)
    block = model.stages[1].blocks[1 if shifted else 0]  # 16 channels, 2 heads
    x = torch.randn(2, *grid, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    layout = block.layout(grid)
    ours = block.attention_branch(x, layout)
    sd = {"b." + k: v for k, v in block.state_dict().items()}
    ref = ref_window_attention(block.norm1(x), sd, "b.", 2, SMALL.window_size, block.shift_size)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    assert layout.is_shifted == (shifted and grid != (2, 2, 2))


def test_window_attention_bias_per_window_equals_broadcast():
    """The windows-into-heads fold (bias per window position, B > 1) matches a full bias."""
    gen = torch.Generator().manual_seed(3)
    clips, nw, n, c, heads = 3, 4, 6, 8, 2
    windows = torch.randn(clips * nw, n, c, generator=gen, dtype=torch.float64)
    qkv_w, proj_w = (
        torch.randn(3 * c, c, generator=gen, dtype=torch.float64),
        torch.eye(c, dtype=torch.float64),
    )
    bias = torch.randn(nw, heads, n, n, generator=gen, dtype=torch.float64)
    folded = window_attention(windows, qkv_w, None, proj_w, None, heads, bias)
    full = window_attention(windows, qkv_w, None, proj_w, None, heads, bias.repeat(clips, 1, 1, 1))
    torch.testing.assert_close(folded, full, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="must divide"):
        window_attention(windows, qkv_w, None, proj_w, None, heads, bias.repeat(2, 1, 1, 1)[:5])


def test_window_layout_rules():
    layout = window_layout((8, 7, 7), (8, 7, 7), (4, 3, 3))
    assert (layout.window, layout.shift, layout.num_windows) == ((8, 7, 7), (0, 0, 0), 1)
    layout = window_layout((16, 9, 15), (8, 7, 7), (4, 3, 3))
    assert (layout.window, layout.shift, layout.padded) == ((8, 7, 7), (4, 3, 3), (16, 14, 21))
    assert layout.num_windows == 2 * 2 * 3 and layout.window_tokens == 392


# ---------------------------------------------------------------------------------------------
# whole model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 7, 44, 36), (1, 3, 2, 20, 20)])
def test_model_matches_reference_forward(shape):
    model = randomized(VideoSwin(SMALL).double(), seed=4)
    clip = torch.randn(*shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torchvision_sd = export_state_dict(model, "torchvision")
    ref = reference_forward(torchvision_sd, SMALL, clip)
    with torch.no_grad():
        ours = model(clip)
    assert ours.shape == (shape[0], SMALL.num_classes)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    assert ref.abs().max() > 1e-3  # not a degenerate all-zero comparison


def test_batch_equals_single_clips():
    model = randomized(VideoSwin(SMALL), seed=6)
    clips = torch.randn(3, 3, 4, 24, 24, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        batched = model(clips)
        single = torch.cat([model(clips[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_attention_runs_through_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(kwargs.get("attn_mask").shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    model = VideoSwin(SMALL).eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 4, 24, 24))
    assert len(calls) == sum(SMALL.depths)


@pytest.mark.parametrize(
    ("build", "params"),
    [(video_swin_t, 28158070), (video_swin_s, 49816678), (video_swin_b, 88048984)],
)
def test_parameter_counts_match_torchvision(build, params):
    # torchvision documents these num_params for swin3d_t/s/b with 400 classes
    with torch.device("meta"):
        model = build()
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("arch", ["t", "s", "b"])
def test_t_s_b_forward_small_clip(arch):
    with torch.device("meta"):
        shapes = {
            k: v.shape
            for k, v in {"t": video_swin_t, "s": video_swin_s, "b": video_swin_b}[arch](3)
            .state_dict()
            .items()
        }
    gen = torch.Generator().manual_seed(8)
    # views into one random buffer: tens of millions of fresh random numbers would dominate the test
    pool = 0.02 * torch.randn(1 << 22, generator=gen)  # the largest tensor (B's stage-4 MLP) has 2**22
    sd = {k: pool[: s.numel()].view(s) for k, s in shapes.items()}
    model = load_video_swin(sd, arch=arch)
    # 4 frames x 64 x 64: token grid (2, 16, 16) -> (2, 2, 2) at stage 4; every stage shrinks the
    # temporal window to 2, stages 3-4 also the spatial one
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 4, 64, 64, generator=gen))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert model.config.depths[2] == (6 if arch == "t" else 18)


def test_dropout_and_drop_path_only_in_training():
    with torch.device("meta"):
        noisy = video_swin_t(
            num_classes=5, drop_path_rate=0.5, dropout=0.3, attention_dropout=0.3, head_dropout=0.5
        )
    assert noisy.stages[3].blocks[1].drop_path_rate == pytest.approx(0.5)
    assert noisy.stages[0].blocks[0].drop_path_rate == 0.0
    model = VideoSwin(dataclasses.replace(SMALL, drop_path_rate=0.5, dropout=0.2, attention_dropout=0.2))
    randomized(model, seed=9)
    clip = torch.randn(2, 3, 4, 24, 24, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        a, b = model(clip), model(clip)
        torch.testing.assert_close(a, b)  # eval: deterministic
        model.train()
        torch.manual_seed(0)
        c = model(clip)
    assert not torch.allclose(a, c)


def test_bad_inputs_raise():
    model = VideoSwin(SMALL)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.randn(3, 4, 24, 24))
    with pytest.raises(ValueError, match="3 input channels"):
        model(torch.randn(1, 1, 4, 24, 24))
    with pytest.raises(ValueError, match="num_heads"):
        VideoSwinConfig(embed_dim=10, depths=(2,), num_heads=(3,))
    with pytest.raises(ValueError, match="window_size"):
        VideoSwinConfig(window_size=(0, 7, 7))
    with pytest.raises(ValueError, match="drop_path_rate"):
        VideoSwinConfig(drop_path_rate=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        video_swin_t(num_classes=0)
    with pytest.raises(TypeError, match="depths"):
        video_swin_t(depths=(1, 1, 1, 1))


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------


def analytic_macs(cfg: VideoSwinConfig, clip_shape) -> int:
    """Multiply-accumulates of matmuls/convs: what FlopCounterMode counts (x2)."""
    b, cin = clip_shape[:2]
    grid = [math.ceil(s / p) for s, p in zip(clip_shape[2:], cfg.patch_size, strict=True)]
    macs = math.prod(grid) * cfg.embed_dim * cin * math.prod(cfg.patch_size)  # patch embedding
    for i, depth in enumerate(cfg.depths):
        c = cfg.stage_dim(i)
        tokens = math.prod(grid)
        win = [g if g <= n else n for g, n in zip(grid, cfg.window_size, strict=True)]
        padded = math.prod(math.ceil(g / n) * n for g, n in zip(grid, win, strict=True))
        # qkv, q@k and attn@v over padded windows, output projection; MLP on real tokens only
        per_block = padded * 3 * c * c + 2 * padded * math.prod(win) * c + padded * c * c
        per_block += 2 * tokens * c * int(c * cfg.mlp_ratio)
        macs += depth * per_block
        if i < len(cfg.depths) - 1:
            grid = [grid[0], math.ceil(grid[1] / 2), math.ceil(grid[2] / 2)]
            macs += math.prod(grid) * 4 * c * 2 * c
    macs += cfg.num_features * cfg.num_classes
    return b * macs


def counted_macs(model, clip) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(clip)
    return counter.get_total_flops() // 2


def test_flops_small_clip_match_analytic():
    shape = (2, 3, 7, 44, 36)  # padding, shift and shrunk windows all occur
    assert counted_macs(VideoSwin(SMALL), torch.randn(shape)) == analytic_macs(SMALL, shape)


@pytest.mark.parametrize(
    ("build", "documented_gflops"), [(video_swin_t, 43.882), (video_swin_s, 82.841), (video_swin_b, 140.667)]
)
def test_flops_full_size_match_analytic_and_torchvision_docs(build, documented_gflops):
    with torch.device("meta"):  # shapes only: no compute, no memory
        model = build()
        clip = torch.empty(1, 3, 16, 224, 224)
    macs = counted_macs(model, clip)
    assert macs == analytic_macs(model.config, clip.shape)
    assert round(macs / 1e9, 3) == documented_gflops  # torchvision's "_ops" for swin3d_*


def test_shifted_bias_cache_is_reused_and_invalidated_by_weight_changes():
    from stprune.architectures.video_swin.model import VideoSwinConfig

    torch.manual_seed(0)
    cfg = VideoSwinConfig(embed_dim=16, depths=(2,), num_heads=(2,), window_size=(2, 4, 4), num_classes=3)
    model = VideoSwin(cfg).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    block = model.blocks[1]  # shifted
    with torch.no_grad():
        model(x)
        first = block.__dict__["_bias_cache"][1]
        model(x)
        assert block.__dict__["_bias_cache"][1] is first  # reused, not rebuilt
        block.attn.relative_position_bias_table.add_(
            torch.randn_like(block.attn.relative_position_bias_table)
        )
        edited = model(x)
    fresh = VideoSwin(cfg).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x), edited)  # the edit reached the cached bias
    model.train()
    model(x).sum().backward()  # training: the bias must carry gradients to the table
    assert block.attn.relative_position_bias_table.grad is not None
    assert block.attn.relative_position_bias_table.grad.abs().sum() > 0
