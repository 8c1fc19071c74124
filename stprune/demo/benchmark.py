"""``stprune demo``: accuracy vs GFLOPs of STA, ToMe and random pruning on the bundled model.

Offline and CPU-friendly: the validation clips of the synthetic task are generated on the fly
(deterministic), the bundled demo classifier is evaluated unpruned and with every method at the
same FLOPs targets, and the results are printed as a table (and optionally written as JSON and
plotted). GFLOPs are measured with ``FlopCounterMode`` (1 MAC = 1 FLOP); clips/s is the forward
throughput measured during the evaluation itself on this machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import stprune
from stprune.bench.compare import Setting, measure_flops_rows
from stprune.core.schedule import plural
from stprune.errors import SettingError

__all__ = [
    "DemoRow",
    "DEFAULT_TARGETS",
    "FAST_TARGETS",
    "demo_settings",
    "run_demo",
    "plot_demo",
    "demo_figure",
    "print_demo",
    "demo_payload",
]

#: FLOPs ratios every method is evaluated at (STA's r is chosen per target, so are the others')
DEFAULT_TARGETS: tuple[float, ...] = (0.8, 0.7, 0.6, 0.5)
FAST_TARGETS: tuple[float, ...] = (0.7,)
METHODS: tuple[str, ...] = ("sta", "tome", "random")


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table. ``top1`` in percent, ``gflops`` per clip."""

    method: str
    setting: str
    gflops: float
    ratio: float
    top1: float
    clips_per_s: float
    r_per_stage: list[int]


def demo_settings(targets: Sequence[float], methods: Sequence[str] = METHODS) -> list[Setting]:
    """The unpruned model, then every method at every FLOPs target."""
    for x in targets:
        if not 0 < x <= 1:
            raise SettingError(f"FLOPs targets must be in (0, 1]; got {x}")
    for m in methods:
        if m not in METHODS:
            raise SettingError(f"unknown demo method {m!r}; choose from {', '.join(METHODS)}")
    return [Setting()] + [Setting(m, flops_target=x) for m in methods for x in targets]


def _clips(num: int, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from stprune.demo.synthetic import generate_clip

    frames, labels = [], []
    for i in tqdm(range(num), desc="generating validation clips", disable=not progress, leave=False):
        f, y = generate_clip(i, "val")
        frames.append(f)
        labels.append(y)
    return torch.from_numpy(np.stack(frames)), torch.tensor(labels)


def _evaluate(
    model: torch.nn.Module,
    frames: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    bar: tqdm,
) -> tuple[float, float]:
    """(top-1 in percent, clips per second of forward time).

    Throughput is the median over batches of clips per second, so that a stall of the machine
    during one batch does not decide the figure.
    """
    from stprune.demo.dataset import frames_to_pixel_values

    correct, rates = 0, []
    with torch.inference_mode():
        model(pixel_values=frames_to_pixel_values(frames[:batch_size], mean, std))  # warm-up, untimed
        for start in range(0, len(frames), batch_size):
            x = frames_to_pixel_values(frames[start : start + batch_size], mean, std)
            t0 = time.perf_counter()
            logits = model(pixel_values=x).logits
            rates.append(len(x) / (time.perf_counter() - t0))
            correct += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
            bar.update(len(x))
    return 100.0 * correct / len(frames), float(np.median(rates))


def run_demo(
    num_clips: int = 500,
    targets: Sequence[float] = DEFAULT_TARGETS,
    methods: Sequence[str] = METHODS,
    batch_size: int = 32,
    progress: bool = True,
    on_row: Callable[[DemoRow], Any] | None = None,
    on_skip: Callable[[str], Any] | None = None,
) -> list[DemoRow]:
    """Evaluate the bundled demo model unpruned and with each method at each FLOPs target.

    Args:
        num_clips: validation clips (the first ``num_clips`` of the validation split), >= 1.
        targets: FLOPs ratios in (0, 1].
        methods: method names.
        batch_size: clips per forward, >= 1.
        progress: show progress bars.
        on_row: called with every finished row (e.g. to print as it goes).
        on_skip: called with a note for every (method, target) the method cannot reach on this
            model (e.g. ToMe's constant r per block stops at 0.59x on the 6-block demo model);
            by default the note is printed.
    """
    if num_clips < 1 or batch_size < 1:
        raise SettingError(f"num_clips and batch_size must be >= 1; got {num_clips}, {batch_size}")
    settings = demo_settings(targets, methods)  # bad targets fail before any work
    from stprune.demo.model import load_demo_info, load_demo_model

    model, info = load_demo_model(), load_demo_info()
    flops = [measure_flops_rows(model, settings[:1])[0]]
    notes = []
    for s in settings[1:]:
        try:
            flops.append(measure_flops_rows(model, [settings[0], s])[1])
        except SettingError as err:  # e.g. ToMe's constant r cannot go that low on a shallow model
            notes.append(f"skipped {s.method} {s.label}: {err}")
    if len(settings) > 1 and len(flops) == 1:  # nothing that was asked for can run: fail before the work
        raise SettingError(
            f"no method reaches any of the FLOPs targets {list(targets)} on the demo model; "
            f"{notes[0][len('skipped ') :]}"
        )
    for note in notes:
        (on_skip or tqdm.write)(note)
    frames, labels = _clips(num_clips, progress)
    rows: list[DemoRow] = []
    bar = tqdm(total=num_clips * len(flops), desc="evaluating", unit="clip", disable=not progress)
    for f in flops:
        bar.set_postfix_str(f"{f.setting.method} {f.setting.label}")
        f.setting.patch(model)
        try:
            top1, cps = _evaluate(model, frames, labels, info.mean, info.std, batch_size, bar)
        finally:
            if stprune.is_patched(model):
                stprune.unpatch(model)
        row = DemoRow(f.setting.method, f.setting.label, f.gflops, f.ratio, top1, cps, list(f.r_per_stage))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    bar.close()
    return rows


def demo_payload(rows: Sequence[DemoRow], **meta: Any) -> dict[str, Any]:
    """The ``--json`` document: ``{"results": [...], ...meta}``."""
    return {"results": [asdict(r) for r in rows], **meta}


def plot_demo(rows: Sequence[DemoRow], path: str | Path, title: str = "stprune demo") -> Path:
    """Save :func:`demo_figure` as a PNG at ``path`` and return the path."""
    from stprune.bench.report import save_figure

    return save_figure(demo_figure(rows, title), path)


def demo_figure(rows: Sequence[DemoRow], title: str = "stprune demo") -> Any:
    """Accuracy vs GFLOPs, one curve per method, the unpruned model as a star (a matplotlib
    Figure); the accuracy axis ends at 100%."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    base = next((r for r in rows if r.method == "none"), None)
    styles = {
        "sta": ("o-", "tab:red", "STA"),
        "tome": ("s--", "tab:blue", "ToMe"),
        "random": ("^:", "tab:gray", "random"),
    }
    for method, (fmt, color, name) in styles.items():
        pts = sorted((r.gflops, r.top1) for r in rows if r.method == method)
        if base is not None and pts:
            pts.append((base.gflops, base.top1))
        if pts:
            ax.plot(*zip(*pts, strict=True), fmt, color=color, label=name, clip_on=False)
    if base is not None:
        ax.plot(
            [base.gflops], [base.top1], "*", color="black", markersize=14, label="unpruned", clip_on=False
        )
    low = min((r.top1 for r in rows), default=0.0)
    ax.set_ylim(max(0.0, low - max(1.0, 0.05 * (100.0 - low))), 100.0)  # accuracy cannot exceed 100%
    ax.set_xlabel("GFLOPs per clip")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def print_demo(rows: Sequence[DemoRow], title: str, console: Any = None) -> None:
    """The demo table, then for each method its top-1 change (points) at the largest ratio <= 0.7
    and at its smallest ratio."""
    from rich.console import Console

    from stprune.bench.report import print_table

    console = console or Console()
    columns = [(c, "left") for c in ("method", "setting", "r per stage")]
    columns += [(c, "right") for c in ("GFLOPs", "ratio", "top-1 %", "clips/s")]
    cells = [
        [
            r.method,
            r.setting,
            ",".join(map(str, r.r_per_stage)) or "-",
            f"{r.gflops:.3f}",
            f"{r.ratio:.3f}",
            f"{r.top1:.1f}",
            f"{r.clips_per_s:.1f}",
        ]
        for r in rows
    ]
    print_table(title, columns, cells, console)
    base = next(r for r in rows if r.method == "none")
    for m in dict.fromkeys(r.method for r in rows if r.method != "none"):
        mine = [r for r in rows if r.method == m]
        at_07 = [r for r in mine if r.ratio <= 0.7 + 1e-9]
        picks = ([max(at_07, key=lambda r: r.ratio)] if at_07 else []) + [min(mine, key=lambda r: r.ratio)]
        said = ", ".join(
            f"at {p.ratio:.2f}x GFLOPs top-1 {p.top1:.1f}% ({p.top1 - base.top1:+.1f})"
            for p in (picks if picks[0] is not picks[-1] else picks[:1])
        )
        console.print(f"{m}: {said} vs unpruned {base.top1:.1f}%", highlight=False, soft_wrap=True)


def main_demo(
    clips: int,
    targets: Sequence[float],
    methods: Sequence[str],
    batch_size: int = 32,
    threads: int | None = None,
    json_path: str | None = None,
    plot_path: str | None = None,
    progress: bool = True,
) -> list[DemoRow]:
    """What ``stprune demo`` does: run, print the table, write JSON / plot when asked."""
    import datetime
    import platform

    from rich.console import Console

    from stprune.bench.report import check_writable, write_json

    if threads is not None:
        if threads < 1:
            raise SettingError(f"threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
    for path in (json_path, plot_path):  # fail now, not after the whole run
        if path:
            check_writable(path)
    console = Console()
    console.print(
        "[bold]stprune demo[/bold]: the bundled VideoMAE-style classifier (synthetic 12-class task, "
        f"16x96x96 clips), {clips} validation clips, CPU, {plural(torch.get_num_threads(), 'thread')}",
        soft_wrap=True,
    )
    t0 = time.perf_counter()
    skipped: list[str] = []
    rows = run_demo(clips, targets, methods, batch_size, progress=progress, on_skip=skipped.append)
    elapsed = time.perf_counter() - t0
    print_demo(rows, f"accuracy vs GFLOPs ({clips} clips, {elapsed:.0f} s)", console)
    for note in skipped:
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    meta = {
        "clips": clips,
        "targets": list(targets),
        "date": str(datetime.date.today()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "seconds": round(elapsed, 1),
        "skipped": skipped,
    }
    if json_path:
        write_json(json_path, demo_payload(rows, **meta))
        console.print(f"wrote {json_path}")
    if plot_path:
        plot_demo(rows, plot_path, title=f"stprune demo: {clips} synthetic validation clips")
        console.print(f"wrote {plot_path}")
    return rows
