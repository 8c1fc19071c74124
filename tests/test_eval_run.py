"""End-to-end `stprune eval` on tiny mp4s and a tiny random VideoMAE: rows, resume, bad files."""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from eval_utils import save_tiny_videomae, write_video

from stprune.cli import main
from stprune.eval import results as res
from stprune.eval.runner import run_eval

NUM_GOOD = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny model dir, a folder of videos (some broken) and lists over them."""
    base = tmp_path_factory.mktemp("eval")
    model = save_tiny_videomae(base / "model")
    vids = base / "videos"
    for i in range(NUM_GOOD):  # different lengths and aspect ratios
        write_video(vids / f"v{i}.mp4", frames=12 + 9 * i, height=64, width=64 + 16 * i, seed=i)
    good = [f"v{i}.mp4 {i % 3}" for i in range(NUM_GOOD)]
    (base / "good.txt").write_text("\n".join(good) + "\n")
    # broken files: missing, garbage, empty, truncated (index first, so it opens but ends early)
    (vids / "garbage.mp4").write_bytes(random.Random(0).randbytes(4096))  # fixed: not a container
    (vids / "empty.mp4").write_bytes(b"")
    full = write_video(vids / "full.mp4", frames=40, seed=9, faststart=True).read_bytes()
    (vids / "truncated.mp4").write_bytes(full[: len(full) // 2])
    bad = ["missing.mp4 1", "garbage.mp4 2", "empty.mp4 0", "truncated.mp4 1"]
    (base / "mixed.txt").write_text("\n".join(good[:2] + bad + good[2:]) + "\n")
    return base, model, vids


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(setup, out, data="good.txt", **kw):
    base, model, vids = setup
    kw.setdefault("workers", 0)
    kw.setdefault("batch_size", 4)
    return run_eval(str(model), base / data, out, root=vids, device="cpu", progress=False, **kw)


def test_rows_summary_and_view_averaging(setup, tmp_path):
    base, model, vids = setup
    summary = _run(setup, tmp_path / "out")
    rows = _rows(tmp_path / "out" / "predictions.jsonl")
    assert [r["video"] for r in rows] == [f"v{i}.mp4" for i in range(NUM_GOOD)]
    assert all(r["error"] is None and len(r["top5"]) == 5 and r["pred"] == r["top5"][0] for r in rows)
    assert summary["num_evaluated"] == NUM_GOOD and summary["num_failed"] == 0 and summary["num_views"] == 15
    top1 = 100.0 * sum(r["pred"] == r["label"] for r in rows) / NUM_GOOD
    assert summary["top1"] == pytest.approx(top1)
    assert summary["settings"]["views"] == "5x3" and summary["settings"]["protocol"] == "kinetics"
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["top1"] == summary["top1"] and on_disk["run"]["world_size"] == 1

    # The video prediction is the mean of the 15 view softmaxes, computed here independently.
    from transformers import VideoMAEForVideoClassification

    from stprune.eval.dataset import VideoViewsDataset
    from stprune.eval.lists import read_video_list
    from stprune.eval.sampling import ViewSpec
    from stprune.eval.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize

    hf = VideoMAEForVideoClassification.from_pretrained(model).eval()
    ds = VideoViewsDataset(read_video_list(base / "good.txt", vids), "kinetics", ViewSpec(5, 3), 4, 32)
    item = ds[3]
    with torch.no_grad():
        probs = hf(pixel_values=normalize(item.views, IMAGENET_MEAN, IMAGENET_STD)).logits.softmax(-1)
    mean = probs.mean(0)
    assert rows[3]["top5"] == torch.topk(mean, 5).indices.tolist()


def test_bad_files_become_error_rows(setup, tmp_path):
    summary = _run(setup, tmp_path / "out", data="mixed.txt", workers=2)
    rows = {r["video"]: r for r in _rows(tmp_path / "out" / "predictions.jsonl")}
    assert len(rows) == NUM_GOOD + 4
    errors = {v: r["error"] for v, r in rows.items() if r["error"]}
    assert set(errors) == {"missing.mp4", "garbage.mp4", "empty.mp4", "truncated.mp4"}
    assert "file not found" in errors["missing.mp4"]
    assert "empty file" in errors["empty.mp4"]
    assert "cannot open" in errors["garbage.mp4"]
    assert "truncated" in errors["truncated.mp4"]
    assert all(rows[v]["pred"] is None and rows[v]["top5"] is None for v in errors)
    assert summary["num_failed"] == 4 and summary["num_evaluated"] == NUM_GOOD
    ok = [r for r in rows.values() if not r["error"]]
    correct = sum(r["pred"] == r["label"] for r in ok)
    assert summary["top1"] == pytest.approx(100.0 * correct / NUM_GOOD)
    assert summary["top1_errors_as_wrong"] == pytest.approx(100.0 * correct / (NUM_GOOD + 4))


def test_resume_after_torn_write(setup, tmp_path):
    reference = _rows((lambda: (_run(setup, tmp_path / "ref"), tmp_path / "ref" / "predictions.jsonl")[1])())
    out = tmp_path / "out"
    _run(setup, out, limit=3)
    rank0 = res.rank_file(out, 0)
    lines = rank0.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3
    # Simulate kill -9 in the middle of writing the third row: half a line, no newline.
    rank0.write_bytes(b"".join(lines[:2]) + lines[2][: len(lines[2]) // 2])
    (out / "summary.json").unlink()

    summary = _run(setup, out)  # full list now: redo the torn video, then the 4th
    rows = _rows(rank0)
    videos = [r["video"] for r in rows]
    assert sorted(videos) == sorted(set(videos)) == [f"v{i}.mp4" for i in range(NUM_GOOD)]
    assert videos[:2] == ["v0.mp4", "v1.mp4"]  # kept, not rewritten
    assert rows == [next(r for r in reference if r["video"] == v) for v in videos]
    assert summary["num_evaluated"] == NUM_GOOD and summary["num_missing"] == 0

    # A third run finds everything done and writes nothing.
    before = rank0.read_bytes()
    _run(setup, out)
    assert rank0.read_bytes() == before


def test_complete_but_unterminated_last_line_is_redone(setup, tmp_path):
    out = tmp_path / "out"
    _run(setup, out, limit=2)
    rank0 = res.rank_file(out, 0)
    rank0.write_bytes(rank0.read_bytes().rstrip(b"\n"))  # valid JSON, but the newline never landed
    _run(setup, out, limit=2)
    assert [r["video"] for r in _rows(rank0)] == ["v0.mp4", "v1.mp4"]


def test_resume_refuses_other_settings(setup, tmp_path):
    out = tmp_path / "out"
    _run(setup, out, limit=1)
    with pytest.raises(ValueError, match=r"views: recorded '5x3', now '1x1'"):
        _run(setup, out, views="1x1")
    with pytest.raises(ValueError, match="protocol"):
        _run(setup, out, protocol="ssv2")
    summary = _run(setup, out, views="1x1", overwrite=True)
    assert summary["num_views"] == 1 and summary["num_evaluated"] == NUM_GOOD
    # prediction files that no run.json explains are refused too
    (out / "run.json").unlink()
    with pytest.raises(ValueError, match="no run.json"):
        _run(setup, out, views="1x1")


def test_changed_list_is_refused(setup, tmp_path):
    base, _, _ = setup
    out = tmp_path / "out"
    lst = tmp_path / "l.txt"
    lst.write_text((base / "good.txt").read_text())
    _run(setup, out, data=lst, views="1x1")
    lst.write_text((base / "good.txt").read_text().replace("v0.mp4 0", "v0.mp4 1"))
    with pytest.raises(ValueError, match="list_sha256"):
        _run(setup, out, data=lst, views="1x1")


def test_ssv2_protocol_runs(setup, tmp_path):
    summary = _run(setup, tmp_path / "out", protocol="ssv2")
    assert summary["num_views"] == 6 and summary["num_evaluated"] == NUM_GOOD
    assert summary["settings"]["sampling_rate"] is None


@pytest.fixture(scope="module")
def prunable(tmp_path_factory):
    """A tiny model the paper schedule fits: 8 frames (4 slots of 16 tokens), depth 3."""
    return save_tiny_videomae(tmp_path_factory.mktemp("prunable") / "model", frames=8, num_hidden_layers=3)


def test_pruned_evaluation(setup, prunable, tmp_path):
    base, _, vids = setup

    def run(out, **kw):
        return run_eval(
            str(prunable),
            base / "good.txt",
            tmp_path / out,
            root=vids,
            views="2x2",
            device="cpu",
            workers=0,
            progress=False,
            **kw,
        )

    full = run("full")
    sta = run("sta", r=4)
    assert full["pruning"] is None and full["settings"]["method"] is None
    assert sta["pruning"]["method"] == "sta" and sta["settings"]["r"] == 4
    assert [(s["after_block"], s["groups"], s["r"], s["reverse"]) for s in sta["pruning"]["stages"]] == [
        (0, 4, 4, False),
        (1, 2, 4, True),
        (2, 1, 4, False),
    ]  # the paper schedule for depth 3, T0 = 4
    assert sta["gflops_per_view"] < full["gflops_per_view"]
    assert sta["pruning"]["estimated_flops_ratio"] == pytest.approx(
        sta["gflops_per_view"] / full["gflops_per_view"], rel=0.05
    )
    assert sta["num_evaluated"] == NUM_GOOD
    target = run("target", flops_target=0.8)
    assert target["pruning"]["estimated_flops_ratio"] <= 0.8
    assert target["settings"]["flops_target"] == 0.8 and target["settings"]["r"] is None
    for method in ("tome", "random"):
        other = run(method, r=2, method=method)
        assert other["pruning"]["method"] == method and other["num_evaluated"] == NUM_GOOD
    with pytest.raises(ValueError, match="r: recorded 4, now 2"):
        run("sta", r=2)


@pytest.mark.parametrize(
    "kw, match",
    [
        # r and flops_target together are no longer "not both": they make a sweep (tests/test_eval_sweep.py)
        ({"r": [2, 3], "sweep": False}, "need the sweep layout"),
        ({"method": ["sta", "tome"]}, "several methods need --r"),
        ({"method": ["sta", "magic"], "r": 2}, "--method 'magic'"),
        ({"rlt_threshold": float("nan")}, "--rlt-threshold"),
        ({"flops_target": 1.5}, "flops_target"),
        ({"method": "magic"}, "--method"),
        ({"r": -1}, "--r"),
        ({"protocol": "ucf"}, "--protocol"),
        ({"batch_size": 0}, "--batch-size"),
        ({"views": "3"}, "--views"),
        ({"precision": "fp16"}, "fp16 needs --device cuda"),
    ],
)
def test_bad_arguments(setup, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _run(setup, tmp_path / "out", **kw)


def test_cli(setup, tmp_path, capsys):
    base, model, vids = setup
    common = ["eval", "--model", str(model), "--data", str(base / "good.txt"), "--root", str(vids)]
    common += ["--out", str(tmp_path / "out"), "--workers", "0", "--device", "cpu", "--no-progress"]
    assert main([*common, "--views", "1x1"]) == 0
    assert "top-1" in capsys.readouterr().out
    assert main([*common, "--views", "2x1"]) == 2  # other settings, same --out: refused, exit code 2
    assert "different evaluation" in capsys.readouterr().err
    # --r with --flops-target is a sweep now, not a usage error; this tiny model (2 slots) takes neither
    assert main([*common, "--views", "1x1", "--r", "3", "--flops-target", "0.5", "--overwrite"]) == 2
    assert "no setting of this sweep can run on the model" in capsys.readouterr().err


@pytest.mark.slow
def test_real_kill_9_with_workers_then_immediate_resume(setup, tmp_path):
    """SIGKILL a running `stprune eval --workers 2` (its DataLoader workers outlive it for a few
    seconds), resume at once: it resumes, and the rows equal an uninterrupted run's, none twice."""
    import signal
    import subprocess
    import sys
    import time

    base, model, vids = setup
    lst = tmp_path / "many.txt"
    n = 16
    for i in range(n):  # the same few clips under many names
        (tmp_path / "v" / f"c{i}.mp4").parent.mkdir(exist_ok=True)
        (tmp_path / "v" / f"c{i}.mp4").symlink_to(vids / f"v{i % NUM_GOOD}.mp4")
    lst.write_text("".join(f"v/c{i}.mp4 {i % 3}\n" for i in range(n)))
    settings = {"views": "2x1", "device": "cpu", "workers": 2, "batch_size": 4, "progress": False}
    run_eval(str(model), lst, tmp_path / "ref", **settings)
    reference = _rows(tmp_path / "ref" / "predictions.jsonl")

    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "stprune", "eval", "--model", str(model), "--data", str(lst)]
    cmd += ["--out", str(out), "--views", "2x1", "--workers", "2", "--device", "cpu", "--batch-size", "4"]
    cmd += ["--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rank0 = res.rank_file(out, 0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if rank0.exists() and rank0.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    written_before = rank0.read_bytes().count(b"\n")
    assert 3 <= written_before < n

    # at once, while the killed run's workers may still be alive
    summary = run_eval(str(model), lst, out, **settings)
    videos = [r["video"] for r in _rows(rank0)]
    assert len(videos) == len(set(videos)) == n  # each video exactly once
    assert summary["num_evaluated"] == n and summary["num_missing"] == 0
    assert _rows(out / "predictions.jsonl") == reference


def test_second_run_on_the_same_out_is_refused_while_the_first_runs(setup, tmp_path):
    out = tmp_path / "out"
    # the held lock stands for a run still in progress
    with res.RankLock(out, 0), pytest.raises(ValueError, match="another stprune eval is writing"):
        _run(setup, out, views="1x1")
    assert _run(setup, out, views="1x1")["num_evaluated"] == NUM_GOOD  # free again


def test_lock_held_by_another_process_refuses_and_its_death_frees_it(setup, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "out"
    holder = (
        "import sys, time\n"
        "from stprune.eval.results import RankLock\n"
        f"lock = RankLock({str(out)!r}, 0).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", holder], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match="another stprune eval is writing"):
            _run(setup, out, views="1x1")
    finally:
        proc.kill()
        proc.wait()
    assert _run(setup, out, views="1x1")["num_evaluated"] == NUM_GOOD  # the kernel freed it


def test_precision_is_recorded_and_a_resume_that_changes_it_is_refused(setup, tmp_path):
    out = tmp_path / "out"
    summary = _run(setup, out, views="1x1", limit=2)  # auto on CPU is fp32
    assert summary["run"]["precision"] == "fp32" and summary["settings"]["precision"] == "fp32"
    assert json.loads((out / "run.json").read_text())["precision"] == "fp32"
    with pytest.raises(ValueError, match=r"precision: recorded 'fp32', now 'bf16'") as err:
        _run(setup, out, views="1x1", precision="bf16")
    assert "\n" not in str(err.value)  # one line
    summary = _run(setup, out, views="1x1", precision="fp32")  # the same precision, said explicitly
    assert summary["num_evaluated"] == NUM_GOOD and summary["run"]["precision"] == "fp32"
    bf16 = _run(setup, tmp_path / "bf16", views="1x1", limit=1, precision="bf16")
    assert bf16["run"]["precision"] == "bf16" and bf16["settings"]["precision"] == "bf16"


def test_clips_shorter_than_the_sampling_window_warn_once_with_a_count(setup, tmp_path):
    # 4-frame clips at stride 4 span 13 frames: v0 has 12 (its last frame repeats), v1..v3 have 21+
    with pytest.warns(UserWarning, match=r"1 of 4 videos .*fewer than 13 frames") as record:
        summary = _run(setup, tmp_path / "s4", views="1x1", sampling_rate=4)
    assert len([w for w in record if "sampling window" in str(w.message)]) == 1
    assert summary["num_short"] == 1 and summary["sampling_window"] == 13
    with pytest.warns(UserWarning, match=r"2 of 4 videos .*fewer than 25 frames"):
        _run(setup, tmp_path / "s8", views="1x1", sampling_rate=8)
    rows = _rows(tmp_path / "s8" / "predictions.jsonl")
    assert [r["frames"] for r in rows] == [12, 21, 30, 39]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every clip long enough: no warning
        assert _run(setup, tmp_path / "s2", views="1x1", sampling_rate=2)["num_short"] == 0


def test_labels_outside_the_model_classes_warn(setup, tmp_path):
    base, _, _ = setup
    lst = tmp_path / "l.txt"
    lst.write_text("v0.mp4 0\nv1.mp4 7\nv2.mp4 400\nv3.mp4 2\n")  # the tiny model has 7 classes
    match = r"2 of 4 labels .* outside the model's 7 classes \(0\.\.6\).*line 2"
    with pytest.warns(UserWarning, match=match):
        summary = _run(setup, tmp_path / "out", data=lst, views="1x1")
    assert summary["num_evaluated"] == 4


def test_default_workers_stay_within_the_cpus_available(monkeypatch):
    from stprune.eval.runner import default_workers

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert default_workers() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert default_workers() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # 8 ranks on this node share 64 CPUs
    assert default_workers() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert default_workers() == 1
