"""What rank 0 makes of the rows once every rank is done: each setting's merged predictions and
summary, and a sweep's table and plot.

- :func:`merge_rows`: one setting's rows from every rank (the first row of a video wins);
- :func:`write_summaries`: per setting, ``predictions.jsonl`` in list order and ``summary.json``
  (:func:`stprune.eval.results.summarize`, GFLOPs per view, the pruning installed, the run);
- :func:`sweep_rows` / :func:`write_sweep_files`: ``sweep.json`` (a row per setting, one per
  setting that could not run; each setting's top-1 interval and its paired differences to the
  unpruned model and to STA, :mod:`stprune.eval.stats`, from the per-video correctness,
  :func:`correctness`) and ``sweep.png`` (with the top-1 intervals as error bars).
"""

from __future__ import annotations

import datetime
import inspect
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stprune.architectures.loading import ResolvedModel, model_input_name
from stprune.bench.compare import Setting
from stprune.eval import results as res
from stprune.eval.distributed import DistContext
from stprune.eval.options import RunOptions
from stprune.eval.plan import Target
from stprune.eval.stats import (
    STAT_FIELDS,
    STATISTICS_HEADERS,
    SettingCorrectness,
    statistics_cells,
    statistics_notes,
    sweep_statistics,
)
from stprune.eval.sweep import CurvePoint, setting_gflops, sweep_figure

__all__ = [
    "run_info",
    "merge_rows",
    "write_summaries",
    "correctness",
    "sweep_rows",
    "write_sweep_files",
    "sweep_table",
]


def view_inputs(resolved: ResolvedModel, device: torch.device) -> dict[str, torch.Tensor]:
    """One random view, as the model's keyword input, for counting FLOPs."""
    pre = resolved.preprocessing
    g = torch.Generator().manual_seed(0)
    view = torch.randn(1, pre.num_frames, 3, pre.image_size, pre.image_size, generator=g).to(device)
    if pre.layout == "BTCHW" and hasattr(resolved.model, "config"):
        return {model_input_name(resolved.model): view}
    first = next(iter(inspect.signature(resolved.model.forward).parameters))
    return {first: view.transpose(1, 2)}


def target_gflops(
    resolved: ResolvedModel, target: Target, rows: dict[str, dict[str, Any]], device: torch.device
) -> float | None:
    """GFLOPs per view: counted with FlopCounterMode for a fixed-cost setting; for a threshold
    setting the mean over its evaluated videos of each row's ``gflops`` (each the mean over views)."""
    if target.resolved.adaptive:
        values = [
            r["gflops"] for r in rows.values() if r.get("error") is None and r.get("gflops") is not None
        ]
        return sum(values) / len(values) if values else None
    try:
        return setting_gflops(resolved.model, target.resolved, view_inputs(resolved, device))
    except Exception as e:  # noqa: BLE001 - a FLOP count must not cost the summary of a long run
        tqdm.write(f"warning: could not count GFLOPs per view ({type(e).__name__}: {e})")
        return None


def warn_short(
    summary: dict[str, Any], protocol: str, num_frames: int, rate: int, window: int, stacklevel: int = 3
) -> None:
    """Warn when evaluated videos are shorter than the sampling window (their clips repeat frames);
    ``stacklevel`` as :func:`warnings.warn`'s, counted from here (the default: this function's
    caller's caller)."""
    if not summary["num_short"]:
        return
    if protocol == "kinetics":
        what = f"{num_frames} frames at stride {rate} span {window}"
        hint = "If the model was trained with another sampling, pass its --sampling-rate"
    else:
        what, hint = f"one frame for each of {num_frames} segments", "Check the videos"
    warnings.warn(
        f"{summary['num_short']} of {summary['num_evaluated']} videos have fewer than {window} "
        f"frames, the sampling window ({what}): their clips repeat frames. {hint}",
        stacklevel=stacklevel,
    )


def run_info(ctx: DistContext, opts: RunOptions) -> dict[str, Any]:
    """The ``run`` part of a summary: date, device, precision, world size, workers, versions."""
    import stprune

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(ctx.device),
        "precision": opts.precision,
        "world_size": ctx.world_size,
        "workers": opts.workers,
        "stprune_version": stprune.__version__,
        "torch_version": torch.__version__,
    }


def merge_rows(
    gathered: Sequence[Sequence[dict[str, dict[str, Any]]]] | None, i: int
) -> dict[str, dict[str, Any]]:
    """Setting ``i``'s rows from every rank's part of ``gathered`` (per rank, per setting: rows by
    video), keyed by video; the first row of a video wins."""
    rows: dict[str, dict[str, Any]] = {}
    for part in gathered or []:
        for video, row in part[i].items():
            rows.setdefault(video, row)
    return rows


def write_summaries(
    targets: list[Target],
    gathered: Sequence[Sequence[dict[str, dict[str, Any]]]] | None,
    order: list[str],
    resolved: ResolvedModel,
    opts: RunOptions,
    device: torch.device,
    rate: int,
    window: int,
    speeds: Sequence[float | None],
    run: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, dict[str, Any]]]]:
    """Per setting: merge its rows, write ``predictions.jsonl`` (list ``order``) and
    ``summary.json``. Returns the summaries and each setting's merged rows (by video), in the
    order of ``targets``. Called by ``run_eval`` itself: the short-video warning points at its
    caller."""
    summaries, merged = [], []
    for i, t in enumerate(targets):
        rows = merge_rows(gathered, i)
        summary = res.summarize(rows, order, window)
        if i == 0:
            warn_short(summary, opts.protocol, resolved.preprocessing.num_frames, rate, window, stacklevel=4)
        summary.update(
            {
                "gflops_per_view": target_gflops(resolved, t, rows, device),
                "pruning": None if t.resolved.pruning is None else dict(t.resolved.pruning),
                "settings": t.record,
                "model_description": resolved.description,
                "num_views": opts.views.num_views,
                "limit": opts.limit,
                # views per second of rank 0's forwards in this run (median over batches)
                "run": {**run, "views_per_s": speeds[i]},
            }
        )
        res.write_merged(t.dir, rows, order)
        res.write_json_atomic(t.dir / res.SUMMARY_FILE, summary)
        summaries.append(summary)
        merged.append(rows)
    return summaries, merged


def correctness(rows: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> dict[str, bool]:
    """Per video of ``order`` evaluated without error (the unit of the statistics: a video, its
    views already averaged), whether its top-1 prediction is its label; in list order."""
    out = {}
    for video in order:
        row = rows.get(video)
        if row is not None and not row.get("error"):
            out[video] = row["pred"] == row["label"]
    return out


def sweep_rows(
    targets: list[Target],
    summaries: list[dict[str, Any]],
    skipped: list[Setting],
    notes: list[str],
    correct: Sequence[Mapping[str, bool]] | None = None,
) -> list[dict[str, Any]]:
    """``sweep.json``: a row per setting (the unpruned model has method "none"), then one per
    setting that could not run, with the reason in ``skipped``.

    With ``correct`` (per setting, :func:`correctness`), every row also gets the fields of
    :func:`stprune.eval.stats.sweep_statistics` (top-1's 95% interval; the difference to the
    unpruned model and to STA at the nearest FLOPs ratio, with its paired bootstrap interval and
    McNemar p, on the videos both settings evaluated); None where they do not apply."""
    base = next(
        (
            s["gflops_per_view"]
            for t, s in zip(targets, summaries, strict=True)
            if t.resolved.method == "none"
        ),
        None,
    )
    rows = []
    for t, s in zip(targets, summaries, strict=True):
        g = s["gflops_per_view"]
        rows.append(
            {
                "method": t.resolved.method,
                "setting": t.resolved.label,
                "gflops_per_view": g,
                "flops_ratio": None if g is None or not base else g / base,
                "top1": s["top1"],
                "top5": s["top5"],
                "num_evaluated": s["num_evaluated"],
                "num_failed": s["num_failed"],
                "r_per_stage": list(t.resolved.r_per_stage),
                "dir": t.name,
                "skipped": None,
            }
        )
    if correct is not None:
        outcomes = [
            SettingCorrectness(row["method"], row["setting"], row["flops_ratio"], c)
            for row, c in zip(rows, correct, strict=True)
        ]
        for row, fields in zip(rows, sweep_statistics(outcomes), strict=True):
            row.update(fields)
    for setting, note in zip(skipped, notes, strict=True):
        rows.append(
            {
                "method": setting.method,
                "setting": setting.label,
                "gflops_per_view": None,
                "flops_ratio": None,
                "top1": None,
                "top5": None,
                "num_evaluated": 0,
                "num_failed": 0,
                "r_per_stage": [],
                "dir": None,
                "skipped": note,
                **(dict.fromkeys(STAT_FIELDS) if correct is not None else {}),
            }
        )
    return rows


def plot_sweep(
    out: Path,
    targets: list[Target],
    summaries: list[dict[str, Any]],
    title: str,
    cis: Sequence[Sequence[float] | None] | None = None,
) -> Path | None:
    """``sweep.png``: top-1 vs GFLOPs per view of every setting that evaluated a video, with
    ``cis`` (per setting, top-1's 95% interval ``[lo, hi]``) as error bars."""
    from stprune.bench.report import save_figure

    cis = list(cis) if cis is not None else [None] * len(targets)
    points = [
        CurvePoint(
            t.resolved.method,
            t.resolved.label,
            s["gflops_per_view"],
            s["top1"],
            t.resolved.adaptive,
            None if ci is None else (ci[0], ci[1]),
        )
        for t, s, ci in zip(targets, summaries, cis, strict=True)
        if s["gflops_per_view"] is not None and s["top1"] is not None
    ]
    try:
        return save_figure(sweep_figure(points, title), out / res.SWEEP_PLOT)
    except Exception as e:  # noqa: BLE001 - a plot must not cost the results of a long run
        tqdm.write(f"warning: could not draw {out / res.SWEEP_PLOT} ({type(e).__name__}: {e})")
        return None


def write_sweep_files(
    out: Path,
    targets: list[Target],
    summaries: list[dict[str, Any]],
    skipped: list[Setting],
    notes: list[str],
    title: str,
    correct: Sequence[Mapping[str, bool]] | None = None,
) -> list[dict[str, Any]]:
    """``sweep.json`` (:func:`sweep_rows`, with the statistics when ``correct`` is given) and
    ``sweep.png`` (top-1 with its 95% interval as error bars) in ``out``; returns the rows."""
    table = sweep_rows(targets, summaries, skipped, notes, correct)
    res.write_sweep(out, table)
    plot_sweep(out, targets, summaries, title, [row.get("top1_ci95") for row in table[: len(targets)]])
    return table


def sweep_table(result: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]], list[str]]:
    """The console table of a sweep (``run_eval``'s result): its columns (header, justification),
    a row of cells per setting that ran, and the lines under it (what the statistics mean, then
    the settings that were skipped)."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = [r for r in result["sweep"] if r["skipped"] is None]
    columns = [(c, "left") for c in ("method", "setting", "r per stage")]
    columns += [(c, "right") for c in ("GFLOPs/view", "ratio")]
    columns += [(STATISTICS_HEADERS[0], "right"), ("top-5 %", "right"), ("evaluated", "right")]
    columns += [("failed", "right"), *((h, "left") for h in STATISTICS_HEADERS[1:])]
    cells = []
    for r in rows:
        top1, vs_base, vs_sta, sta_at = statistics_cells(r)
        cells.append(
            [
                r["method"],
                r["setting"],
                ",".join(map(str, r["r_per_stage"])) or "-",
                num(r["gflops_per_view"], "#.4g"),
                num(r["flops_ratio"], ".3f"),
                top1,
                num(r["top5"], ".2f"),
                str(r["num_evaluated"]),
                str(r["num_failed"]),
                vs_base,
                vs_sta,
                sta_at,
            ]
        )
    return columns, cells, [*statistics_notes("video"), *result["skipped"]]
