"""Speed in ONNX Runtime: STA-pruned vs unpruned exports of a ViT preset, on the CPU.

Default: VideoMAE-B, 16 frames x 224^2, random weights (speed does not depend on them), batch 1,
unpruned and STA at flops_target 0.7 and 0.5. Every setting is exported with ``stprune.export``
(ONNX, static shapes, checked: outputs within 1e-4 of the patched PyTorch model and the planned
tokens entering every block in ONNX Runtime), then the ONNX Runtime sessions (CPU execution
provider, every graph optimisation) are timed interleaved over several rounds, so that load drift
on a shared machine hits all settings alike. The goal: speed-up >= 0.9 x (1 / FLOPs ratio).

    python benchmarks/ort_vit.py                   # README table (about 10 minutes on 2 cores)
    python benchmarks/ort_vit.py --quick           # smoke run: videomae-s, flops_target 0.7, 1 iter

The same measurement from the command line: ``stprune bench --model videomae-b --flops-target 0.7
0.5 --runtime onnxruntime``. Prints a markdown table and writes JSON to benchmarks/results/.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch
from cpu_args import cpu_timing_parser

import stprune
from stprune.bench.compare import make_settings, measure_flops_rows
from stprune.bench.ort import measure_ort_rows
from stprune.bench.report import compact_tokens


def main() -> None:
    ap = cpu_timing_parser(__doc__, "videomae-b", [])
    ap.set_defaults(flops_target=[0.7, 0.5])
    args = ap.parse_args()
    if args.quick:
        args.model, args.r, args.flops_target = "videomae-s", [], [0.7]
        args.warmup, args.iters, args.rounds = 0, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    import onnxruntime

    load_before = os.getloadavg()[0]
    # seeded random weights: the same model on every run. On random weights STA's scores can tie
    # within float rounding at a selection boundary, where ONNX Runtime and PyTorch may then keep
    # different tokens (the export check would say so); seed 0 has none (smallest relative gap at
    # a boundary 6.4e-5 at flops_target 0.5)
    torch.manual_seed(0)
    model = stprune.load_model(args.model).model
    rows = measure_flops_rows(model, make_settings(args.r, args.flops_target))
    rows = measure_ort_rows(
        model,
        rows,
        batch_size=args.batch_size,
        warmup=args.warmup,
        iters=args.iters,
        rounds=args.rounds,
        progress=lambda msg: print(f"  {msg}", flush=True),
    )
    load_after = os.getloadavg()[0]

    threads = torch.get_num_threads()
    machine = f"{platform.processor() or platform.machine()}, {threads} threads"
    print(
        f"\n{args.model}, batch {args.batch_size}, ONNX Runtime {onnxruntime.__version__} CPU ({machine}), "
        f"torch {torch.__version__}, {datetime.date.today()}, load average {load_before:.2f} before, "
        f"{load_after:.2f} after\n"
    )
    print(
        "| setting | r per stage | GFLOPs | FLOPs ratio | latency (ms) | clips/s | speed-up | 1/ratio "
        "| speed-up / (1/ratio) | max abs diff vs PyTorch | tokens per block |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        s = r.speed
        cells = [
            r.setting.label,
            ",".join(map(str, r.r_per_stage)) or "-",
            f"{r.gflops:.1f}",
            f"{r.ratio:.3f}",
            f"{s.latency_ms:.0f}",
            f"{s.clips_per_s:.2f}",
            f"{r.speedup:.2f}x",
            f"{1 / r.ratio:.2f}x",
            f"{r.speedup * r.ratio:.2f}",
            r.extra["max |diff|"],
            compact_tokens(r.tokens_per_block),
        ]
        print("| " + " | ".join(cells) + " |")
    out = Path(args.out or Path(__file__).parent / "results" / f"ort_{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "model": args.model,
        "batch_size": args.batch_size,
        "runtime": f"onnxruntime {onnxruntime.__version__}, CPUExecutionProvider",
        "machine": machine,
        "torch": torch.__version__,
        "date": str(datetime.date.today()),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "rounds": args.rounds,
        "iters_per_round": args.iters,
        "command": "python " + " ".join(sys.argv),
        "results": [r.as_dict() for r in rows],
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
