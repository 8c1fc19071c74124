"""STA inside Video Swin windows: the token path against slow references written here, FLOPs,
flops_target, traces, batch independence, compile-ability and every bad input.

The references are formulated differently from ``stprune.pruning.window_grid``: attention
over the whole grid with a dense (L, L) mask (same window, both tokens active as keys) instead
of packing and per-window slot tables; the shift penalty from "did the roll wrap this token";
STA selection recomputed window by window with a Python loop.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_SWIN

import stprune
from stprune.architectures.video_swin.weights import export_state_dict
from stprune.bench.flops import count_macs
from stprune.core.sta import sta_keep_indices
from stprune.core.windows import grid_positions_by_window, locate_in_windows, pack_windows
from stprune.models import VideoSwin, VideoSwinConfig, get_adapter, load_video_swin, video_swin_t
from stprune.pruning import build_pruner, window_grid
from stprune.pruning.window_attention import block_forward_tokens
from stprune.pruning.window_grid import (
    VideoSwinAdapter,
    default_swin_schedule,
    token_windows,
)

TINY = TINY_SWIN  # see conftest: the windows' corner cases all occur on it
R_DEEP = [6, 6, 5, 4, 3, 2]  # per point of the default schedule (after blocks 0, 2, 4, 5, 6, 8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second intra-op thread only adds synchronisation (and waits on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(seed: int = 0, dtype=torch.float32) -> VideoSwin:
    """TINY with every parameter random (LayerNorm weights around 1, bias tables far from 0)."""
    model = VideoSwin(TINY)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if "norm" in name and name.endswith("weight"):
                noise = 1.0 + 0.2 * noise
            elif "relative_position_bias_table" in name:
                noise = 0.5 * noise
            else:
                noise = 0.2 * noise
            p.copy_(noise.to(p.dtype))
    return model.to(dtype).eval()


def clip(batch: int = 2, seed: int = 0, dtype=torch.float32, frames: int = 8, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, size, size, generator=g, dtype=torch.float64).to(dtype)


def run(model, x):
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------


def ref_masked_block(block, x, active, window_size, nominal_shift):
    """One block where only ``active`` tokens take part, as a dense masked computation.

    x: (B, T, H, W, C); active: (B, T, H, W) bool. Active tokens attend to the active tokens of
    their (shifted) window, then get the MLP; inactive tokens are returned unchanged.
    """
    b, t, h, w, c = x.shape
    grid = torch.tensor([t, h, w])
    win = torch.minimum(grid, torch.tensor(window_size))
    shift = torch.where(grid <= torch.tensor(window_size), 0, torch.tensor(nominal_shift))
    assert bool((grid % win == 0).all())
    count = t * h * w
    coords = torch.stack(torch.meshgrid(*[torch.arange(int(n)) for n in grid], indexing="ij"), -1).view(
        count, 3
    )
    rolled = (coords - shift) % grid
    same = ((rolled // win)[:, None] == (rolled // win)[None]).all(-1)
    inner = rolled % win
    flat = (inner[:, 0] * win[1] + inner[:, 1]) * win[2] + inner[:, 2]
    # both references read the flat position in a shrunk window as a full-window coordinate
    wt, wh, ww = window_size
    full = torch.stack([flat // (wh * ww), (flat // ww) % wh, flat % ww], -1)
    rel = full[:, None] - full[None] + torch.tensor([wt - 1, wh - 1, ww - 1])
    index = (rel[..., 0] * (2 * wh - 1) + rel[..., 1]) * (2 * ww - 1) + rel[..., 2]
    bias = block.attn.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, L, L)
    wrapped = coords < shift
    crossed = (wrapped[:, None] != wrapped[None]).any(-1)
    heads = block.attn.num_heads
    tokens = x.reshape(b, count, c)
    act = active.reshape(b, count)
    qkv = block.attn.qkv(block.norm1(tokens)).view(b, count, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    logits = (q @ k.transpose(-1, -2)) * (c // heads) ** -0.5 + bias + crossed * -100.0
    allowed = same[None, None] & act[:, None, None, :]
    logits = logits.masked_fill(~allowed, float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, count, c)
    y = tokens + block.attn.proj(out)
    y = y + block.mlp(block.norm2(y))
    y = torch.where(act[..., None], y, tokens)
    keys = k.mean(1)  # (B, L, head_dim) head-averaged keys
    return y.view(b, t, h, w, c), keys


def sta_mask_by_windows(y, keys, active, window, stage):
    """STA run window by window (Python loop) on the active tokens in raster order."""
    b, t, h, w, c = y.shape
    pos = grid_positions_by_window((t, h, w), window, "cpu")  # (nW, N)
    flat_y, flat_k, flat_a = y.reshape(b, -1, c), keys.reshape(b, t * h * w, -1), active.reshape(b, -1)
    out = torch.zeros_like(flat_a)
    for i in range(b):
        for row in pos:
            members = row[flat_a[i, row]]  # active tokens of this window, raster order
            kept = sta_keep_indices(
                flat_y[i, members][None], flat_k[i, members][None], stage.groups, stage.r, stage.reverse
            )[0]
            out[i, members[kept]] = True
    return out.view(b, t, h, w)


def ref_pruned_forward(model, x, stages):
    """The whole pruned classifier: dense blocks until a Swin stage's first point, masked blocks
    after it; the kept sets recomputed here. Returns logits and {after_block: mask}."""
    cfg = model.config
    points = {s.after_block: s for s in stages if s.r}
    masks = {}
    g = model.embed(x)
    block_id = 0
    for stage in model.stages:
        active = None
        for j, block in enumerate(stage.blocks):
            shift = (0, 0, 0) if j % 2 == 0 else cfg.shift_size
            act = active if active is not None else torch.ones(g.shape[:4], dtype=torch.bool)
            y, keys = ref_masked_block(block, g, act, cfg.window_size, shift)
            if active is None:
                torch.testing.assert_close(y, block(g), rtol=0, atol=1e-10)  # the reference itself
            g = y
            if block_id in points:
                window = [min(n, s) for n, s in zip(cfg.window_size, g.shape[1:4], strict=True)]
                active = sta_mask_by_windows(g, keys, act, window, points[block_id])
                masks[block_id] = active
            block_id += 1
        if stage.downsample is not None:
            g = stage.downsample(g)
    return model.forward_head(model.norm(g)), masks


def random_subset_positions(grid, window, per_window, batch, seed):
    """(B, A) positions: ``per_window`` random tokens of every window, raster order inside."""
    pos = grid_positions_by_window(grid, window, "cpu")  # (nW, N)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        pick = torch.rand(pos.shape, generator=gen).argsort(-1)[:, :per_window].sort(-1).values
        rows.append(pos.gather(1, pick).reshape(-1))
    return torch.stack(rows)


# ---------------------------------------------------------------------------------------------
# pieces
# ---------------------------------------------------------------------------------------------


def test_locate_and_pack_windows_against_loops():
    grid, window, shift = (4, 6, 6), (2, 3, 3), (1, 1, 1)
    positions = torch.tensor([[0, 5, 17, 40, 100, 143], [1, 2, 3, 70, 71, 72]])
    wid, slot, rolled = locate_in_windows(positions, grid, window, shift)
    for b in range(2):
        for a in range(6):
            p = int(positions[b, a])
            c = [p // 36, (p // 6) % 6, p % 6]
            r = [(c[i] - shift[i]) % grid[i] for i in range(3)]
            assert rolled[b, a].tolist() == r
            assert int(wid[b, a]) == ((r[0] // 2) * 2 + r[1] // 3) * 2 + r[2] // 3
            assert int(slot[b, a]) == ((r[0] % 2) * 3 + r[1] % 3) * 3 + r[2] % 3
    packing = pack_windows(wid, slot, 8, 18, compact=True)
    counts = [[int((wid[b] == w).sum()) for w in range(8)] for b in range(2)]
    assert packing.size == max(max(c) for c in counts)
    for b in range(2):
        for w in range(8):
            members = sorted((int(slot[b, a]), a) for a in range(6) if wid[b, a] == w)
            got = packing.valid[b, w].nonzero().flatten().tolist()
            assert got == list(range(len(members)))  # filled first, in slot order
            for k, (s, a) in enumerate(members):
                assert int(packing.gather[b, w * packing.size + k]) == a
                assert int(packing.slot[b, w, k]) == s
        assert torch.equal(packing.gather[b][packing.scatter[b]], torch.arange(6))
    static = pack_windows(wid, slot, 8, 18, compact=False)
    assert static.size == 18 and torch.equal(static.scatter, wid * 18 + slot)


@pytest.mark.parametrize("block_id", [0, 1, 4, 5, 8, 9])  # stage 1 plain/shifted, 3 plain/shifted, 4
def test_token_path_with_every_token_equals_dense_block(block_id):
    model = tiny(dtype=torch.float64)
    block = model.blocks[block_id]
    grid = TINY.stage_grids()[[0, 0, 1, 1, 2, 2, 2, 2, 3, 3][block_id]]
    c = block.norm1.normalized_shape[0]
    x = torch.randn(2, *grid, c, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    window = block.layout(grid).window
    positions = grid_positions_by_window(grid, window, "cpu").view(1, -1)
    tw = token_windows(block, grid, positions, math.prod(window))
    flat = x.reshape(2, -1, c)
    with torch.no_grad():
        out = block_forward_tokens(block, flat.index_select(1, positions[0]), tw)
        dense = block(x)
    got = flat.index_copy(1, positions[0], out).view_as(x)
    torch.testing.assert_close(got, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("block_id", "compact"),
    [(0, True), (1, True), (1, False), (3, True), (4, True), (5, True), (5, False), (8, True), (9, True)],
)
def test_token_path_on_a_subset_equals_masked_reference(block_id, compact):
    model = tiny(seed=2, dtype=torch.float64)
    block = model.blocks[block_id]
    stage, local = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3), (3, 0), (3, 1)][block_id]
    grid = TINY.stage_grids()[stage]
    c = TINY.stage_dim(stage)
    x = torch.randn(3, *grid, c, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    window = block.layout(grid).window
    per_window = math.prod(window) * 5 // 8
    positions = random_subset_positions(grid, window, per_window, 3, seed=block_id)
    tw = token_windows(block, grid, positions, per_window, compact=compact)
    if block.layout(grid).is_shifted and compact:
        assert tw.size < math.prod(window)  # really padded to the largest count, not to N
    flat = x.reshape(3, -1, c)
    with torch.no_grad():
        packed = flat.gather(1, positions[..., None].expand(-1, -1, c))
        out, keys = block_forward_tokens(block, packed, tw, return_keys=True)
        active = torch.zeros(3, flat.shape[1], dtype=torch.bool).scatter(1, positions, True).view(x.shape[:4])
        shift = (0, 0, 0) if local % 2 == 0 else TINY.shift_size
        ref, ref_keys = ref_masked_block(block, x, active, TINY.window_size, shift)
    got = flat.scatter(1, positions[..., None].expand(-1, -1, c), out).view_as(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    assert not torch.equal(got, block(x))  # the subset really changes the result
    torch.testing.assert_close(
        keys, ref_keys.gather(1, positions[..., None].expand_as(keys)), rtol=0, atol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# the patched model
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pad", "static"])
def test_patched_model_equals_reference_and_trace_masks(mode):
    model = tiny(seed=4, dtype=torch.float64)
    x = clip(dtype=torch.float64, seed=5)
    stprune.patch(model, r=R_DEEP, shifted_windows=mode)
    got = run(model, x)
    trace = stprune.last_trace(model)
    stages = stprune.patch_info(model).stages
    with torch.no_grad():
        ref, masks = ref_pruned_forward(model, x, stages)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
    assert [s.stage.after_block for s in trace.stages] == [0, 2, 4, 5, 6, 8]
    for st in trace.stages:
        assert torch.equal(st.mask, masks[st.stage.after_block])
        assert st.mask.flatten(1).sum(1).tolist() == [st.tokens_out] * 2


def test_unpatch_restores_identical_outputs():
    model = tiny()
    x = clip()
    before = run(model, x)
    stprune.patch(model, r=2)
    pruned = run(model, x)
    assert not torch.allclose(before, pruned)
    assert "forward" in vars(model.stages[0])
    stprune.unpatch(model)
    assert not stprune.is_patched(model)
    assert all("forward" not in vars(s) for s in model.stages)
    assert not model.patch_embed._forward_hooks
    assert torch.equal(run(model, x), before)


def test_batch_equals_samples_alone():
    model = tiny(seed=6, dtype=torch.float64)
    stprune.patch(model, r=R_DEEP)
    x = clip(batch=2, dtype=torch.float64, seed=7)
    batched = run(model, x)
    for i in range(2):
        torch.testing.assert_close(run(model, x[i : i + 1])[0], batched[i], rtol=0, atol=1e-10)


def test_trace_tokens_match_plan_and_what_blocks_see(monkeypatch):
    seen = []
    token_path = window_grid.block_forward_tokens

    def spy(block, x, windows, return_keys=False):
        seen.append((x.shape[1], windows.num_windows * windows.size))
        return token_path(block, x, windows, return_keys)

    monkeypatch.setattr(window_grid, "block_forward_tokens", spy)
    model = tiny()
    for block in model.blocks:  # dense blocks run through Module.__call__
        block.register_forward_pre_hook(lambda m, a: seen.append((math.prod(a[0].shape[1:4]),) * 2))
    stprune.patch(model, r=R_DEEP)
    run(model, clip(batch=1))
    trace = stprune.last_trace(model)
    # stage 1: 32 windows x 2 slices x 16 tokens, r=6 -> 20 per window; stage 3: 2 windows of 32,
    # r=5 (2 groups) -> 22, r=4 (1 group) -> 18, r=3 -> 15; stage 4: 2 windows of 2 x 4, r=2 -> 4
    assert trace.tokens_per_block == [1024, 640, 256, 160, 64, 44, 36, 30, 16, 8]
    assert trace.tokens_per_block == stprune.patch_info(model).plan.tokens_per_block
    assert [a for a, _ in seen] == trace.tokens_per_block
    assert [c for _, c in seen] == trace.computed_per_block
    shifted = [1, 3, 5, 7, 9]
    for i, (active, computed) in enumerate(seen):
        # plain windows hold exactly the active tokens; padded shifted windows at least as many
        assert computed == active if i not in shifted else active <= computed <= 2 * active
    for st in trace.stages:
        assert st.kept.shape == st.positions.shape == (1, st.tokens_out)
        assert len(set(st.positions[0].tolist())) == st.tokens_out
        assert st.mask.shape == (1, *st.grid) and int(st.mask.sum()) == st.tokens_out
    # later points of a Swin stage prune among the tokens the earlier ones kept
    s4, s5 = trace.stages[2], trace.stages[3]
    assert torch.equal(s5.positions, s4.positions.gather(1, s5.kept))
    assert not (s5.mask & ~s4.mask).any()


def test_explicit_schedule_and_autocast():
    model = tiny()
    # block 5 is a shifted block: its output is still pruned per unshifted window
    stprune.patch(model, schedule=[(0, 1, 10), (4, 2, 4, True), (5, 1, 6)])
    run(model, clip())
    # stage 1: one group of 32 per window, 22 kept x 32 windows; stage 3: 2 windows, 2 x (16 - 4)
    # = 24 kept, then one group of 24 - 6 = 18
    assert stprune.last_trace(model).tokens_per_block == [1024, 704, 256, 256, 64, 48, 36, 36, 16, 16]
    assert count_macs(model, {"x": clip()}) == 2 * model._stprune.traced_macs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(clip())
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()


def test_random_pruning_runs_and_tome_is_refused():
    model = tiny()
    stprune.patch(model, method="random", r=2)
    assert run(model, clip()).shape == (2, 5)
    assert stprune.last_trace(model).tokens_per_block[1] == 32 * 2 * 14
    stprune.unpatch(model)
    with pytest.raises(NotImplementedError, match=r"'tome' is not supported on Video Swin: it merges tokens"):
        stprune.patch(model, method="tome", r=2)
    assert not stprune.is_patched(model)


def test_checkpoint_loaded_model_patches():
    source = tiny(seed=8)
    state = export_state_dict(source, "official")
    model = load_video_swin({"state_dict": state}, config=TINY)
    x = clip(seed=9)
    torch.testing.assert_close(run(model, x), run(source, x), rtol=0, atol=0)
    stprune.patch(model, r=2)
    stprune.patch(source, r=2)
    torch.testing.assert_close(run(model, x), run(source, x), rtol=0, atol=0)
    stprune.unpatch(model)
    assert torch.equal(run(model, x), run(stprune.unpatch(source), x))


def test_other_clip_sizes_replan_per_geometry():
    model = tiny()
    stprune.patch(model, r=2)
    out = run(model, clip(batch=1, frames=4, size=128))  # grids (2, 32, 32) ... (2, 4, 4)
    assert out.shape == (1, 5)
    assert stprune.last_trace(model).tokens_per_block[1] == 2 * 32 * 32 * 14 // 16


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pad", "static"])
def test_flop_counter_equals_analytic_model(mode):
    model = tiny()
    adapter = get_adapter(model)
    inputs = adapter.example_inputs(2)
    base = count_macs(model, inputs)
    assert base == 2 * adapter.macs_unpruned()
    stprune.patch(model, r=R_DEEP, shifted_windows=mode)
    pruner = model._stprune
    measured = count_macs(model, inputs)
    assert measured == 2 * pruner.traced_macs()  # exact for the data at hand
    if mode == "static":
        assert measured == 2 * stprune.patch_info(model).macs
    else:  # padded shifted windows: the plan expects PAD_MARGIN x the mean count; the data decides
        assert abs(measured / (2 * stprune.patch_info(model).macs) - 1) < 0.05
    assert measured < 0.8 * base


def test_flops_target_on_swin_t_16x224():
    target = 0.7
    with torch.device("meta"):
        model = video_swin_t()
    inputs = get_adapter(model).example_inputs(device="meta")
    base = count_macs(model, inputs)
    stprune.patch(model, flops_target=target)
    info = stprune.patch_info(model)
    r = info.stages[0].r
    assert all(s.r == r for s in info.stages)
    measured = count_macs(model, inputs) / base  # on meta: padded windows at the planned size
    assert abs(measured - info.flops_ratio) < 1e-12
    assert 0.60 <= measured <= target
    stprune.unpatch(model)
    stprune.patch(model, r=r - 1)
    assert count_macs(model, inputs) / base > target


def test_default_schedule_is_the_paper_schedule_inside_every_stage():
    cfg = VideoSwinConfig()  # Swin-T, 16 x 224
    stages = default_swin_schedule(cfg, 4)
    assert [(s.after_block, s.groups, s.reverse) for s in stages] == [
        (0, 8, False),
        (2, 8, False),
        (4, 8, False),
        (6, 4, True),
        (8, 2, False),
        (10, 8, False),
    ]
    deep = VideoSwinConfig(depths=(2, 2, 18, 2))
    assert [s.after_block for s in default_swin_schedule(deep, 4)] == [0, 2, 4, 10, 16, 22]


# ---------------------------------------------------------------------------------------------
# compile-ability
# ---------------------------------------------------------------------------------------------


def test_static_windows_compile_without_graph_breaks():
    """fullgraph=True fails on host syncs: the static layout has none; "pad" reads one count."""
    torch._dynamo.reset()
    # two stages keep tracing short; stage 2 prunes after blocks 0, 1, 2 (plain, shifted, plain)
    model = VideoSwin(VideoSwinConfig(**{**TINY.__dict__, "depths": (2, 4), "num_heads": (1, 2)})).eval()
    stprune.patch(model, r=2, shifted_windows="static")
    x = clip()
    eager = run(model, x)
    with torch.no_grad():
        compiled = torch.compile(model, backend="eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(r=3), ValueError, r"after block 8.*r=3 is too large for groups of 4 tokens .*0 <= r <= 2"),
        (dict(r=[9, 0, 0, 0, 0, 0]), ValueError, r"r=9 is too large for groups of 16 tokens .*0 <= r <= 8"),
        (dict(schedule=[(10, 2, 1)]), ValueError, r"after_block=10 outside \[0, 9\]"),
        (
            dict(schedule=[(1, 2, 1)]),
            ValueError,
            r"last block of its Swin stage.*allowed after_block: 0, 2, 4",
        ),
        (
            dict(schedule=[(0, 3, 1)]),
            ValueError,
            r"groups=3 must divide the temporal window.*allowed: \[1, 2\]",
        ),
        (dict(schedule=[(4, 1, 1), (5, 2, 1)]), ValueError, r"groups=2 must divide the previous point"),
        (dict(schedule="every", r=1), ValueError, r"unknown schedule 'every' for Video Swin"),
        (dict(method="tome", r=1), NotImplementedError, r"merges tokens"),
        (
            dict(r=1, shifted_windows="loop"),
            ValueError,
            r"shifted_windows must be one of \('pad', 'static'\)",
        ),
        (dict(r=1, flops_target=0.5), ValueError, r"either r or flops_target"),
        (dict(flops_target=0.05), ValueError, r"flops_target=0.05 cannot be reached"),
        (dict(), ValueError, r"give r .* or flops_target"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    model = tiny()
    with pytest.raises(exc, match=match):
        stprune.patch(model, **kwargs)
    assert not stprune.is_patched(model)


def test_double_patch_raises():
    model = tiny()
    stprune.patch(model, r=1)
    with pytest.raises(RuntimeError, match="already patched"):
        stprune.patch(model, r=1)


def test_grid_that_is_not_whole_windows():
    cfg = VideoSwinConfig(**{**TINY.__dict__, "image_size": (32, 64)})  # H grids 8, 4, 2, 1: fine
    assert build_pruner(VideoSwinAdapter(VideoSwin(cfg)), stprune.methods.get_method("sta"), None, 1, None)
    bad = VideoSwinConfig(**{**TINY.__dict__, "image_size": (56, 64)})  # H grid 14: not whole windows
    with pytest.raises(
        ValueError,
        match=r"grid \(4, 14, 16\) of Swin stage 1 is not a whole number of \(2, 4, 4\) windows along H",
    ):
        stprune.patch(VideoSwin(bad), r=1)
    model = tiny()
    stprune.patch(model, r=1)
    with pytest.raises(ValueError, match=r"not a whole number of .* windows along H, W"):
        run(model, clip(size=72))  # raised by the patch-embedding hook, before any block runs


# ---------------------------------------------------------------------------------------------
# CLI and benchmark plumbing
# ---------------------------------------------------------------------------------------------


def test_presets_and_flops_command(tmp_path):
    from stprune.architectures.loading import resolve_model
    from stprune.cli import main

    out = tmp_path / "f.json"
    assert main(["flops", "--model", "video-swin-t", "--flops-target", "0.7", "--json", str(out)]) == 0
    res = json.loads(out.read_text())["results"]  # counted on the meta device: the planned bound
    assert [r["setting"] for r in res] == ["unpruned", "flops_target=0.7"]
    assert round(res[0]["gflops"], 3) == 43.882 and 0.6 <= res[1]["ratio"] <= 0.7
    assert res[1]["tokens_per_block"][:2] == [8 * 56 * 56, 64 * 8 * (49 - res[1]["r_per_stage"][0])]
    with torch.device("meta"):  # the weights do not matter here
        pre = resolve_model("video-swin-s").preprocessing
    assert (pre.layout, pre.num_frames, pre.image_size) == ("BCTHW", 16, 224)


def test_cpu_benchmark_script_quick_mode(tmp_path):
    out = tmp_path / "q.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/cpu_swin.py", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())["results"]
    labels = [r["setting"] for r in res]
    assert labels == ["unpruned", "r=4", "flops_target=0.9", "flops_target=0.9 static"]
    base = res[0]["gflops"]
    assert all(r["gflops"] < base for r in res[1:])
    padded, static = res[2], res[3]
    assert padded["ratio"] < static["ratio"] <= 0.9
    assert static["ratio"] == pytest.approx(static["planned_ratio"], abs=1e-3)
    assert all(r["latency_ms"] > 0 for r in res)
