"""Tables are printed whole (markdown when not on a terminal, rich without cut cells on one), the
memory column says what it measures, and output paths are checked before a run."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from rich.console import Console

from stprune.bench.compare import Row, Setting
from stprune.bench.report import check_writable, check_writable_dir, print_rows
from stprune.bench.speed import SpeedResult
from stprune.demo.benchmark import DemoRow, print_demo
from stprune.errors import SettingError

LONG_R = [75] * 11  # ToMe's r on every block of a 12-block ViT


def rows(timed: bool = False) -> list[Row]:
    def speed(ms: float, mem: float) -> SpeedResult:
        return SpeedResult(1, 5, ms, ms, ms, 0.0, 1e3 / ms, None, "cpu", forward_memory_mb=mem)

    out = [
        Row(Setting(), 180.3412, 1.0, [1568] * 12),
        Row(Setting("tome", flops_target=0.7), 125.85, 0.698, [1568, 1493, 1418, 1343], LONG_R),
        Row(
            Setting("sta", flops_target=0.7, options=(("shifted_windows", "static"),)),
            30.3,
            0.69,
            [25088, 13312, 6272, 3328],
            [23, 23, 23, 23, 23, 23],
        ),
    ]
    if timed:
        for row, (ms, mem) in zip(out, [(2279.0, 812.5), (1468.0, 640.25), (1467.0, 301.0)], strict=True):
            row.speed = speed(ms, mem)
            row.speedup = 2279.0 / ms
    return out


def cells(r: Row) -> list[str]:
    return [
        r.setting.method,
        r.setting.label,
        ",".join(map(str, r.r_per_stage)) or "-",
        f"{r.gflops:.2f}",
        f"{r.ratio:.3f}",
    ]


@pytest.mark.parametrize("timed", [False, True])
def test_piped_tables_are_complete_markdown(capsys, timed):
    title = "videomae-b - VideoMAEForVideoClassification: depth 12, 8 temporal slots x 196 tokens - GFLOPs"
    print_rows(rows(timed), title)
    out = capsys.readouterr().out
    assert title in out  # the title is not wrapped either
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, separator, one line per row
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[:5] == ["method", "setting", "r per stage", "GFLOPs", "ratio"]
    assert header[-1] == "tokens per block"
    for line, row in zip(table[2:], rows(timed), strict=True):
        got = [c.strip() for c in line.strip("|").split("|")]
        assert got[:5] == cells(row)  # every value complete, none cut
        assert len(got) == len(header)
    assert "…" not in out
    assert "75,75,75,75,75,75,75,75,75,75,75" in out
    assert "flops_target=0.7 shifted_windows=static" in out


def test_timed_tables_say_what_the_memory_column_is(capsys):
    print_rows(rows(timed=True), "bench")
    out = capsys.readouterr().out
    header = [c.strip() for c in out.splitlines()[2].strip("|").split("|")]
    assert "fwd MiB" in header and "peak MiB" not in header
    assert "| 812.5 |" in out and "| 640.2 |" in out
    assert "fwd MiB: memory one forward holds at its peak beyond the weights and the input" in out


@pytest.mark.parametrize("width", [60, 100])
def test_terminal_tables_never_cut_a_value(width):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, color_system=None)
    print_rows(rows(timed=True), "bench on a narrow terminal", console=console)
    text = buf.getvalue()
    assert "…" not in text
    # folded cells keep every character of every value (counted, since a value may wrap)
    printed = Counter(text)
    for row in rows(timed=True):
        for char, n in Counter("".join(cells(row)).replace(" ", "")).items():
            assert printed[char] >= n, (char, row.setting.label)
    assert printed["7"] >= sum(str(v).count("7") for v in LONG_R)
    wide = io.StringIO()
    print_rows(rows(), "wide", console=Console(file=wide, force_terminal=True, width=400, color_system=None))
    for row in rows():
        for cell in cells(row):
            assert cell in wide.getvalue()


def test_demo_table_is_complete(capsys):
    demo_rows = [
        DemoRow("none", "unpruned", 1.04, 1.0, 99.8, 51.1, []),
        DemoRow("tome", "flops_target=0.7", 0.722, 0.694, 99.8, 61.8, [35, 35, 35, 35, 35]),
    ]
    print_demo(demo_rows, "accuracy vs GFLOPs (16 clips, 3 s)")
    out = capsys.readouterr().out
    assert "| tome | flops_target=0.7 | 35,35,35,35,35 | 0.722 | 0.694 | 99.8 | 61.8 |" in out
    assert "..." not in out and "…" not in out


def test_check_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        check_writable(tmp_path / "new" / "deeper" / "out.json") == tmp_path / "new" / "deeper" / "out.json"
    )
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert check_writable(blocker) == blocker  # an existing file is overwritten
    with pytest.raises(SettingError, match="is a folder"):
        check_writable(tmp_path)
    with pytest.raises(SettingError, match="not a folder"):
        check_writable(blocker / "out.json")
    assert check_writable_dir(tmp_path / "videos") == tmp_path / "videos"
    with pytest.raises(SettingError, match="is a file"):
        check_writable_dir(blocker)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.parametrize("width", [60, 200])
def test_terminal_tables_never_break_a_value(width):
    """On a terminal narrower than the table, the rows come as markdown lines (each value whole);
    on a wide one as a rich table whose cells each sit on one line."""
    from stprune.bench.report import print_table

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=width, color_system=None)
    values = ["flops_target=0.7", "16,16,16,16,16,16", "25088, 15360, 6272, 3840, 1568"]
    print_table("t", [("setting", "left"), ("r", "left"), ("tokens", "left")], [values], console)
    out = buf.getvalue()
    for value in values:
        assert value in out, out


def test_gflops_keep_four_significant_digits_below_ten():
    from stprune.bench.report import gflops_text

    assert [gflops_text(v) for v in (180.344, 96.449, 10.0, 1.04045, 0.70739, 0.5003)] == [
        "180.34", "96.45", "10.00", "1.040", "0.7074", "0.5003"
    ]  # fmt: skip
