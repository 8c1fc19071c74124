"""Result files of an evaluation: per-rank prediction rows, recorded settings, summary.

Layout of ``--out DIR``::

    run.json                    settings this directory was started with (checked on resume)
    predictions.rank{R}.jsonl   one JSON object per finished video, appended by rank R
    predictions.jsonl           all rows merged in list order (written at the end by rank 0)
    summary.json                accuracy, counts, settings (written at the end by rank 0)

A sweep (several settings, ``stprune eval --flops-target 0.9 0.7 ...``) writes that layout once
per setting, in a folder per setting, plus two files::

    run.json                    the settings every setting shares, with "layout": "sweep"
    none/, sta_flops_target=0.7/, ...   one folder per setting, each laid out as above
    sweep.json                  a row per setting: method, setting, GFLOPs, top-1, top-5, counts,
                                top-1's 95% interval, paired differences (stprune.eval.stats)
    sweep.png                   top-1 vs GFLOPs per view

Each row is ``{"video": path as listed, "label": int, "pred": int | null, "top5": [int, ...] |
null, "frames": int | null, "error": null | "message"}`` (``frames``: the video's frame count;
rows written before it existed lack it; a threshold setting, whose cost differs per clip, adds
``"gflops"``: the video's mean GFLOPs per view), written with one ``write`` of the whole line, then
flushed and fsync'ed, before the next video starts. A process killed in the middle of a write leaves at
most one incomplete last line without its newline; :func:`repair_jsonl` cuts it off and that
video is evaluated again. Rows are keyed by ``video``: a video already present is never
evaluated or written again, so no row is ever written twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from stprune.errors import InputError, SettingError
from stprune.eval.stats import wilson_interval

__all__ = [
    "RUN_FILE",
    "SUMMARY_FILE",
    "MERGED_FILE",
    "SWEEP_FILE",
    "SWEEP_PLOT",
    "SWEEP_LAYOUT",
    "rank_file",
    "rank_files",
    "PredictionWriter",
    "repair_jsonl",
    "read_jsonl",
    "read_rows",
    "check_or_record_settings",
    "check_or_record_sweep",
    "clear_results",
    "summarize",
    "write_json_atomic",
    "write_merged",
    "write_sweep",
    "RankLock",
]

RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
MERGED_FILE = "predictions.jsonl"
SWEEP_FILE = "sweep.json"
SWEEP_PLOT = "sweep.png"
#: ``run.json``'s ``"layout"`` of a sweep's top folder (a single-setting run.json has no layout)
SWEEP_LAYOUT = "sweep"
_RANK_RE = re.compile(r"^predictions\.rank(\d+)\.jsonl$")


def rank_file(out_dir: str | os.PathLike, rank: int) -> Path:
    """The predictions file of ``rank``."""
    return Path(out_dir) / f"predictions.rank{rank}.jsonl"


def rank_files(out_dir: str | os.PathLike) -> dict[int, Path]:
    """All per-rank prediction files present in ``out_dir``, by rank."""
    found = {}
    d = Path(out_dir)
    if d.is_dir():
        for p in d.iterdir():
            m = _RANK_RE.match(p.name)
            if m and p.is_file():
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def repair_jsonl(path: str | os.PathLike) -> int:
    """Cut an incomplete last line (no trailing newline) off ``path``; returns bytes removed.

    Only the tail after the last newline can be torn (rows are appended whole); the file is
    truncated to end right after the last complete line, and that is fsync'ed.
    """
    p = Path(path)
    if not p.exists():
        return 0
    size = p.stat().st_size
    if size == 0:
        return 0
    with open(p, "rb+") as f:
        # Scan backwards in chunks for the last newline.
        end = size
        chunk = 1 << 16
        keep = 0
        pos = size
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            i = data.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        if keep == end:
            return 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return end - keep


def read_jsonl(path: str | os.PathLike, ignore_torn_tail: bool = True) -> list[dict[str, Any]]:
    """Rows of a predictions file. A torn last line (no newline) is ignored when
    ``ignore_torn_tail``; any other line that is not a JSON object with a ``video`` key is an error.
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" for a clean file
    if tail and not ignore_torn_tail:
        lines.append(tail)
    rows = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(
                f"{p}:{n}: not a JSON line ({e}); this file is corrupt beyond a torn last line. "
                "Delete it or start again with --overwrite"
            ) from None
        if not isinstance(row, dict) or "video" not in row:
            raise InputError(f"{p}:{n}: not a prediction row (no 'video' key)")
        rows.append(row)
    return rows


def read_rows(paths: Iterable[str | os.PathLike]) -> dict[str, dict[str, Any]]:
    """Rows of several prediction files, keyed by video; the first row of a video wins."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        for row in read_jsonl(path):
            merged.setdefault(row["video"], row)
    return merged


class PredictionWriter:
    """Appends rows to a predictions file, each made durable (flush + fsync) before returning."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()/__exit__

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (a JSON object with at least ``video``) as a single line."""
        line = (json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RankLock:
    """An exclusive lock on ``DIR/.lock.rank{R}`` held for a whole run, so a second run started on
    the same ``--out`` by mistake (e.g. a requeued job while the old one still runs) fails at once
    instead of writing the same videos twice.

    A POSIX record lock (``fcntl.lockf``), not ``flock``: record locks belong to the process, are
    not inherited by ``fork`` and are released by the kernel when the process dies, even by
    ``kill -9``. (An ``flock`` is shared with the DataLoader workers forked after it was taken,
    which outlive a killed parent for a few seconds and would keep the lock.) Because closing any
    descriptor of the file drops a process's record locks, the same process never opens it twice:
    a second acquire in the same process is refused from a registry of held paths. On file systems
    without lock support the lock is skipped with a warning.
    """

    _held: ClassVar[set[str]] = set()  # lock files this process holds

    def __init__(self, out_dir: str | os.PathLike, rank: int) -> None:
        self.path = Path(out_dir) / f".lock.rank{rank}"
        self._f = None
        self._key: str | None = None
        self.rank = rank

    def _busy(self) -> SettingError:
        return SettingError(
            f"another stprune eval is writing to {self.path.parent} as rank {self.rank}; "
            "wait for it to finish (or stop it) before resuming there"
        )

    def acquire(self) -> RankLock:
        import errno
        import warnings

        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in RankLock._held:
            raise self._busy()
        f = open(self.path, "a+b")  # noqa: SIM115 - kept open while the lock is held
        try:
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise self._busy() from None
            warnings.warn(
                f"cannot lock {self.path} ({e}); not guarding against concurrent runs", stacklevel=2
            )
            return self
        self._f = f
        self._key = key
        RankLock._held.add(key)
        return self

    def release(self) -> None:
        if self._f is not None:
            self._f.close()  # closing the file releases the record lock
            self._f = None
            RankLock._held.discard(self._key or "")
            self._key = None

    def __enter__(self) -> RankLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file + rename, so readers never see half a file."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def _read_run_file(d: Path) -> dict[str, Any] | None:
    """``d/run.json`` as a dict, None when absent; InputError when it is not a JSON object."""
    run_path = d / RUN_FILE
    if not run_path.exists():
        return None
    try:
        recorded = json.loads(run_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{run_path} is not valid JSON ({e}); use --overwrite to start again") from None
    if not isinstance(recorded, dict):
        raise InputError(f"{run_path} is not a JSON object; use --overwrite to start again")
    return recorded


def _setting_dirs(d: Path) -> list[Path]:
    """The folders of a sweep's settings: sub-folders of ``d`` holding a ``run.json``."""
    return sorted(p for p in d.iterdir() if p.is_dir() and (p / RUN_FILE).is_file()) if d.is_dir() else []


def clear_results(out_dir: str | os.PathLike) -> None:
    """Remove this tool's result files (and only them) from ``out_dir``; for a sweep's folder also
    ``sweep.json``, ``sweep.png`` and the result files of every setting's folder (then the folder
    itself if nothing else is left in it)."""
    d = Path(out_dir)
    try:
        recorded = _read_run_file(d)
    except InputError:
        recorded = None
    if recorded is not None and recorded.get("layout") == SWEEP_LAYOUT:
        for sub in _setting_dirs(d):
            clear_results(sub)
            with contextlib.suppress(OSError):  # not empty: something that is not ours stays
                sub.rmdir()
    for p in rank_files(d).values():
        p.unlink()
    for name in (RUN_FILE, SUMMARY_FILE, MERGED_FILE, SWEEP_FILE, SWEEP_PLOT):
        (d / name).unlink(missing_ok=True)


def _what(recorded: Mapping[str, Any]) -> str:
    if recorded.get("layout") == SWEEP_LAYOUT:
        return "a sweep (a folder per setting)"
    setting = ", ".join(
        f"{k} {recorded[k]}"
        for k in ("method", "r", "flops_target", "threshold")
        if recorded.get(k) is not None
    )
    return f"a single-setting evaluation ({setting or 'unpruned'})"


def _check_recorded(d: Path, settings: Mapping[str, Any]) -> bool:
    """Whether ``d`` already records ``settings`` (False: nothing recorded yet). Raises SettingError
    (one line, naming every difference) when it records others, or holds prediction files that no
    ``run.json`` explains."""
    recorded = _read_run_file(d)
    if recorded is None:
        if rank_files(d) or (d / MERGED_FILE).exists():
            raise SettingError(
                f"{d} has prediction files but no {RUN_FILE} saying how they were made; "
                "use another --out, or --overwrite to discard them"
            )
        return False
    if recorded.get("layout") != settings.get("layout"):
        raise SettingError(
            f"{d} holds {_what(recorded)}, this run is {_what(settings)}; use another --out, "
            "or --overwrite to discard those results"
        )
    diffs = [
        f"{key}: recorded {recorded.get(key)!r}, now {settings.get(key)!r}"
        for key in sorted(set(recorded) | set(settings))
        if recorded.get(key) != settings.get(key)
    ]
    if diffs:
        raise SettingError(
            f"{d} holds results of a different evaluation, refusing to mix them ({'; '.join(diffs)}); "
            "use another --out, or --overwrite to discard those results"
        )
    return True


def _normalised(settings: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(settings)))  # tuples -> lists, as they read back


def check_or_record_settings(out_dir: str | os.PathLike, settings: Mapping[str, Any], overwrite: bool) -> str:
    """Start or resume ``out_dir`` with ``settings``; returns ``"new"``, ``"resume"`` or ``"overwrite"``.

    A directory recorded with other settings is refused with a SettingError (a ValueError) naming
    every difference on one line, unless ``overwrite`` (then its result files are deleted first).
    Prediction files without a ``run.json`` are refused too: nothing says what produced them.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    settings = _normalised(settings)
    if overwrite:
        existed = (d / RUN_FILE).exists() or bool(rank_files(d))
        clear_results(d)
        write_json_atomic(d / RUN_FILE, settings)
        return "overwrite" if existed else "new"
    if _check_recorded(d, settings):
        return "resume"
    write_json_atomic(d / RUN_FILE, settings)
    return "new"


def check_or_record_sweep(
    out_dir: str | os.PathLike,
    common: Mapping[str, Any],
    per_setting: Mapping[str, Mapping[str, Any]],
    overwrite: bool,
) -> tuple[str, dict[str, str]]:
    """Start or resume the sweep folder ``out_dir``: its ``run.json`` records ``common`` (the
    settings all share) with ``"layout": "sweep"``; folder ``out_dir/NAME`` records
    ``per_setting[NAME]`` (a complete single-setting ``run.json``).

    A sweep is resumed when ``common`` is unchanged; its settings may differ from the last run's:
    a new setting gets a new folder (and runs on every video), a folder of a setting not asked for
    again is left as it is. Everything is checked before anything is written. Returns the top
    folder's state and each setting folder's (``"new"``, ``"resume"`` or ``"overwrite"``). Raises
    SettingError for other common settings, a single-setting folder, or a setting folder that
    records something else (unless ``overwrite``, which discards every result first).
    """
    d = Path(out_dir)
    top = _normalised({**common, "layout": SWEEP_LAYOUT})
    subs = {name: _normalised(s) for name, s in per_setting.items()}
    if overwrite:
        state = check_or_record_settings(d, top, overwrite=True)
        return state, {name: check_or_record_settings(d / name, s, False) for name, s in subs.items()}
    d.mkdir(parents=True, exist_ok=True)
    state = "resume" if _check_recorded(d, top) else "new"
    known = {name: _check_recorded(d / name, s) for name, s in subs.items()}
    if state == "new":
        write_json_atomic(d / RUN_FILE, top)
    states = {}
    for name, s in subs.items():
        if not known[name]:
            (d / name).mkdir(parents=True, exist_ok=True)
            write_json_atomic(d / name / RUN_FILE, s)
        states[name] = "resume" if known[name] else "new"
    return state, states


def write_sweep(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]]) -> Path:
    """The sweep's rows (a JSON list) into ``sweep.json`` (atomically); returns its path."""
    p = Path(out_dir) / SWEEP_FILE
    write_json_atomic(p, list(rows))
    return p


def _percent(num: int, den: int) -> float | None:
    return None if den == 0 else 100.0 * num / den


def summarize(
    rows: Mapping[str, Mapping[str, Any]], videos: Sequence[str], window: int | None = None
) -> dict[str, Any]:
    """Accuracy and counts over ``videos`` (the evaluated list, in order) from rows keyed by video.

    ``top1`` / ``top5`` are percentages over the videos that were evaluated without error,
    ``top1_ci95`` top-1's 95% Wilson interval ``[lo, hi]`` in percent (None when nothing was
    evaluated);
    ``top1_errors_as_wrong`` / ``top5_errors_as_wrong`` count failed videos as wrong. ``missing``
    lists videos with no row (an interrupted run); it is empty after a complete run. With
    ``window`` (the frames a clip spans, :func:`stprune.eval.sampling.sampling_window`),
    ``num_short`` counts evaluated videos with fewer frames (their clips repeat frames).
    """
    ok = top1 = top5 = failed = short = 0
    missing = []
    for v in videos:
        row = rows.get(v)
        if row is None:
            missing.append(v)
            continue
        if row.get("error"):
            failed += 1
            continue
        ok += 1
        top1 += int(row["pred"] == row["label"])
        top5 += int(row["label"] in row["top5"])
        frames = row.get("frames")
        short += int(window is not None and frames is not None and frames < window)
    done = ok + failed
    result = {
        "top1": _percent(top1, ok),
        "top1_ci95": [100.0 * x for x in wilson_interval(top1, ok)] if ok else None,
        "top5": _percent(top5, ok),
        "top1_errors_as_wrong": _percent(top1, done),
        "top5_errors_as_wrong": _percent(top5, done),
        "num_videos": len(videos),
        "num_evaluated": ok,
        "num_failed": failed,
        "num_missing": len(missing),
        "missing": missing,
    }
    if window is not None:
        result.update({"sampling_window": window, "num_short": short})
    return result


def write_merged(
    out_dir: str | os.PathLike, rows: Mapping[str, Mapping[str, Any]], videos: Sequence[str]
) -> Path:
    """All rows in list order into ``predictions.jsonl`` (atomically); returns its path."""
    p = Path(out_dir) / MERGED_FILE
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for v in videos:
            if v in rows:
                f.write(json.dumps(rows[v], ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return p
