"""Command-line interface: thin. Each sub-command parses its arguments, calls library functions
and prints. Register a sub-command by adding a ``_add_<name>(sub)`` function below and listing it
in ``_COMMANDS``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _add_version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("version", help="print the stprune version")
    p.set_defaults(func=_run_version)


def _run_version(args: argparse.Namespace) -> int:
    from stprune import __version__

    print(__version__)
    return 0


def _add_setting_args(p: argparse.ArgumentParser) -> None:
    from stprune.methods import METHODS
    from stprune.models.loading import MODEL_HELP

    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--method", default="sta", choices=sorted(METHODS), help="pruning method (default: sta)")
    p.add_argument(
        "--r",
        type=int,
        nargs="+",
        default=[],
        metavar="R",
        help="tokens dropped per group; several values compare several settings",
    )
    p.add_argument(
        "--flops-target",
        type=float,
        nargs="+",
        default=[],
        metavar="X",
        help="FLOPs ratio(s) in (0, 1]: r is chosen to reach each",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def _settings(args: argparse.Namespace) -> list:
    from stprune.bench.compare import make_settings

    return make_settings(args.r, args.flops_target, methods=[args.method])


def _add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flops", help="GFLOPs before/after pruning and tokens per block")
    _add_setting_args(p)
    p.set_defaults(func=_run_flops)


def _run_flops(args: argparse.Namespace) -> int:
    from stprune.bench.compare import measure_flops_rows
    from stprune.bench.report import print_rows, write_json
    from stprune.models import get_adapter
    from stprune.models.loading import load_model

    model = load_model(args.model, weights=False)
    rows = measure_flops_rows(model, _settings(args))
    print_rows(rows, f"{args.model} - {get_adapter(model).describe()} - GFLOPs per clip (1 MAC = 1 FLOP)")
    if args.json:
        write_json(args.json, {"model": args.model, "results": [r.as_dict() for r in rows]})
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="throughput, latency and peak memory, unpruned vs pruned")
    _add_setting_args(p)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards per setting and round")
    p.add_argument("--iters", type=int, default=5, help="timed forwards per setting and round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all settings")
    p.add_argument(
        "--device", default="cuda" if _cuda() else "cpu", help="cpu or cuda (default: cuda if available)"
    )
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast dtype")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.set_defaults(func=_run_bench)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_bench(args: argparse.Namespace) -> int:
    import torch
    from rich.console import Console

    from stprune.bench.compare import measure_flops_rows, measure_speed_rows
    from stprune.bench.report import print_rows, write_json
    from stprune.models import get_adapter
    from stprune.models.loading import load_model

    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    model = load_model(args.model).to(args.device)
    rows = measure_flops_rows(model, _settings(args))
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    with console.status("timing") as status:
        rows = measure_speed_rows(
            model,
            rows,
            batch_size=args.batch_size,
            warmup=args.warmup,
            iters=args.iters,
            rounds=args.rounds,
            autocast_dtype=amp,
            progress=status.update,
        )
    title = (
        f"{args.model} - {get_adapter(model).describe()} - {args.device}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, amp {args.amp}"
    )
    print_rows(rows, title)
    if args.json:
        write_json(
            args.json,
            {
                "model": args.model,
                "device": args.device,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "amp": args.amp,
                "results": [r.as_dict() for r in rows],
            },
        )
    return 0


def _add_make_demo_videos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-videos",
        help="write synthetic demo clips as mp4 files plus a '<split>.txt' list (path label per line)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num", type=int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0, the demo's validation set)")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.set_defaults(func=_run_make_demo_videos)


def _run_make_demo_videos(args: argparse.Namespace) -> int:
    from stprune.demo.videos import make_demo_videos

    list_path = make_demo_videos(args.out, args.num, split=args.split, seed=args.seed)
    print(f"wrote {args.num} clips and {list_path}")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_version,
    _add_flops,
    _add_bench,
    _add_make_demo_videos,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``stprune`` parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="stprune", description="Training-free spatio-temporal token pruning for video transformers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stprune`` command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
