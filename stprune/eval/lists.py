"""Video list files: which videos to evaluate and their labels.

Two formats are read, and the format is decided by the first non-blank line, never by the file
extension (the VideoMAE / STA lists are called ``train.csv`` / ``val.csv`` / ``test.csv`` but are
space separated without a header):

* **CSV with a header**: the first non-blank line holds comma-separated column names, among them
  ``label`` and exactly one of ``path`` or ``video`` (matched case-insensitively, surrounding spaces
  ignored; other columns are allowed and ignored). Standard CSV quoting applies, so paths may
  contain commas when quoted.
* **Space separated, no header** (the VideoMAE / STA format used for Kinetics-400 and
  Something-Something V2): one video per line, ``<path> <label>``. The label is the *last*
  whitespace-separated field and must be an integer; everything before it is the path, so paths
  may contain spaces (Kinetics class folders such as ``playing guitar/abc.mp4``).

Blank lines are skipped. Labels are non-negative integers. A path may appear only once per list:
results are merged by path, so a duplicate is an error, not a silent overwrite.

Relative paths are resolved against ``root`` when given, otherwise against the folder that holds
the list file. Absolute paths are used as they are.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from stprune.errors import InputError, MissingFileError

__all__ = ["VideoEntry", "read_video_list", "PATH_COLUMNS", "LABEL_COLUMN"]

PATH_COLUMNS: tuple[str, ...] = ("path", "video")
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class VideoEntry:
    """One video of a list.

    ``path`` is the path exactly as written in the list (the key of every result row);
    ``file`` is where it is read from; ``label`` the ground-truth class index; ``line`` the
    1-based line number in the list file (for error messages).
    """

    path: str
    label: int
    file: Path
    line: int


def _parse_label(text: str, list_file: Path, line_no: int) -> int:
    try:
        label = int(text.strip())
    except ValueError:
        raise InputError(
            f"{list_file}:{line_no}: label {text.strip()!r} is not an integer; lists hold "
            "'<path> <integer label>' per line, or CSV with a header naming columns "
            f"{' or '.join(PATH_COLUMNS)} and {LABEL_COLUMN}"
        ) from None
    if label < 0:
        raise InputError(f"{list_file}:{line_no}: label {label} is negative; labels must be >= 0")
    return label


def _csv_header(first_line: str) -> tuple[int, int] | None:
    """(path column, label column) when ``first_line`` is a recognised CSV header, else None."""
    if "," not in first_line:
        return None
    names = [name.strip().lower() for name in next(csv.reader([first_line]))]
    if LABEL_COLUMN not in names:
        return None
    path_cols = [name for name in PATH_COLUMNS if name in names]
    if not path_cols:
        return None
    if len(path_cols) > 1:
        raise InputError(
            f"CSV header {first_line.strip()!r} has both 'path' and 'video' columns; keep exactly one"
        )
    return names.index(path_cols[0]), names.index(LABEL_COLUMN)


def _resolve(path: str, base: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else base / p


def read_video_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[VideoEntry]:
    """Read a video list (CSV with header, or space-separated ``path label``) in file order.

    Raises InputError (a ValueError) naming the file and line for a malformed line, a non-integer
    or negative label, a duplicate path, or an empty list; MissingFileError (a FileNotFoundError)
    when the list itself or ``root`` is missing.
    Missing *videos* are not checked here: they become error rows during evaluation.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise MissingFileError(f"video list {str(list_file)!r} does not exist or is not a file")
    base = Path(root) if root is not None else list_file.resolve().parent
    if root is not None and not base.is_dir():
        raise MissingFileError(f"--root {str(root)!r} is not a directory")
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"video list {str(list_file)!r} is not UTF-8 text ({e})") from None
    lines = text.splitlines()

    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError(f"video list {str(list_file)!r} is empty")

    entries: list[VideoEntry] = []
    header = _csv_header(lines[first])
    if header is not None:
        path_col, label_col = header
        ncols = max(path_col, label_col) + 1
        body = "\n".join(lines[first + 1 :])
        # csv.reader keeps quoted fields with newlines together; track line numbers ourselves.
        reader = csv.reader(io.StringIO(body))
        for row in reader:
            line_no = first + 1 + reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < ncols:
                raise InputError(
                    f"{list_file}:{line_no}: expected at least {ncols} comma-separated fields, got {len(row)}"
                )
            path = row[path_col].strip()
            if not path:
                raise InputError(f"{list_file}:{line_no}: empty path")
            label = _parse_label(row[label_col], list_file, line_no)
            entries.append(VideoEntry(path, label, _resolve(path, base), line_no))
    else:
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            line_no = i + 1
            parts = line.strip().rsplit(maxsplit=1)
            if len(parts) != 2:
                raise InputError(
                    f"{list_file}:{line_no}: expected '<path> <label>', got {line.strip()!r}; CSV lists "
                    f"need a header line naming columns {' or '.join(PATH_COLUMNS)} and {LABEL_COLUMN}"
                )
            path, label_text = parts[0].strip(), parts[1]
            label = _parse_label(label_text, list_file, line_no)
            entries.append(VideoEntry(path, label, _resolve(path, base), line_no))

    if not entries:
        raise InputError(f"video list {str(list_file)!r} has a header but no videos")
    seen: dict[str, int] = {}
    for e in entries:
        if e.path in seen:
            raise InputError(
                f"{list_file}:{e.line}: path {e.path!r} already listed on line {seen[e.path]}; "
                "each video may appear once (results are keyed by path)"
            )
        seen[e.path] = e.line
    return entries
