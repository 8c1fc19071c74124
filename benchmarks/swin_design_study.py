"""Measurements behind the Video Swin pruning design (docs/video_swin.md), CPU.

1. Shifted windows hold uneven numbers of active tokens. Three layouts of their attention:
   ``pad`` (every window padded to the largest count, one batched SDPA: the default), ``static``
   (all N slots of every window, empty ones masked: static shapes) and ``pack`` (every window at
   its exact size, one SDPA per window in a Python loop). For every shifted block after a
   pruning point of Swin-T 16x224 (random weights) patched with STA, the attention step of that
   block (gather q/k/v into windows, gather the bias, SDPA, scatter back) is timed with each
   layout, interleaved over rounds; per-block qkv/projection/MLP are the same for all three and
   left out. Also printed: the mean and largest active count per shifted window vs N.
2. What patch merging should do with the active mask. Ours: every merged token is active again
   and the next stage prunes at its own points. The alternative "a merged token is active if any
   of its 2x2 children is" could only skip merged tokens whose four children were all pruned;
   the script prints that fraction at the end of every Swin stage, for STA and random pruning.
3. How many operations a forward issues (top-level aten ops in the profiler), unpruned vs pruned:
   on a machine shared with other jobs every small multi-threaded op may wait on a descheduled
   thread, so the count says how much a pruned forward is exposed to that.

    python benchmarks/swin_design_study.py              # r = 23 (flops_target 0.7), 5 rounds
    python benchmarks/swin_design_study.py --r 16 --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

import stprune
import stprune.pruning.window_grid as vsp
from stprune.architectures.video_swin.model import VideoSwinBlock, biased_window_sdpa
from stprune.core.windows import locate_in_windows
from stprune.models import video_swin_t
from stprune.pruning.window_attention import take_tokens as _take_tokens
from stprune.pruning.window_attention import window_bias_index


def capture(model: torch.nn.Module, x: torch.Tensor) -> list[tuple]:
    """(block, grid, positions, per_window, tokens) of every shifted block after a pruning point."""
    seen_windows: dict[int, tuple] = {}
    out = []
    build, run = vsp.token_windows, vsp.block_forward_tokens

    def spy_windows(block, grid, positions, per_window, compact=True):  # noqa: ANN001, ANN202
        seen_windows[id(block)] = (grid, positions, per_window)
        return build(block, grid, positions, per_window, compact)

    def spy_run(block, tokens, windows, return_keys=False):  # noqa: ANN001, ANN202
        grid, positions, per_window = seen_windows.get(id(block), (None, None, None))
        if (
            grid is not None
            and block.layout(grid).is_shifted
            and per_window < block.layout(grid).window_tokens
        ):
            out.append((block, grid, positions, per_window, tokens))
        return run(block, tokens, windows, return_keys)

    vsp.token_windows, vsp.block_forward_tokens = spy_windows, spy_run
    try:
        with torch.inference_mode():
            model(x)
    finally:
        vsp.token_windows, vsp.block_forward_tokens = build, run
    # token_windows is cached per segment: blocks after the first of a segment reuse its tables
    return out


def padded_attention(block: VideoSwinBlock, qkv: torch.Tensor, tw: vsp.TokenWindows) -> torch.Tensor:
    b, _, c3 = qkv.shape
    c, heads = c3 // 3, block.attn.num_heads
    g = _take_tokens(qkv, tw.gather)
    m, k = b * tw.num_windows, tw.size
    q, kk, v = g.view(m, k, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
    out = biased_window_sdpa(q, kk, v, block.attn.token_bias(tw.bias_index, q.dtype))
    return _take_tokens(out.transpose(1, 2).reshape(b, -1, c), tw.scatter)


def packed_plan(block: VideoSwinBlock, grid: tuple, positions: torch.Tensor) -> tuple:
    """Per window (batch 1): its tokens sorted by slot and the bias rows of its pairs."""
    layout = block.layout(grid)
    wid, slot, rolled = locate_in_windows(positions[0], layout.grid, layout.window, layout.shift)
    region = vsp.shift_region_labels(rolled, layout.grid, layout.window, layout.shift)
    order = (wid * layout.window_tokens + slot).argsort()
    counts = torch.bincount(wid, minlength=layout.num_windows).tolist()
    rpi, rows = block.attn.relative_position_index, block.attn.relative_position_bias_table.shape[0]
    index, start = [], 0
    for n in counts:
        members = order[start : start + n]
        index.append(window_bias_index(slot[members], rpi, rows, region[members]).contiguous())
        start += n
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    return order, counts, index, inverse


def packed_attention(block: VideoSwinBlock, qkv: torch.Tensor, plan: tuple) -> torch.Tensor:
    order, counts, index, inverse = plan
    c = qkv.shape[-1] // 3
    heads = block.attn.num_heads
    table = block.attn.extended_bias_table(qkv.dtype).t().contiguous()
    g = qkv[0].index_select(0, order)
    outs, start = [], 0
    for n, idx in zip(counts, index, strict=True):
        q, k, v = g[start : start + n].view(n, 3, heads, c // heads).permute(1, 2, 0, 3).unbind(0)
        bias = table.index_select(1, idx.view(-1)).view(heads, n, n)
        outs.append(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(0, 1).reshape(n, c))
        start += n
    return torch.cat(outs).index_select(0, inverse).unsqueeze(0)


def layouts_study(model: torch.nn.Module, x: torch.Tensor, r: int, rounds: int) -> None:
    stprune.patch(model, r=r)
    blocks = capture(model, x)
    stprune.unpatch(model)
    print(f"\n1. shifted-window layouts, Swin-T 16x224, STA r={r}: attention step per shifted block (ms)\n")
    print("| block | stage | windows | N | mean active | largest (pad K) | pad | static | pack (loop) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    index_of = {id(b): i for i, b in enumerate(model.blocks)}
    with torch.inference_mode():
        for block, grid, positions, per_window, tokens in blocks:
            qkv = block.attn.qkv(block.norm1(tokens))
            pad = vsp.token_windows(block, grid, positions, per_window, compact=True)
            static = vsp.token_windows(block, grid, positions, per_window, compact=False)
            plan = packed_plan(block, grid, positions)
            ref = padded_attention(block, qkv, pad)
            torch.testing.assert_close(packed_attention(block, qkv, plan), ref, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(padded_attention(block, qkv, static), ref, rtol=1e-4, atol=1e-4)
            fns = {
                "pad": lambda b=block, q=qkv, t=pad: padded_attention(b, q, t),
                "static": lambda b=block, q=qkv, t=static: padded_attention(b, q, t),
                "pack": lambda b=block, q=qkv, p=plan: packed_attention(b, q, p),
            }
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(rounds):
                for k, f in fns.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            layout = block.layout(grid)
            counts = plan[1]
            stage = next(s for s, st in enumerate(model.stages) if any(b is block for b in st.blocks))
            cells = [
                str(index_of[id(block)]),
                str(stage + 1),
                str(layout.num_windows),
                str(layout.window_tokens),
                f"{statistics.fmean(counts):.0f}",
                str(max(counts)),
                *[f"{statistics.median(times[k]) * 1e3:.1f}" for k in fns],
            ]
            print("| " + " | ".join(cells) + " |")


def merge_study(model: torch.nn.Module, x: torch.Tensor, rs: list[int]) -> None:
    print("\n2. merged 2x2 groups whose four tokens were all pruned at the end of a Swin stage (%)\n")
    print("| method | r | stage 1 | stage 2 | stage 3 |")
    print("|---|---:|---:|---:|---:|")
    for method in ("sta", "random"):
        for r in rs:
            stprune.patch(model, method=method, r=r)
            with torch.inference_mode():
                model(x)
            last: dict[int, torch.Tensor] = {}
            for st in stprune.last_trace(model).stages:
                last[st.swin_stage] = st.mask
            stprune.unpatch(model)
            cells = []
            for s in range(len(model.stages) - 1):
                mask = last.get(s)
                if mask is None:
                    cells.append("-")
                    continue
                b, t, h, w = mask.shape
                pruned = ~mask.view(b, t, h // 2, 2, w // 2, 2)
                cells.append(f"{100 * pruned.all(dim=(3, 5)).float().mean():.1f}")
            print(f"| {method} | {r} | " + " | ".join(cells) + " |")


def op_count_study(model: torch.nn.Module, x: torch.Tensor, r: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    print("\n3. top-level aten operations per forward\n")
    print("| model | operations | of which under 1 ms | time in those (ms) |")
    print("|---|---:|---:|---:|")
    for label, kwargs in (("unpruned", None), (f"STA r={r}", {"r": r})):
        if kwargs:
            stprune.patch(model, **kwargs)
        with torch.inference_mode():
            model(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(x)
        if kwargs:
            stprune.unpatch(model)
        ops = [
            e
            for e in prof.events()
            if e.name.startswith("aten::")
            and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
        ]
        small = [e for e in ops if e.cpu_time_total < 1000]
        print(f"| {label} | {len(ops)} | {len(small)} | {sum(e.cpu_time_total for e in small) / 1e3:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--r", type=int, default=23)
    ap.add_argument("--merge-r", type=int, nargs="*", default=[8, 16, 23])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = video_swin_t().eval()
    x = torch.randn(1, 3, 16, 224, 224)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    print(
        f"Swin-T 16x224, random weights, CPU ({machine}), torch {torch.__version__}, {datetime.date.today()}"
    )
    layouts_study(model, x, args.r, args.rounds)
    merge_study(model, x, args.merge_r)
    op_count_study(model, x, args.r)
    load = os.getloadavg()
    print(f"\nload average after the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")


if __name__ == "__main__":
    main()
