"""The command-line options the CPU timing scripts (``cpu_vit.py``, ``cpu_swin.py``) share."""

from __future__ import annotations

import argparse


def cpu_timing_parser(doc: str, model: str, r: list[int]) -> argparse.ArgumentParser:
    """Parser with the model, the settings to time (``--r``, ``--flops-target``) and the timing
    protocol (batch, warm-up, iterations, interleaved rounds, threads), ``--quick`` and ``--out``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model)
    ap.add_argument("--r", type=int, nargs="*", default=r)
    ap.add_argument("--flops-target", type=float, nargs="*", default=[0.7])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (used by the tests)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/cpu_<model>.json)")
    return ap
