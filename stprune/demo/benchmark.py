"""``stprune demo``: accuracy vs GFLOPs of every pruning method on the bundled model.

Offline and CPU-friendly: the validation clips of the synthetic task are generated on the fly
(deterministic), and the bundled demo classifier is evaluated unpruned and with every registered
method (STA, ToMe, random pruning, RLT) at the same FLOPs targets, plus RLT in its threshold mode
(the paper's tau = 0.1, a token count per clip), by the same sweep engine as ``stprune eval``
(:mod:`stprune.eval.sweep`): every batch of clips goes through every setting. The results are
printed as a table (and optionally written as JSON and plotted). GFLOPs are measured with
``FlopCounterMode`` (1 MAC = 1 FLOP; a threshold setting's is the mean over clips of
``stprune.last_macs``); clips/s is the forward throughput measured during the evaluation itself on
this machine (median over batches).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from stprune.bench.compare import Setting
from stprune.core.schedule import plural
from stprune.errors import SettingError
from stprune.eval.stats import (
    SettingCorrectness,
    format_delta,
    statistics_notes,
    sweep_statistics,
)
from stprune.eval.sweep import (
    RLT_METHOD,
    CurvePoint,
    SweepEngine,
    method_names,
    resolve_settings,
    running_top1,
    setting_gflops,
    short_label,
    sweep_figure,
    sweep_settings,
)

__all__ = [
    "DemoRow",
    "DEFAULT_TARGETS",
    "FAST_TARGETS",
    "DEFAULT_THRESHOLDS",
    "demo_methods",
    "demo_settings",
    "run_demo",
    "plot_demo",
    "demo_figure",
    "print_demo",
    "demo_payload",
    "DEFAULT_CLIPS",
    "DEFAULT_TASK",
    "TASK_CHOICES",
    "demo_tasks",
    "main_demo",
]

#: FLOPs ratios every method is evaluated at (STA's r is chosen per target, so are the others'),
#: from 1.0 (the unpruned row) down to 0.3; a target a method cannot reach on the 6-block demo
#: model is skipped with a note (STA and random pruning stop at 0.45x, ToMe at 0.59x)
DEFAULT_TARGETS: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
FAST_TARGETS: tuple[float, ...] = (0.7,)
#: RLT's threshold settings when RLT is among the methods (the paper's tau, ImageNet-normalised
#: input, which is what the demo model takes)
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1,)


def demo_methods() -> tuple[str, ...]:
    """The methods the demo compares by default: every registered one (``stprune.methods.METHODS``)."""
    return method_names()


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo table. ``top1`` in percent, ``gflops`` per clip (for a threshold
    setting, ``adaptive``, the mean over the clips). The statistics (None where they do not apply;
    :func:`stprune.eval.stats.sweep_statistics`, the clip is the unit, every setting ran on the
    same clips): ``top1_ci95`` top-1's 95% Wilson interval; ``delta_top1_vs_unpruned`` (points),
    its 95% paired bootstrap interval ``delta_ci95`` and exact McNemar ``mcnemar_p``; the same
    against STA at the nearest FLOPs ratio (``*_vs_sta``), which is ``sta_setting``."""

    method: str
    setting: str
    gflops: float
    ratio: float
    top1: float
    clips_per_s: float
    r_per_stage: list[int]
    adaptive: bool = False
    top1_ci95: list[float] | None = None
    delta_top1_vs_unpruned: float | None = None
    delta_ci95: list[float] | None = None
    mcnemar_p: float | None = None
    delta_top1_vs_sta: float | None = None
    delta_ci95_vs_sta: list[float] | None = None
    mcnemar_p_vs_sta: float | None = None
    sta_setting: str | None = None


def demo_settings(
    targets: Sequence[float],
    methods: Sequence[str] | None = None,
    thresholds: Sequence[float] | None = None,
) -> list[Setting]:
    """The unpruned model, then every method at every FLOPs target, then RLT at every threshold
    (``thresholds`` None: :data:`DEFAULT_THRESHOLDS` when RLT is among the methods)."""
    for x in targets:
        if not 0 < x <= 1:
            raise SettingError(f"FLOPs targets must be in (0, 1]; got {x}")
    known = demo_methods()
    methods = list(known if methods is None else methods)
    for m in methods:
        if m not in known:
            raise SettingError(f"unknown demo method {m!r}; choose from {', '.join(known)}")
    if thresholds is None:
        thresholds = DEFAULT_THRESHOLDS if RLT_METHOD in methods else ()
    return sweep_settings(methods, flops_target=list(targets), threshold=list(thresholds))


def _clips(num: int, task: str) -> Iterator[tuple[torch.Tensor, int]]:
    """Validation clips ``0 .. num-1`` of ``task``, one at a time (frames (1, T, H, W, 3) uint8, label),
    generated as the evaluation consumes them: thousands of clips never sit in memory together."""
    from stprune.demo.tasks import generate_clip

    for i in range(num):
        f, y = generate_clip(task, i, "val")
        yield torch.from_numpy(f[None]), int(y)


def reachable_settings(
    model: torch.nn.Module, settings: Sequence, targets: Sequence[float]
) -> tuple[list, list]:
    """:func:`resolve_settings` of ``settings`` on the demo ``model``: (resolved, skipped); a
    ``SettingError`` when no method reaches any of ``targets`` (before any work)."""
    resolved, skipped = resolve_settings(model, settings)
    at_targets = [t for t in resolved if t.method != "none" and not t.adaptive]
    if skipped and not at_targets:
        raise SettingError(
            f"no method reaches any of the FLOPs targets {list(targets)} on the demo model; "
            f"{skipped[0].note[len('skipped ') :]}"
        )
    return resolved, skipped


def run_demo(
    num_clips: int = 500,
    targets: Sequence[float] = DEFAULT_TARGETS,
    methods: Sequence[str] | None = None,
    batch_size: int = 32,
    progress: bool = True,
    on_row: Callable[[DemoRow], Any] | None = None,
    on_skip: Callable[[str], Any] | None = None,
    thresholds: Sequence[float] | None = None,
    task: str = "easy",
) -> list[DemoRow]:
    """Evaluate the bundled demo model unpruned and with each method at each FLOPs target (and RLT
    at each threshold), every batch of clips through every setting.

    Args:
        num_clips: validation clips (the first ``num_clips`` of the validation split), >= 1.
        targets: FLOPs ratios in (0, 1].
        methods: method names (default: every registered method).
        batch_size: clips per forward, >= 1.
        progress: show a progress bar (with every setting's running top-1).
        on_row: called with every finished row (e.g. to print as it goes).
        on_skip: called with a note for every (method, target) the method cannot reach on this
            model (e.g. ToMe's constant r per block stops at 0.59x on the 6-block demo model);
            by default the note is printed.
        thresholds: RLT's thresholds (default: 0.1 when RLT is among the methods).
        task: ``"easy"`` or ``"hard"`` (:mod:`stprune.demo.tasks`): the task's validation clips
            and its bundled model.
    """
    from stprune.demo.tasks import check_task

    check_task(task)
    if num_clips < 1 or batch_size < 1:
        raise SettingError(f"num_clips and batch_size must be >= 1; got {num_clips}, {batch_size}")
    settings = demo_settings(targets, methods, thresholds)  # bad targets fail before any work
    from stprune.demo.dataset import frames_to_pixel_values
    from stprune.demo.model import load_demo_info, load_demo_model

    model, info = load_demo_model(task=task), load_demo_info(task=task)
    resolved, skipped = reachable_settings(model, settings, targets)
    for s in skipped:
        (on_skip or tqdm.write)(s.note)
    labels: list[int] = []
    first: torch.Tensor | None = None

    def prepare(f: torch.Tensor) -> torch.Tensor:
        return frames_to_pixel_values(f, info.mean, info.std)

    engine = SweepEngine(model, lambda x: model(pixel_values=x).logits, resolved, batch_size, prepare=prepare)
    n = len(resolved)
    correct, counted, gflops_sum = [0] * n, [0] * n, [0.0] * n
    hits: list[dict[int, bool]] = [{} for _ in range(n)]  # per setting: clip -> right (paired statistics)
    names = [short_label(t.setting) for t in resolved]
    bar = tqdm(total=num_clips, desc="evaluating", unit="clip", disable=not progress)

    def record(finished: list) -> None:
        for done in finished:
            for i, probs in done.probs.items():
                correct[i] += int(int(probs.argmax()) == labels[done.owner])
                counted[i] += 1
                hits[i][done.owner] = int(probs.argmax()) == int(labels[done.owner])
                gflops_sum[i] += done.gflops.get(i, 0.0)
            bar.update(1)
        if finished:
            bar.set_postfix_str(running_top1(names, correct, counted), refresh=False)

    try:
        for i, (frames, label) in enumerate(_clips(num_clips, task)):
            labels.append(label)
            first = frames if first is None else first
            record(engine.add(i, frames))
        record(engine.flush())
    finally:
        bar.close()
    one = {"pixel_values": prepare(first)}
    gflops = [
        gflops_sum[i] / num_clips if t.adaptive else setting_gflops(model, t, one)
        for i, t in enumerate(resolved)
    ]
    speeds = engine.clips_per_s()
    stats = sweep_statistics(
        [
            SettingCorrectness(t.method, t.label, gflops[i] / gflops[0], hits[i])
            for i, t in enumerate(resolved)
        ]
    )
    rows: list[DemoRow] = []
    for i, t in enumerate(resolved):
        row = DemoRow(
            t.method,
            t.label,
            gflops[i],
            gflops[i] / gflops[0],
            100.0 * correct[i] / num_clips,
            float(speeds[i] or 0.0),
            list(t.r_per_stage),
            t.adaptive,
            **stats[i],
        )
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def demo_payload(rows: Sequence[DemoRow], **meta: Any) -> dict[str, Any]:
    """The ``--json`` document: ``{"results": [...], ...meta}``."""
    return {"results": [asdict(r) for r in rows], **meta}


def plot_demo(rows: Sequence[DemoRow], path: str | Path, title: str = "stprune demo") -> Path:
    """Save :func:`demo_figure` as a PNG at ``path`` and return the path."""
    from stprune.bench.report import save_figure

    return save_figure(demo_figure(rows, title), path)


def demo_figure(rows: Sequence[DemoRow], title: str = "stprune demo") -> Any:
    """Accuracy vs GFLOPs, one curve per method, RLT's threshold settings as open markers, the
    unpruned model as a star, top-1's 95% intervals as error bars when the rows have them
    (a matplotlib Figure, :func:`stprune.eval.sweep.sweep_figure`); the
    accuracy axis ends at 100%."""
    points = [
        CurvePoint(
            r.method,
            r.setting,
            r.gflops,
            r.top1,
            r.adaptive,
            None if r.top1_ci95 is None else (r.top1_ci95[0], r.top1_ci95[1]),
        )
        for r in rows
    ]
    return sweep_figure(points, title, xlabel="GFLOPs per clip")


def _change(row: DemoRow, base: DemoRow) -> str:
    """``row``'s top-1 change to ``base`` in points; with its statistics, the 95% interval and
    McNemar p, and "n.s." unless significant (a change that is not is never a win or a loss)."""
    if row.delta_top1_vs_unpruned is None or row.delta_ci95 is None:
        return f"{row.top1 - base.top1:+.1f}"
    return format_delta(row.delta_top1_vs_unpruned, row.delta_ci95, row.mcnemar_p, 1)


def print_demo(rows: Sequence[DemoRow], title: str, console: Any = None) -> None:
    """The demo table, then for each method its top-1 change (points) at the largest ratio <= 0.7
    and at its smallest ratio. With the rows' statistics: top-1's 95% interval, the difference to
    the unpruned model and to STA (paired bootstrap interval, McNemar p, "n.s." when not
    significant) as columns, what they mean under the table, and each change with its interval."""
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
    stats = any(r.top1_ci95 is not None for r in rows)
    if stats:
        columns += [("top-1 95% CI", "right")]
        columns += [(c, "left") for c in ("vs unpruned", "vs STA", "STA at")]
        for r, row_cells in zip(rows, cells, strict=True):
            ci = "-" if r.top1_ci95 is None else f"[{r.top1_ci95[0]:.2f}, {r.top1_ci95[1]:.2f}]"
            row_cells += [
                ci,
                format_delta(r.delta_top1_vs_unpruned, r.delta_ci95, r.mcnemar_p, 1),
                format_delta(r.delta_top1_vs_sta, r.delta_ci95_vs_sta, r.mcnemar_p_vs_sta, 1),
                r.sta_setting or "-",
            ]
    print_table(title, columns, cells, console, notes=statistics_notes("clip") if stats else ())
    base = next(r for r in rows if r.method == "none")
    for m in dict.fromkeys(r.method for r in rows if r.method != "none"):
        mine = [r for r in rows if r.method == m]
        at_07 = [r for r in mine if r.ratio <= 0.7 + 1e-9]
        picks = ([max(at_07, key=lambda r: r.ratio)] if at_07 else []) + [min(mine, key=lambda r: r.ratio)]
        said = ", ".join(
            f"at {p.ratio:.2f}x GFLOPs top-1 {p.top1:.1f}% ({_change(p, base)})"
            for p in (picks if picks[0] is not picks[-1] else picks[:1])
        )
        console.print(f"{m}: {said} vs unpruned {base.top1:.1f}%", highlight=False, soft_wrap=True)


#: ``stprune demo --task``: one task or both, and the default
TASK_CHOICES: tuple[str, ...] = ("easy", "hard", "both")
DEFAULT_TASK = "both"
#: validation clips per task by default (docs/demo.md: why these counts), and with ``--fast``
DEFAULT_CLIPS: dict[str, int] = {"easy": 500, "hard": 1000}
FAST_CLIPS = 48
#: what the banner says each task is
TASK_TITLES: dict[str, str] = {
    "easy": "easy task: which object moves which way",
    "hard": "hard task: which colour of small, brief spark darts which way",
}


def demo_tasks(task: str) -> tuple[str, ...]:
    """The tasks ``--task`` names: ``("easy",)``, ``("hard",)`` or both, easy first."""
    if task not in TASK_CHOICES:
        raise SettingError(f"task must be one of {', '.join(TASK_CHOICES)}; got {task!r}")
    return ("easy", "hard") if task == "both" else (task,)


def task_path(path: str | None, task: str, several: bool) -> str | None:
    """``path`` itself for one task; for several, ``<stem>_<task><suffix>`` beside it
    (``docs/demo.json`` -> ``docs/demo_hard.json``)."""
    if not path or not several:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{task}{p.suffix}"))


def main_demo(
    clips: int | None,
    targets: Sequence[float],
    methods: Sequence[str] | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    json_path: str | None = None,
    plot_path: str | None = None,
    progress: bool = True,
    thresholds: Sequence[float] | None = None,
    task: str = "easy",
) -> list[DemoRow]:
    """What ``stprune demo`` does: for each task ``task`` names (``easy``, ``hard`` or ``both``),
    run, print the table, write JSON / plot when asked (with both tasks, one file per task:
    :func:`task_path`). ``clips`` None: :data:`DEFAULT_CLIPS` of each task. Returns the rows of
    the last task."""
    import datetime
    import platform

    from rich.console import Console

    from stprune.bench.report import check_writable, write_json

    tasks = demo_tasks(task)
    several = len(tasks) > 1
    if threads is not None:
        if threads < 1:
            raise SettingError(f"threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
    for t in tasks:
        for path in (json_path, plot_path):  # fail now, not after the whole run
            if path:
                check_writable(task_path(path, t, several))
    settings = demo_settings(
        targets, methods, thresholds
    )  # bad targets / methods / thresholds: before the banner
    from stprune.demo.model import load_demo_model

    for t in tasks:  # and targets no method reaches on a task's model
        reachable_settings(load_demo_model(task=t), settings, targets)
    console = Console()
    rows: list[DemoRow] = []
    for t in tasks:
        n = clips if clips is not None else DEFAULT_CLIPS[t]
        console.print(
            f"[bold]stprune demo[/bold] ({TASK_TITLES[t]}): the bundled VideoMAE-style classifier "
            f"(12 classes, 16x96x96 clips), {n} validation clips, CPU, "
            f"{plural(torch.get_num_threads(), 'thread')}",
            soft_wrap=True,
        )
        t0 = time.perf_counter()
        skipped: list[str] = []
        rows = run_demo(
            n,
            targets,
            methods,
            batch_size,
            progress=progress,
            on_skip=skipped.append,
            thresholds=thresholds,
            task=t,
        )
        elapsed = time.perf_counter() - t0
        print_demo(rows, f"{t} task: accuracy vs GFLOPs ({n} clips, {elapsed:.0f} s)", console)
        for note in skipped:
            console.print(note, markup=False, highlight=False, soft_wrap=True)
        meta = {
            "task": t,
            "clips": n,
            "targets": list(targets),
            "thresholds": [s.threshold for s in demo_settings(targets, methods, thresholds) if s.adaptive],
            "date": str(datetime.date.today()),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
            "torch": torch.__version__,
            "seconds": round(elapsed, 1),
            "skipped": skipped,
        }
        out_json, out_plot = task_path(json_path, t, several), task_path(plot_path, t, several)
        if out_json:
            write_json(out_json, demo_payload(rows, **meta))
            console.print(f"wrote {out_json}")
        if out_plot:
            plot_demo(rows, out_plot, title=f"stprune demo, {t} task: {n} synthetic validation clips")
            console.print(f"wrote {out_plot}")
    return rows
