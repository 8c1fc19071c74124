"""Share of a VideoMAE-B forward spent in STA's pruning work, on CPU (torch.profiler).

The pruner wraps every stage's scoring, selection and gather in ``torch.profiler.record_function``
with the label ``stprune.reduce`` (``stprune.pruning.sequence.PROFILE_LABEL``); this script
profiles ``--iters`` patched forwards (after ``--warmup`` untimed ones) and prints the label's
CPU time as a share of the whole forward's, plus the operators inside the label that cost most.

    python benchmarks/sta_share.py                    # VideoMAE-B, 16 x 224^2, r = 40, batch 1
    python benchmarks/sta_share.py --r 64 --threads 1
    python benchmarks/sta_share.py --quick            # videomae-s, 1 iteration (smoke run)
    python benchmarks/sta_share.py --compare-previous --rounds 2
                        # the selection before its operator cut (tests/test_core_sta.py keeps it)
                        # and the current one, alternating in one process

The share depends on contention more than on anything else: on a loaded machine the many small
operators of the selection wait for both OpenMP threads, and the share grows several-fold.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import stprune
import stprune.core.sta as sta
from stprune.models import get_adapter
from stprune.pruning.sequence import PROFILE_LABEL


def share(model: torch.nn.Module, inputs: dict, warmup: int, iters: int) -> tuple[float, float, list]:
    """(label share of the forward's CPU time, forward ms, top operators inside the label)."""
    with torch.inference_mode():
        for _ in range(warmup):
            model(**inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iters):
                with torch.profiler.record_function("forward"):
                    model(**inputs)
    events = prof.events()
    forward = sum(e.cpu_time_total for e in events if e.name == "forward")
    label = sum(e.cpu_time_total for e in events if e.name == PROFILE_LABEL)
    # operators directly or indirectly under the label, by self time
    inside: dict[str, float] = {}
    for e in events:
        parent = e.cpu_parent
        while parent is not None and parent.name != PROFILE_LABEL:
            parent = parent.cpu_parent
        if parent is not None:
            inside[e.name] = inside.get(e.name, 0.0) + e.self_cpu_time_total
    top = sorted(inside.items(), key=lambda kv: -kv[1])[:8]
    return label / forward, forward / iters / 1e3, [(k, v / iters / 1e3) for k, v in top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="videomae-b")
    ap.add_argument("--r", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="videomae-s, 1 iteration (used by the tests)")
    ap.add_argument("--compare-previous", action="store_true", help="also the selection before its cut")
    ap.add_argument("--rounds", type=int, default=1, help="rounds (alternating with --compare-previous)")
    args = ap.parse_args()
    if args.quick:
        args.model, args.warmup, args.iters = "videomae-s", 0, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    model = stprune.load_model(args.model).model
    stprune.patch(model, method="sta", r=args.r)
    inputs = get_adapter(model).example_inputs(args.batch_size)
    variants = {"current": sta._sta_keep_indices}
    if args.compare_previous:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_core_sta import _previous_keep_indices

        variants = {"previous": _previous_keep_indices, **variants}
    load = os.getloadavg()[0]
    print(
        f"{args.model}, STA r={args.r}, batch {args.batch_size}, CPU ({platform.machine()}, "
        f"{torch.get_num_threads()} torch threads), torch {torch.__version__}, {datetime.date.today()}, "
        f"load average {load:.2f} before"
    )
    frac = 0.0
    for rnd in range(args.rounds):
        for name, fn in variants.items():
            sta._sta_keep_indices = fn
            frac, ms, top = share(model, inputs, args.warmup, args.iters)
            print(
                f"round {rnd + 1}, {name}: forward {ms:.1f} ms (profiled); {PROFILE_LABEL}: {100 * frac:.2f}%"
            )
            for op, op_ms in top:
                print(f"  {op}: {op_ms:.2f} ms per forward")
    sta._sta_keep_indices = variants["current"]
    print(f"load average {os.getloadavg()[0]:.2f} after")
    print(f"share={frac:.4f}")


if __name__ == "__main__":
    main()
