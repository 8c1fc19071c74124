"""Printing comparison rows as tables and JSON, saving figures, checking output paths.

Tables are printed whole: on a terminal as a rich table whose cells wrap (``overflow="fold"``)
but are never cut; anywhere else (a pipe, a file, a captured stream) as a plain markdown table
with every value complete, ready to paste into a document.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stprune.bench.compare import Row
from stprune.errors import SettingError

__all__ = [
    "compact_tokens",
    "markdown_table",
    "print_table",
    "print_rows",
    "write_json",
    "save_figure",
    "check_writable",
    "check_writable_dir",
    "MEMORY_NOTE",
]

#: what the memory column of a timed table is
MEMORY_NOTE = (
    "fwd MiB: memory one forward holds at its peak beyond the weights and the input "
    "(CUDA: torch's allocator peak above what was allocated before; CPU: tensors the forward's "
    "operators return, tracked per operator, kernel scratch not included)"
)


def compact_tokens(tokens: Sequence[int]) -> str:
    """``[1568, 1056, 1056, 800]`` -> ``"1568, 1056x2, 800"``."""
    parts: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j + 1 < len(tokens) and tokens[j + 1] == tokens[i]:
            j += 1
        parts.append(f"{tokens[i]}" + (f"x{j - i + 1}" if j > i else ""))
        i = j + 1
    return ", ".join(parts)


def markdown_table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; ``columns`` are (header, ``"left"`` | ``"right"``) pairs."""

    def esc(v: str) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(name) for name, _ in columns) + " |"]
    lines.append("|" + "|".join("---:" if justify == "right" else "---" for _, justify in columns) + "|")
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in rows]
    return "\n".join(lines)


def print_table(
    title: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[str]],
    console: Console | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Print a table whole: rich (cells fold, never cut) on a terminal, markdown otherwise.

    Args:
        title: printed above the table.
        columns: (header, ``"left"`` | ``"right"``) per column.
        rows: the cells, strings, one sequence per row.
        console: where to print (default: a new stdout console).
        notes: lines printed under the table (e.g. what a column means).
    """
    console = console or Console()
    if console.is_terminal:
        table = Table(
            title=title, title_justify="left", caption="\n".join(notes) or None, caption_justify="left"
        )
        for name, justify in columns:
            table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
        for cells in rows:
            table.add_row(*cells)
        natural = console.measure(table, options=console.options.update_width(1 << 16)).maximum
        if natural <= console.width:
            console.print(table)
            return
        # too wide for this terminal: rich would break numbers over lines; print plain markdown
        # rows instead, which the terminal wraps whole (no value is ever cut)
    text = "\n".join([title, "", markdown_table(columns, rows), *([""] + list(notes) if notes else [])])
    # soft_wrap: rich must not wrap or cut the lines to a console width
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_rows(rows: Sequence[Row], title: str, console: Console | None = None, tokens: bool = True) -> None:
    """A table with one line per setting; speed columns when the rows were timed."""
    timed = any(r.speed is not None for r in rows)
    extra_keys = [k for k in rows[0].extra] if rows else []
    columns = [("method", "left"), ("setting", "left"), ("r per stage", "left")]
    columns += [("GFLOPs", "right"), ("ratio", "right")]
    columns += [(k, "right") for k in extra_keys]
    # ONNX Runtime's rows have no memory figure: no column rather than a column of "-"
    memory = any(r.speed is not None and r.speed.forward_memory_mb is not None for r in rows)
    if timed:
        columns += [(c, "right") for c in ["clips/s", "latency ms", "speedup", "1/ratio"]]
        columns += [("fwd MiB", "right")] if memory else []
    if tokens:
        columns.append(("tokens per block", "left"))
    table_rows = []
    for r in rows:
        cells = [
            r.setting.method,
            r.setting.label,
            ",".join(map(str, r.r_per_stage)) or "-",
            gflops_text(r.gflops),
            f"{r.ratio:.3f}",
        ]
        cells += [_fmt(r.extra.get(k)) for k in extra_keys]
        if timed:
            s = r.speed
            mem = None if s is None else s.forward_memory_mb
            cells += [
                "-" if s is None else f"{s.clips_per_s:.2f}",
                "-" if s is None else f"{s.latency_ms:.1f}",
                "-" if r.speedup is None else f"{r.speedup:.2f}x",
                f"{1 / r.ratio:.2f}x",
            ]
            cells += (["-" if mem is None else f"{mem:.1f}"]) if memory else []
        if tokens:
            cells.append(compact_tokens(r.tokens_per_block))
        table_rows.append(cells)
    notes = [MEMORY_NOTE if memory else "forward memory: not measured in this runtime"] if timed else []
    print_table(title, columns, table_rows, console, notes=notes)


def gflops_text(v: float) -> str:
    """GFLOPs for a table: two decimals from 10 up (``180.34``), else four significant digits
    (``1.040``, ``0.7074``), so settings of a small model stay told apart."""
    return f"{v:.2f}" if v >= 10 else f"{v:#.4g}"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "-" if v is None else str(v)


def _nearest_existing(path: Path) -> Path:
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _can_create_in(folder: Path) -> str | None:
    """None if a file can be created in ``folder`` (tried with a temporary file), else why not."""
    import tempfile

    if not folder.is_dir():
        return f"{str(folder)!r} is not a folder"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".stprune-write-check-"):
            pass
    except OSError as err:
        return f"cannot create files in {str(folder)!r} ({err.strerror or err})"
    return None


def check_writable(path: str | os.PathLike, what: str = "output file") -> Path:
    """Raise SettingError unless a file can be written at ``path`` (folders may still be missing).

    Run before long work so that it does not fail at the end: ``path`` must not be a folder, an
    existing file must open for writing, and a file must be creatable in the nearest existing
    parent folder (missing folders are created when writing). Returns ``path`` as a Path.
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.is_dir():
        raise SettingError(f"{what} {str(path)!r} is a folder; give a file path")
    if p.exists():
        try:
            with open(p, "a"):
                pass
        except OSError as err:
            raise SettingError(f"{what} {str(path)!r} is not writable ({err.strerror or err})") from None
        return p
    why = _can_create_in(_nearest_existing(p.absolute().parent))
    if why:
        raise SettingError(f"{what} {str(path)!r}: {why}")
    return p


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Raise SettingError unless ``path`` is a folder files can be written in, or can be created."""
    p = Path(os.path.expanduser(os.fspath(path)))
    if p.exists() and not p.is_dir():
        raise SettingError(f"{what} {str(path)!r} is a file, not a folder")
    why = _can_create_in(p if p.exists() else _nearest_existing(p.absolute()))
    if why:
        raise SettingError(f"{what} {str(path)!r}: {why}")
    return p


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, creating parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2) + "\n")


def save_figure(fig: object, path: str | Path, layout: bool = True) -> Path:
    """Save a matplotlib figure to ``path`` (folders created; format from the suffix) with a tight
    bounding box (titles and legends included), close it, and return the path.

    ``layout``: run ``tight_layout`` first (False when the caller laid the figure out itself).
    """
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if layout:
        fig.tight_layout()
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out
