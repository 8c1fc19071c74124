"""Video list parsing: both formats, path resolution, clear errors."""

from pathlib import Path

import pytest

from stprune.eval.lists import read_video_list


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_space_format_relative_to_list_folder(tmp_path):
    lst = _write(tmp_path / "lists" / "val.csv", "a/x.mp4 3\n\nb/y.mp4 0\n")
    entries = read_video_list(lst)
    assert [(e.path, e.label, e.line) for e in entries] == [("a/x.mp4", 3, 1), ("b/y.mp4", 0, 3)]
    assert entries[0].file == (tmp_path / "lists").resolve() / "a/x.mp4"


def test_space_format_path_with_spaces_and_root(tmp_path):
    lst = _write(tmp_path / "val.txt", "playing guitar/abc 1.mp4 17\n")
    root = tmp_path / "videos"
    root.mkdir()
    (e,) = read_video_list(lst, root=root)
    assert e.path == "playing guitar/abc 1.mp4" and e.label == 17
    assert e.file == root / "playing guitar/abc 1.mp4"


def test_absolute_paths_are_kept(tmp_path):
    target = tmp_path / "elsewhere" / "v.mp4"
    lst = _write(tmp_path / "l.txt", f"{target} 2\n")
    root = tmp_path / "root"
    root.mkdir()
    (e,) = read_video_list(lst, root=root)
    assert e.file == target and e.path == str(target)


@pytest.mark.parametrize("col", ["path", "video", " Video "])
def test_csv_with_header(tmp_path, col):
    lst = _write(tmp_path / "l.csv", f'id,{col},label\n7,a.mp4,1\n8,"b,c.mp4",4\n\n')
    entries = read_video_list(lst)
    assert [(e.path, e.label) for e in entries] == [("a.mp4", 1), ("b,c.mp4", 4)]
    assert [e.line for e in entries] == [2, 3]


def test_csv_label_first_column_order(tmp_path):
    lst = _write(tmp_path / "l.csv", "label,path\n5,x.mp4\n")
    (e,) = read_video_list(lst)
    assert (e.path, e.label) == ("x.mp4", 5)


def test_csv_with_both_path_and_video_is_ambiguous(tmp_path):
    lst = _write(tmp_path / "l.csv", "path,video,label\na,b,1\n")
    with pytest.raises(ValueError, match="both 'path' and 'video'"):
        read_video_list(lst)


def test_headerless_csv_gets_a_clear_error(tmp_path):
    lst = _write(tmp_path / "l.csv", "a.mp4,3\n")
    with pytest.raises(ValueError, match=r"l\.csv:1: expected '<path> <label>'"):
        read_video_list(lst)


@pytest.mark.parametrize(
    "text, match",
    [
        ("a.mp4 cat\n", r":1: label 'cat' is not an integer"),
        ("a.mp4 1\nb.mp4 -2\n", r":2: label -2 is negative"),
        ("a.mp4 1\na.mp4 2\n", r":2: path 'a.mp4' already listed on line 1"),
        ("\n\n", "is empty"),
        ("path,label\n", "has a header but no videos"),
    ],
)
def test_bad_lists(tmp_path, text, match):
    lst = _write(tmp_path / "l.txt", text)
    with pytest.raises(ValueError, match=match):
        read_video_list(lst)


def test_missing_list_and_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_video_list(tmp_path / "nope.txt")
    lst = _write(tmp_path / "l.txt", "a 1\n")
    with pytest.raises(FileNotFoundError, match="--root"):
        read_video_list(lst, root=tmp_path / "no_such_dir")
