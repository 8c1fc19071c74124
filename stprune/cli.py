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


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy of a (pruned) video classifier on a video list (resumable, torchrun-ready)",
        description="Evaluate a video classifier with the VideoMAE multi-view test protocol. Rows are "
        "written to --out as each video finishes; rerunning with the same --out resumes. Under "
        "torchrun the list is sharded across ranks. See docs/eval.md.",
    )
    p.add_argument(
        "--model", required=True, help="HF hub id, save_pretrained dir, VideoMAE zoo .pth, or 'demo'"
    )
    p.add_argument(
        "--data", required=True, help="video list: 'path label' lines, or CSV with header path|video,label"
    )
    p.add_argument(
        "--root", default=None, help="folder relative paths are resolved against (default: the list's folder)"
    )
    p.add_argument("--out", required=True, help="results folder (predictions.rank*.jsonl, summary.json)")
    p.add_argument(
        "--protocol",
        choices=["kinetics", "ssv2"],
        default="kinetics",
        help="test sampling (default kinetics)",
    )
    p.add_argument(
        "--views", default=None, help="TxS temporal clips x spatial crops (default 5x3 kinetics, 2x3 ssv2)"
    )
    p.add_argument("--sampling-rate", type=int, default=4, help="kinetics frame stride (default 4)")
    prune = p.add_mutually_exclusive_group()
    prune.add_argument("--r", type=int, default=None, help="tokens dropped per group at each pruning point")
    prune.add_argument("--flops-target", type=float, default=None, help="target FLOPs ratio in (0, 1]")
    from stprune.methods import METHODS

    p.add_argument("--method", choices=sorted(METHODS), default="sta", help="pruning method (default sta)")
    p.add_argument("--batch-size", type=int, default=8, help="views per forward pass (default 8)")
    p.add_argument("--workers", type=int, default=4, help="decoding DataLoader workers (default 4)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16"],
        default="auto",
        help="autocast precision (auto: fp16 on cuda as VideoMAE tests, fp32 on cpu)",
    )
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N videos of the list")
    p.add_argument(
        "--num-heads", type=int, default=None, help="attention heads of a zoo .pth (default from width)"
    )
    p.add_argument(
        "--num-frames", type=int, default=None, help="frames per clip of a zoo .pth / Video Swin checkpoint"
    )
    p.add_argument(
        "--image-size", type=int, default=None, help="input size of a zoo .pth / Video Swin checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from stprune.eval.runner import run_eval

    summary = run_eval(
        model=args.model,
        data=args.data,
        out=args.out,
        root=args.root,
        protocol=args.protocol,
        views=args.views,
        sampling_rate=args.sampling_rate,
        r=args.r,
        flops_target=args.flops_target,
        method=args.method,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        limit=args.limit,
        overwrite=args.overwrite,
        num_heads=args.num_heads,
        num_frames=args.num_frames,
        image_size=args.image_size,
        precision=args.precision,
        progress=not args.no_progress,
    )
    if summary is None:  # not rank 0
        return 0

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}%"

    print(
        f"top-1 {pct(summary['top1'])}  top-5 {pct(summary['top5'])}  "
        f"({summary['num_evaluated']} videos evaluated, {summary['num_failed']} failed, "
        f"{summary['num_views']} views each)"
    )
    if summary["gflops_per_view"] is not None:
        print(f"GFLOPs per view: {summary['gflops_per_view']:.4g}")
    print(f"results: {args.out}/summary.json, {args.out}/predictions.jsonl")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="offline demo: the bundled trained model, accuracy vs GFLOPs of STA, ToMe and random pruning",
    )
    p.add_argument("--fast", action="store_true", help="a quick smoke run: 48 clips, one FLOPs target")
    p.add_argument("--clips", type=int, default=None, help="validation clips (default 500; 48 with --fast)")
    p.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=None,
        metavar="X",
        help="FLOPs ratios every method is evaluated at (default 0.8 0.7 0.6 0.5)",
    )
    p.add_argument(
        "--methods", nargs="+", default=["sta", "tome", "random"], choices=["sta", "tome", "random"]
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH", help="save the accuracy-vs-GFLOPs curve as PNG")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from stprune.demo.benchmark import DEFAULT_TARGETS, FAST_TARGETS, main_demo

    clips = args.clips or (48 if args.fast else 500)
    targets = args.targets or (FAST_TARGETS if args.fast else DEFAULT_TARGETS)
    main_demo(
        clips,
        targets,
        args.methods,
        args.batch_size,
        args.threads,
        args.json,
        args.plot,
        progress=not args.no_progress,
    )
    return 0


def _add_show(sub: argparse._SubParsersAction) -> None:
    from stprune.models.loading import MODEL_HELP

    p = sub.add_parser("show", help="draw which tokens are kept at every pruning stage")
    p.add_argument("--model", default="demo", help=MODEL_HELP)
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--clip", type=int, default=None, help="validation clip index of the demo task (--model demo)"
    )
    src.add_argument("--video", default=None, help="a video file (PyAV), frames spread over its length")
    p.add_argument("--method", default="sta", choices=["sta", "random"])
    p.add_argument(
        "--r", type=int, nargs="+", default=None, help="tokens dropped per group (one or per stage)"
    )
    p.add_argument("--flops-target", type=float, default=None, help="FLOPs ratio (default 0.5 when no --r)")
    p.add_argument("--out", required=True, help="PNG path")
    p.set_defaults(func=_run_show)


def _run_show(args: argparse.Namespace) -> int:
    from stprune.demo.show import show

    r = args.r if args.r is None or len(args.r) > 1 else args.r[0]
    out = show(
        args.model,
        args.out,
        clip=args.clip,
        video=args.video,
        method=args.method,
        r=r,
        flops_target=args.flops_target,
    )
    print(f"wrote {out}")
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
    _add_eval,
    _add_demo,
    _add_show,
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
    """Entry point of the ``stprune`` command; returns the process exit code.

    Bad settings (ValueError, TypeError, NotImplementedError, a missing file) print one line
    ``stprune <command>: error: ...`` and return 2, like argparse's own usage errors.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, NotImplementedError, FileNotFoundError) as err:
        print(f"stprune {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
