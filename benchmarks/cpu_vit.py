"""CPU benchmark of STA on a ViT preset: measured GFLOPs, latency, speed-up vs 1/FLOPs ratio.

Default: VideoMAE-B, 16 frames x 224^2, random weights (speed does not depend on the weights),
unpruned and STA at r in {16, 32, 40, 48, 64} and flops_target 0.7. Settings are timed
interleaved over several rounds so that load drift on a shared machine hits all alike.

    python benchmarks/cpu_vit.py                       # README table (about 5 min on 2 cores)
    python benchmarks/cpu_vit.py --quick               # smoke run: videomae-s, 1 round, 1 iter
    python benchmarks/cpu_vit.py --methods sta rlt tome random --r --flops-target 0.7 0.5
                                                       # the methods side by side at matched FLOPs

Prints a markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path

import torch
from cpu_args import cpu_timing_parser

from stprune.architectures.loading import load_model
from stprune.bench.compare import make_settings, measure_flops_rows, measure_speed_rows
from stprune.bench.report import compact_tokens


def main() -> None:
    ap = cpu_timing_parser(__doc__, "videomae-b", [16, 32, 40, 48, 64])
    ap.add_argument("--methods", nargs="+", default=["sta"], help="methods timed at every setting")
    args = ap.parse_args()
    if args.quick:
        args.model, args.r, args.flops_target = "videomae-s", [64], [0.7]
        args.warmup, args.iters, args.rounds = 0, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model).model
    rows = measure_flops_rows(model, make_settings(args.r, args.flops_target, methods=args.methods))
    rows = measure_speed_rows(
        model,
        rows,
        batch_size=args.batch_size,
        warmup=args.warmup,
        iters=args.iters,
        rounds=args.rounds,
        progress=lambda msg: print(f"  {msg}", flush=True),
    )

    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    print(
        f"\n{args.model}, batch {args.batch_size}, CPU ({machine}), torch {torch.__version__}, "
        f"{datetime.date.today()}\n"
    )
    print(
        "| method | setting | r per stage | GFLOPs | FLOPs ratio | latency (ms) | clips/s | speed-up "
        "| 1/ratio | speed-up / (1/ratio) | tokens per block |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        s = r.speed
        eff = r.speedup * r.ratio
        cells = [
            r.setting.method or "none",
            r.setting.label,
            ",".join(map(str, r.r_per_stage)) or "-",
            f"{r.gflops:.1f}",
            f"{r.ratio:.3f}",
            f"{s.latency_ms:.0f}",
            f"{s.clips_per_s:.2f}",
            f"{r.speedup:.2f}x",
            f"{1 / r.ratio:.2f}x",
            f"{eff:.2f}",
            compact_tokens(r.tokens_per_block),
        ]
        print("| " + " | ".join(cells) + " |")
    out = Path(args.out or Path(__file__).parent / "results" / f"cpu_{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "model": args.model,
                "batch_size": args.batch_size,
                "device": "cpu",
                "machine": machine,
                "torch": torch.__version__,
                "date": str(datetime.date.today()),
                "rounds": args.rounds,
                "iters_per_round": args.iters,
                "command": "python " + " ".join(sys.argv),
                "results": [r.as_dict() for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
