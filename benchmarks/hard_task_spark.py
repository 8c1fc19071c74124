"""Why a method wins or loses on the demo's hard task: how many of the spark's tokens it keeps.

The hard task's label is the colour and direction of a small spark visible in 6 of the 16 frames
(``stprune.demo.synthetic_hard``); a method that drops its tokens leaves the classifier a guess.
This script renders every validation clip twice, with and without the spark, marks as *spark
tokens* the (tubelet, patch) cells where the two differ by more than ``--min-diff`` grey levels
in some pixel, runs the bundled hard-task model patched with each setting and reads from
``stprune.last_trace`` which original grid positions survive every pruning point. It prints, per
setting: top-1, the share of spark tokens kept after the last pruning point (mean over clips), the
share of clips that lose every spark token, and top-1 on the clips that keep at least half.

Only methods that keep positions (STA, random, RLT) have a trace of kept positions; merging
methods (ToMe, vid-TLDR) are left out.

    python benchmarks/hard_task_spark.py                       # 1000 clips, 0.7x, 0.5x, r=18,18,10
    python benchmarks/hard_task_spark.py --clips 200 --targets 0.5
    python benchmarks/hard_task_spark.py --json benchmarks/results/hard_task_spark.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

import stprune
from stprune.demo.dataset import frames_to_pixel_values
from stprune.demo.model import load_demo_info, load_demo_model
from stprune.demo.synthetic_hard import clip_rng, label_of, render_scene, sample_scene
from stprune.demo.tasks import model_path
from stprune.errors import SettingError

PATCH, TUBELET = 16, 2


def spark_cells(scene: object, frames: np.ndarray, min_diff: int) -> np.ndarray:
    """(T0 * N,) bool: the (tubelet, patch) cells of ``frames`` (T, H, W, 3) the spark changes."""
    without = render_scene(
        dataclasses.replace(scene, spark=dataclasses.replace(scene.spark, x=-1e4, y=-1e4))
    )  # off-screen
    diff = np.abs(frames.astype(np.int16) - without.astype(np.int16)).max(axis=-1) > min_diff  # (T, H, W)
    t, h, w = diff.shape
    cells = diff.reshape(t // TUBELET, TUBELET, h // PATCH, PATCH, w // PATCH, PATCH).any(axis=(1, 3, 5))
    return cells.reshape(-1)


def render(num: int, min_diff: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (num, 16, 96, 96, 3), labels (num,) and spark cells (num, 288) of validation clips."""
    frames, labels, cells = [], [], []
    for i in range(num):
        scene = sample_scene(clip_rng(i, "val"), label_of(i))
        clip = render_scene(scene)
        frames.append(clip)
        labels.append(scene.label)
        cells.append(spark_cells(scene, clip, min_diff))
    return np.stack(frames), np.asarray(labels), np.stack(cells)


def kept_mask(positions: torch.Tensor, tokens: int) -> torch.Tensor:
    """(B, tokens) bool: which grid positions ``positions`` (B, kept; -1 = padding) keeps."""
    keep = torch.zeros(len(positions), tokens, dtype=torch.bool)
    valid = positions >= 0
    rows = torch.arange(len(positions))[:, None].expand_as(positions)
    keep[rows[valid], positions[valid]] = True
    return keep


@torch.no_grad()
def run_setting(
    model: torch.nn.Module, x: torch.Tensor, cells: torch.Tensor, batch: int, **setting: object
) -> dict:
    """Predictions and, per clip, the grid positions kept after the first and the last pruning
    point ((N, T0 * N_s) bool each; all True unpruned)."""
    if setting:
        stprune.patch(model, **setting)
    preds, first, last = [], [], []
    try:
        for i in range(0, len(x), batch):
            preds.append(model(pixel_values=x[i : i + batch]).logits.argmax(-1))
            if setting:
                stages = stprune.last_trace(model).stages
                first.append(kept_mask(stages[0].positions, cells.shape[1]))
                last.append(kept_mask(stages[-1].positions, cells.shape[1]))
            else:
                first.append(torch.ones(len(preds[-1]), cells.shape[1], dtype=torch.bool))
                last.append(first[-1])
        ratio = stprune.patch_info(model).flops_ratio if setting else 1.0
    finally:
        if setting:
            stprune.unpatch(model)
    return {
        "pred": torch.cat(preds),
        "first": torch.cat(first),
        "last": torch.cat(last),
        "flops_ratio": ratio,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=1000, help="validation clips (default 1000, the demo's)")
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5], help="FLOPs targets")
    p.add_argument(
        "--sta-r",
        type=int,
        nargs="*",
        default=[18, 18, 10],
        help="also STA at this r per stage (default 18 18 10: the most front-loaded paper schedule near "
        "0.5x; none to skip)",
    )
    p.add_argument("--min-diff", type=int, default=24, help="grey levels that make a cell a spark cell")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    frames, labels, cells_np = render(args.clips, args.min_diff)
    info = load_demo_info(model_path("hard").with_suffix(".json"))
    x = frames_to_pixel_values(torch.as_tensor(frames), info.mean, info.std)
    y, cells = torch.as_tensor(labels), torch.as_tensor(cells_np)
    total = cells.sum(1).clamp(min=1).float()
    model = load_demo_model(task="hard")

    settings: list[tuple[str, dict]] = [("unpruned", {})]
    for target in args.targets:
        settings += [
            (f"sta {target}", {"method": "sta", "flops_target": target}),
            (f"random {target}", {"method": "random", "flops_target": target}),
            (f"rlt {target}", {"method": "rlt", "flops_target": target}),
        ]
    if args.sta_r:
        settings.append((f"sta r={','.join(map(str, args.sta_r))}", {"method": "sta", "r": list(args.sta_r)}))
    print(
        f"{args.clips} hard-task validation clips; spark tokens per clip: mean {total.mean():.1f} of "
        f"{cells.shape[1]} (min {int(total.min())}, max {int(total.max())})"
    )
    columns = [
        ("setting", 16, "{}"),
        ("FLOPs", 6, "{:.3f}"),
        ("top-1", 6, "{:.1f}"),
        ("all kept", 9, "{:.1f}%"),
        ("spark kept@1", 13, "{:.1f}%"),
        ("spark kept", 11, "{:.1f}%"),
        ("no spark", 9, "{:.1f}%"),
        ("top-1 | >= half", 16, "{}"),
    ]
    print("  ".join(f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w, _) in enumerate(columns)))
    rows = []
    for name, setting in settings:
        try:
            res = run_setting(model, x, cells, args.batch_size, **setting)
        except SettingError as err:
            print(f"{name:<16}  unreachable: {err}")
            continue
        correct = (res["pred"] == y).float()
        spark_last = (res["last"] & cells).sum(1)
        half = spark_last.float() / total >= 0.5
        row = {
            "setting": name,
            **setting,
            "flops_ratio": res["flops_ratio"],
            "top1": 100 * correct.mean().item(),
            "tokens_kept_after_last_point": 100 * res["last"].float().mean().item(),
            "spark_kept_after_first_point": 100 * (res["first"] & cells).sum().item() / total.sum().item(),
            "spark_kept_after_last_point": 100 * spark_last.sum().item() / total.sum().item(),
            "clips_with_no_spark_token": 100 * (spark_last == 0).float().mean().item(),
            "top1_when_half_kept": 100 * correct[half].mean().item() if half.any() else None,
            "clips_half_kept": int(half.sum()),
        }
        rows.append(row)
        when = "-" if not half.any() else f"{row['top1_when_half_kept']:.1f} ({int(half.sum())})"
        values = [name, row["flops_ratio"], row["top1"], row["tokens_kept_after_last_point"]]
        values += [row["spark_kept_after_first_point"], row["spark_kept_after_last_point"]]
        values += [row["clips_with_no_spark_token"], when]
        cells_text = [fmt.format(v) for (_, _, fmt), v in zip(columns, values, strict=True)]
        print(
            "  ".join(
                f"{t:<{w}}" if i == 0 else f"{t:>{w}}"
                for i, (t, (_, w, _)) in enumerate(zip(cells_text, columns, strict=True))
            )
        )
    print(
        "all kept: share of the clip's tokens left after the last pruning point; spark kept@1 / spark "
        "kept: share of the spark's tokens left after the first / the last point (pooled over the clips); "
        "no spark: clips left with none; top-1 | >= half: top-1 on the clips that keep at least half their "
        "spark tokens (how many)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "command": "python benchmarks/hard_task_spark.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "clips": args.clips,
            "min_diff": args.min_diff,
        }
        args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
