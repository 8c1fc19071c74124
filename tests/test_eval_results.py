"""Prediction files: durable appends, torn-tail repair, corruption errors, summary arithmetic."""

import json

import pytest

from stprune.eval import results as res


def _row(i, err=None):
    return {"video": f"v{i}.mp4", "label": i % 3, "pred": 0, "top5": [0, 1, 2], "error": err}


def test_writer_appends_whole_lines(tmp_path):
    path = res.rank_file(tmp_path, 3)
    with res.PredictionWriter(path) as w:
        w.write(_row(0))
        w.write(_row(1, "boom"))
    with res.PredictionWriter(path) as w:  # reopening appends
        w.write(_row(2))
    assert [json.loads(x) for x in path.read_text().splitlines()] == [_row(0), _row(1, "boom"), _row(2)]
    assert res.rank_files(tmp_path) == {3: path}


@pytest.mark.parametrize("tail", [b'{"video": "v9.mp4", "lab', b"{}", b"\xff\xfe"])
def test_repair_cuts_only_the_torn_tail(tmp_path, tail):
    path = tmp_path / "p.jsonl"
    body = b"".join(json.dumps(_row(i)).encode() + b"\n" for i in range(2000))  # > one 64 KiB chunk
    path.write_bytes(body + tail)
    assert [r["video"] for r in res.read_jsonl(path)][-1] == "v1999.mp4"  # reading ignores the tail
    assert res.repair_jsonl(path) == len(tail)
    assert path.read_bytes() == body
    assert res.repair_jsonl(path) == 0


def test_repair_of_a_single_torn_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"video": "a"')
    assert res.repair_jsonl(path) == 13 and path.read_bytes() == b""


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"video": "a"}\nnot json\n{"video": "b"}\n')
    with pytest.raises(ValueError, match=r"p\.jsonl:2: not a JSON line"):
        res.read_jsonl(path)
    path.write_bytes(b'{"no_video": 1}\n')
    with pytest.raises(ValueError, match="no 'video' key"):
        res.read_jsonl(path)


def test_read_rows_first_row_wins(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(_row(1)) + "\n")
    b.write_text(json.dumps(_row(1, "later")) + "\n" + json.dumps(_row(2)) + "\n")
    rows = res.read_rows([a, b])
    assert rows["v1.mp4"]["error"] is None and set(rows) == {"v1.mp4", "v2.mp4"}


def test_summarize():
    rows = {
        "a": {"video": "a", "label": 1, "pred": 1, "top5": [1, 0], "error": None},
        "b": {"video": "b", "label": 2, "pred": 0, "top5": [0, 2], "error": None},
        "c": {"video": "c", "label": 3, "pred": 0, "top5": [0, 1], "error": None},
        "d": {"video": "d", "label": 0, "pred": None, "top5": None, "error": "file not found"},
        "zzz": {"video": "zzz", "label": 0, "pred": 0, "top5": [0], "error": None},  # not in the list
    }
    s = res.summarize(rows, ["a", "b", "c", "d", "e"])
    assert s["top1"] == pytest.approx(100 / 3) and s["top5"] == pytest.approx(200 / 3)
    assert s["top1_errors_as_wrong"] == pytest.approx(25.0) and s["top5_errors_as_wrong"] == pytest.approx(
        50.0
    )
    assert (s["num_videos"], s["num_evaluated"], s["num_failed"], s["num_missing"]) == (5, 3, 1, 1)
    assert s["missing"] == ["e"]
    # Wilson's 95% interval for 1 of 3, written out: centre (k + z^2/2) / (n + z^2), half-width
    # z sqrt(k (n - k) / n + z^2 / 4) / (n + z^2), z = 1.959964
    z2 = 1.959964**2
    centre, half = (1 + z2 / 2) / (3 + z2), 1.959964 * (2 / 3 + z2 / 4) ** 0.5 / (3 + z2)
    assert s["top1_ci95"] == pytest.approx([100 * (centre - half), 100 * (centre + half)], abs=1e-4)
    assert res.summarize({}, ["a"])["top1"] is None and res.summarize({}, ["a"])["top1_ci95"] is None


def test_settings_record_and_compare(tmp_path):
    settings = {"model": "m", "views": "5x3", "r": None}
    assert res.check_or_record_settings(tmp_path, settings, overwrite=False) == "new"
    assert res.check_or_record_settings(tmp_path, settings, overwrite=False) == "resume"
    with pytest.raises(ValueError, match=r"r: recorded None, now 64"):
        res.check_or_record_settings(tmp_path, {**settings, "r": 64}, overwrite=False)
    res.rank_file(tmp_path, 0).write_text(json.dumps(_row(0)) + "\n")
    assert res.check_or_record_settings(tmp_path, {**settings, "r": 64}, overwrite=True) == "overwrite"
    assert not res.rank_files(tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["r"] == 64


def test_settings_differences_are_named_on_one_line(tmp_path):
    settings = {"model": "m", "views": "5x3", "precision": "fp32"}
    res.check_or_record_settings(tmp_path, settings, overwrite=False)
    with pytest.raises(ValueError) as err:
        res.check_or_record_settings(tmp_path, {**settings, "views": "1x1", "precision": "bf16"}, False)
    message = str(err.value)
    assert "\n" not in message
    assert "precision: recorded 'fp32', now 'bf16'" in message
    assert "views: recorded '5x3', now '1x1'" in message


def test_summarize_counts_videos_shorter_than_the_window():
    rows = {
        "a": {"video": "a", "label": 1, "pred": 1, "top5": [1], "frames": 12, "error": None},
        "b": {"video": "b", "label": 1, "pred": 1, "top5": [1], "frames": 61, "error": None},
        "c": {"video": "c", "label": 1, "pred": None, "top5": None, "frames": None, "error": "x"},
        "d": {"video": "d", "label": 1, "pred": 1, "top5": [1], "error": None},  # an older row
    }
    s = res.summarize(rows, ["a", "b", "c", "d"], window=61)
    assert s["num_short"] == 1 and s["sampling_window"] == 61
    assert "num_short" not in res.summarize(rows, ["a"])
