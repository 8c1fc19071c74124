"""Printing comparison rows as tables (rich) and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stprune.bench.compare import Row

__all__ = ["compact_tokens", "print_rows", "write_json"]


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


def print_rows(rows: Sequence[Row], title: str, console: Console | None = None, tokens: bool = True) -> None:
    """A table with one line per setting; speed columns when the rows were timed."""
    console = console or Console()
    timed = any(r.speed is not None for r in rows)
    extra_keys = [k for k in rows[0].extra] if rows else []
    table = Table(title=title, title_justify="left")
    for col in ["method", "setting", "r per stage", "GFLOPs", "ratio"]:
        table.add_column(col, justify="right" if col in ("GFLOPs", "ratio") else "left")
    for k in extra_keys:
        table.add_column(k, justify="right")
    if timed:
        for col in ["clips/s", "latency ms", "speedup", "1/ratio", "peak MiB"]:
            table.add_column(col, justify="right")
    if tokens:
        table.add_column("tokens per block")
    for r in rows:
        cells = [
            r.setting.method,
            r.setting.label,
            ",".join(map(str, r.r_per_stage)) or "-",
            f"{r.gflops:.2f}",
            f"{r.ratio:.3f}",
        ]
        cells += [_fmt(r.extra.get(k)) for k in extra_keys]
        if timed:
            s = r.speed
            cells += [
                f"{s.clips_per_s:.2f}",
                f"{s.latency_ms:.1f}",
                f"{r.speedup:.2f}x",
                f"{1 / r.ratio:.2f}x",
                "-" if s.peak_memory_mb is None else f"{s.peak_memory_mb:.0f}",
            ]
        if tokens:
            cells.append(compact_tokens(r.tokens_per_block))
        table.add_row(*cells)
    console.print(table)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return "-" if v is None else str(v)


def write_json(path: str | Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, creating parent folders."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2) + "\n")


def save_figure(fig: object, path: str | Path) -> Path:
    """Lay out a matplotlib figure, save it to ``path`` (folders created; format from the suffix),
    close it, and return the path."""
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
