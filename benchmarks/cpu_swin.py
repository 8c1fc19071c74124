"""CPU benchmark of STA on Video Swin: GFLOPs per Swin stage, latency, speed-up vs 1/FLOPs ratio.

Default: Swin-T, 16 frames x 224^2, random weights (speed does not depend on the weights),
unpruned and STA at r in {8, 16, 23} and flops_target 0.7 with the default padded layout of
shifted windows, plus flops_target 0.7 with the static layout. Settings are timed interleaved
over several rounds so that load drift on a shared machine hits all alike.

The unpruned reference is the model as it is, which caches its shifted-window attention bias
at inference (so the speed-ups are against an unpruned model without that overhead).

GFLOPs are counted on the real model with FlopCounterMode (math SDPA, 1 MAC = 1 FLOP) for one
clip: with the padded layout they depend on the data (the padded size of shifted windows), so
the table also gives the planned ratio that flops_target uses (padded windows at the size the
plan expects, see PAD_MARGIN in stprune/pruning/window_grid.py).

    python benchmarks/cpu_swin.py                   # the docs table (about 10 min on 2 cores)
    python benchmarks/cpu_swin.py --threads 1       # less sensitive to other jobs on the machine
    python benchmarks/cpu_swin.py --quick           # smoke run: Swin-T layout, width 24, 112^2, 1 round

Prints a markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from cpu_args import cpu_timing_parser
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import stprune
from stprune.architectures.loading import load_model
from stprune.bench.report import compact_tokens
from stprune.bench.speed import measure_speed
from stprune.models import VideoSwin, VideoSwinConfig, get_adapter


@dataclass
class Variant:
    label: str
    patch: dict | None  # stprune.patch kwargs, None: unpruned


@contextlib.contextmanager
def applied(model: torch.nn.Module, v: Variant) -> Iterator[None]:
    if v.patch is not None:
        stprune.patch(model, **v.patch)
    try:
        yield
    finally:
        if stprune.is_patched(model):
            stprune.unpatch(model)


def count_per_stage(model: torch.nn.Module, inputs: dict) -> tuple[list[float], float]:
    """GFLOPs of every Swin stage (its patch merging included) and in total, one clip."""
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False, depth=2) as counter:
        model(**inputs)
    counts = counter.get_flop_counts()
    name = type(model).__name__
    stages = [sum(counts.get(f"{name}.stages.{i}", {}).values()) / 2e9 for i in range(len(model.stages))]
    return stages, counter.get_total_flops() / 2e9


def main() -> None:
    ap = cpu_timing_parser(__doc__, "video-swin-t", [8, 16, 23])
    args = ap.parse_args()
    if args.quick and not args.threads:
        args.threads = 1  # small ops: a second thread only waits on a shared machine
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.quick:
        # Swin-T's depths and windows at a quarter of its width, 16 x 112^2 clips
        cfg = VideoSwinConfig(embed_dim=24, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), image_size=112)
        model, args.model = VideoSwin(cfg).eval(), "video-swin-t-embed24-112"
        args.r, args.flops_target = [4], [0.9]  # stage 4's window shrinks to 8x4x4: r <= 8
        args.warmup, args.iters, args.rounds = 0, 1, 1
    else:
        model = load_model(args.model).model
    adapter = get_adapter(model)
    inputs = adapter.example_inputs(args.batch_size)
    one = {k: v[:1] for k, v in inputs.items()}

    variants = [Variant("unpruned", None)]
    variants += [Variant(f"r={r}", {"r": r}) for r in args.r]
    for t in args.flops_target:
        variants.append(Variant(f"flops_target={t:g}", {"flops_target": t}))
        variants.append(
            Variant(f"flops_target={t:g} static", {"flops_target": t, "shifted_windows": "static"})
        )

    rows = []
    for v in variants:
        with applied(model, v):
            stages, total = count_per_stage(model, one)
            info = stprune.patch_info(model) if stprune.is_patched(model) else None
            tokens = (
                stprune.last_trace(model).tokens_per_block if info else adapter.unpruned_tokens_per_block()
            )
            rows.append(
                {
                    "setting": v.label,
                    "r_per_stage": [s.r for s in info.stages] if info else [],
                    "gflops_per_stage": [round(g, 3) for g in stages],
                    "gflops": round(total, 3),
                    "planned_ratio": round(info.flops_ratio, 4) if info else 1.0,
                    "tokens_per_block": tokens,
                }
            )
    for row in rows:
        row["ratio"] = round(row["gflops"] / rows[0]["gflops"], 4)

    times: dict[int, list[float]] = {i: [] for i in range(len(variants))}
    for rnd in range(args.rounds):
        for i, v in enumerate(variants):
            print(f"  round {rnd + 1}/{args.rounds}: {v.label}", flush=True)
            with applied(model, v):
                res = measure_speed(model, inputs, warmup=args.warmup, iters=args.iters)
            times[i].append(res.latency_ms)
    for i, row in enumerate(rows):
        row["latency_ms"] = round(statistics.median(times[i]), 1)
        row["latency_ms_per_round"] = [round(t, 1) for t in times[i]]
    for row in rows:
        row["speedup"] = round(rows[0]["latency_ms"] / row["latency_ms"], 3)
        row["efficiency"] = round(row["speedup"] * row["ratio"], 3)

    load = os.getloadavg()
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    print(
        f"\n{args.model} ({adapter.describe()}), batch {args.batch_size}, CPU ({machine}), torch "
        f"{torch.__version__}, {datetime.date.today()}, load average after the run "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}\n"
    )
    n_stages = len(rows[0]["gflops_per_stage"])
    head = " | ".join(f"stage {i + 1}" for i in range(n_stages))
    print(
        f"| setting | r per point | GFLOPs {head} | GFLOPs | ratio | planned ratio | latency (ms) "
        "| speed-up | 1/ratio | speed-up x ratio | tokens per block |"
    )
    print("|---|---|" + "---:|" * (n_stages + 7) + "---|")
    for row in rows:
        cells = [
            row["setting"],
            ",".join(map(str, row["r_per_stage"])) or "-",
            *[f"{g:.2f}" for g in row["gflops_per_stage"]],
            f"{row['gflops']:.2f}",
            f"{row['ratio']:.3f}",
            f"{row['planned_ratio']:.3f}",
            f"{row['latency_ms']:.0f}",
            f"{row['speedup']:.2f}x",
            f"{1 / row['ratio']:.2f}x",
            f"{row['efficiency']:.2f}",
            compact_tokens(row["tokens_per_block"]),
        ]
        print("| " + " | ".join(cells) + " |")
    out = Path(args.out or Path(__file__).parent / "results" / f"cpu_{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, object] = {
        "model": args.model,
        "describe": adapter.describe(),
        "batch_size": args.batch_size,
        "device": "cpu",
        "machine": machine,
        "torch": torch.__version__,
        "date": str(datetime.date.today()),
        "load_average_after": [round(x, 2) for x in load],
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "command": "python " + " ".join(sys.argv),
        "results": rows,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
