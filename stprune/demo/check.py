"""Measure the demo's ingredients: generator speed, model throughput, validation top-1 (also from mp4
round-tripped clips), and top-1 under STA at given FLOPs targets.

    python -m stprune.demo.check [--task easy|hard] [--num 600] [--flops-target 0.9 0.8 0.7 0.6 0.5] [--mp4]

Prints one line per measurement; the numbers in the demo's docs come from this script.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.synthetic import DEFAULT_VAL_SEED
from stprune.demo.tasks import TASKS, model_path, task_module


class _Clips(torch.utils.data.Dataset):
    """Pre-rendered clips as the ``{"pixel_values", "labels"}`` items ``evaluate_top1`` reads."""

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        self.data = TensorDataset(pixel_values, labels)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.data[i]
        return {"pixel_values": x, "labels": y}


@torch.no_grad()
def clips_per_second(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 32, rounds: int = 3) -> float:
    """Forward throughput (clips/s) of ``model`` on ``x`` (N, T, C, H, W): best of ``rounds`` passes
    over the first ``4 * batch_size`` clips, after one warm-up batch."""
    x = x[: 4 * batch_size]
    model(pixel_values=x[:batch_size])
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch_size):
            model(pixel_values=x[i : i + batch_size])
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m stprune.demo.check``."""
    from stprune.argtypes import OneLineParser, flops_ratio, nonnegative_int, positive_int
    from stprune.methods import encoder_methods

    p = OneLineParser(prog="python -m stprune.demo.check", description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=list(TASKS), default="easy", help="demo task (default easy)")
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="model weights, .safetensors with its .json beside it (default: the task's bundled model)",
    )
    p.add_argument(
        "--num", type=positive_int, default=600, metavar="N", help="validation clips (default 600)"
    )
    p.add_argument(
        "--seed",
        type=nonnegative_int,
        default=DEFAULT_VAL_SEED,
        metavar="S",
        help="validation split seed (default 0)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=32, metavar="B", help="clips per forward (default 32)"
    )
    p.add_argument(
        "--threads", type=positive_int, default=2, metavar="N", help="torch CPU threads (default 2)"
    )
    p.add_argument(
        "--flops-target",
        type=flops_ratio,
        nargs="*",
        default=[0.9, 0.8, 0.7, 0.6, 0.5],
        metavar="X",
        help="FLOPs targets to score the method at (default 0.9 0.8 0.7 0.6 0.5; none: unpruned only)",
    )
    p.add_argument(
        "--method", default="sta", choices=sorted(encoder_methods()), help="pruning method (default sta)"
    )
    p.add_argument("--mp4", action="store_true", help="also score clips written to mp4 and decoded")
    args = p.parse_args(argv)
    if args.weights is None:
        args.weights = model_path(args.task)
    weights = args.weights.with_suffix(".json")
    if not args.weights.is_file() or not weights.is_file():
        p.error(f"--weights {str(args.weights)!r}: needs the file and its {weights.name} beside it")
    torch.set_num_threads(args.threads)
    from stprune.demo.evaluate import evaluate_top1

    info = load_demo_info(weights)
    model = load_demo_model(args.weights)
    print(f"machine: torch {torch.__version__}, {torch.get_num_threads()} threads; {args.task} task")

    t0 = time.perf_counter()
    frames, labels = task_module(args.task).generate_clips(range(args.num), "val", args.seed)
    gen_ms = (time.perf_counter() - t0) / args.num * 1000
    print(f"generator: {gen_ms:.2f} ms/clip ({args.num} clips, {frames.shape[1:]} uint8)")
    x = frames_to_pixel_values(frames, info.mean, info.std)
    y = torch.as_tensor(labels)
    val = _Clips(x, y)

    cps = clips_per_second(model, x, args.batch_size)
    top1 = evaluate_top1(model, val, args.batch_size, progress=False)
    print(
        f"unpruned: top-1 {top1 * 100:.2f}% on {args.num} val clips, "
        f"{cps:.1f} clips/s (batch {args.batch_size})"
    )

    if args.mp4:
        from stprune.demo.videos import read_mp4, write_mp4

        with tempfile.TemporaryDirectory() as tmp:
            decoded = np.empty_like(frames)
            for i in range(args.num):
                write_mp4(Path(tmp) / "c.mp4", frames[i])
                decoded[i] = read_mp4(Path(tmp) / "c.mp4")
        xd = frames_to_pixel_values(decoded, info.mean, info.std)
        top1_mp4 = evaluate_top1(model, _Clips(xd, y), args.batch_size, progress=False)
        err = np.abs(decoded.astype(np.int16) - frames).mean()
        print(f"mp4 round trip: top-1 {top1_mp4 * 100:.2f}% (mean abs pixel error {err:.2f})")

    if args.flops_target:
        import stprune

        for target in args.flops_target:
            stprune.patch(model, method=args.method, flops_target=target)
            pi = stprune.patch_info(model)
            pcps = clips_per_second(model, x, args.batch_size)
            ptop1 = evaluate_top1(model, val, args.batch_size, progress=False)
            stprune.unpatch(model)
            rs = ",".join(str(s.r) for s in pi.stages)
            print(
                f"{args.method} flops_target {target:.2f}: r={rs} est. FLOPs ratio {pi.flops_ratio:.3f}, "
                f"top-1 {ptop1 * 100:.2f}% ({(ptop1 - top1) * 100:+.2f}), {pcps:.1f} clips/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
