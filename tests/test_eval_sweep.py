"""`stprune eval` sweeps: every method x every setting on the same decoded views of the demo videos.

A sweep gives each setting exactly the rows a separate single-setting run gives, resumes (after a
kill -9 too) without losing or repeating a row of any setting, extends with new settings, shards
under torchrun like a single run, and writes sweep.json / sweep.png."""

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import stprune
from stprune.cli import main
from stprune.errors import SettingError
from stprune.eval import results as res
from stprune.eval.runner import run_eval
from stprune.eval.sweep import (
    SweepEngine,
    resolve_settings,
    running_top1,
    setting_dir,
    sweep_settings,
)
from stprune.methods import encoder_methods

REPO = Path(__file__).resolve().parents[1]
NUM = 3
TARGETS = [0.9, 0.7, 0.5]
THRESHOLDS = [0.1]
SWEEP_KEYS = {
    "method",
    "setting",
    "gflops_per_view",
    "flops_ratio",
    "top1",
    "top5",
    "num_evaluated",
    "num_failed",
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """NUM demo videos (`stprune make-demo-videos`) and their list."""
    from stprune.demo.videos import make_demo_videos

    return make_demo_videos(tmp_path_factory.mktemp("sweepvideos"), NUM, progress=False)


def _eval(data, out, **kw):
    kw.setdefault("views", "1x2")  # 2 views per video, 3 per batch: videos straddle batches
    kw.setdefault("batch_size", 3)
    kw.setdefault("workers", 0)
    return run_eval("demo", data, out, device="cpu", progress=False, **kw)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG file"
    return struct.unpack(">II", data[16:24])


def test_a_sweep_gives_every_setting_the_rows_of_its_own_single_run(videos, tmp_path):
    methods = list(encoder_methods())  # every registered encoder method (sta, tome, random, rlt, ...)
    with pytest.warns(UserWarning, match="skipped tome flops_target=0.5"):  # reported, not fatal
        result = _eval(
            videos, tmp_path / "sweep", method=methods, flops_target=TARGETS, rlt_threshold=THRESHOLDS
        )
    table = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert table == result["sweep"]
    ran = [r for r in table if r["skipped"] is None]
    skipped = [r for r in table if r["skipped"] is not None]
    # ToMe's constant r per block cannot reach 0.5 on this model (other merging methods may not either)
    unreachable = {(r["method"], r["setting"]) for r in skipped}
    assert ("tome", "flops_target=0.5") in unreachable
    assert [(r["method"], r["setting"]) for r in ran] == [("none", "unpruned")] + [
        (m, f"flops_target={x:g}")
        for m in methods
        for x in TARGETS
        if (m, f"flops_target={x:g}") not in unreachable
    ] + [("rlt", "threshold=0.1")]
    for skip in skipped:
        assert skip["top1"] is None and "cannot be reached" in skip["skipped"]
        assert skip["setting"] == "flops_target=0.5"
    for row in table:
        assert set(row) >= SWEEP_KEYS
    width, height = _png_size(tmp_path / "sweep" / "sweep.png")
    assert width > 200 and height > 200

    base = ran[0]
    assert base["flops_ratio"] == 1.0 and base["num_evaluated"] == NUM and base["num_failed"] == 0
    for row in ran[1:]:
        assert row["gflops_per_view"] < base["gflops_per_view"]
        assert row["flops_ratio"] == pytest.approx(row["gflops_per_view"] / base["gflops_per_view"])

    # each setting alone, in a fresh folder: the same rows, top-1 and GFLOPs
    for row in ran:
        if row["method"] == "none":
            kw = {}
        elif row["setting"].startswith("threshold="):
            kw = {"method": "rlt", "rlt_threshold": float(row["setting"].split("=")[1])}
        else:
            kw = {"method": row["method"], "flops_target": float(row["setting"].split("=")[1])}
        single = _eval(videos, tmp_path / row["dir"], **kw)
        assert _lines(tmp_path / row["dir"] / "predictions.jsonl") == _lines(
            tmp_path / "sweep" / row["dir"] / "predictions.jsonl"
        ), row
        assert single["top1"] == row["top1"] and single["top5"] == row["top5"], row
        assert single["gflops_per_view"] == pytest.approx(row["gflops_per_view"], rel=1e-12), row
        sub = json.loads((tmp_path / "sweep" / row["dir"] / "summary.json").read_text())
        assert {k: v for k, v in sub.items() if k != "run"} == {k: v for k, v in single.items() if k != "run"}


def test_threshold_settings_record_each_videos_gflops_and_the_mean_survives_a_resume(videos, tmp_path):
    out = tmp_path / "out"
    first = _eval(videos, out, method="sta", flops_target=0.7, rlt_threshold=[0.1, 0.05], limit=3)
    name = setting_dir(sweep_settings([], threshold=0.1)[1])
    assert name == "rlt_threshold=0.1"
    rows = [json.loads(x) for x in _lines(out / name / "predictions.jsonl")]
    assert len(rows) == 3 and all(isinstance(r["gflops"], float) and r["gflops"] > 0 for r in rows)
    # each video's figure is its own cost: the mean over its 2 views of stprune.last_macs (counted here)
    from stprune.demo.model import load_demo_info, load_demo_model
    from stprune.eval.dataset import VideoViewsDataset
    from stprune.eval.lists import read_video_list
    from stprune.eval.sampling import ViewSpec
    from stprune.eval.transforms import normalize

    model, info = load_demo_model(), load_demo_info()
    dataset = VideoViewsDataset(read_video_list(videos), "kinetics", ViewSpec(1, 2), 16, 96, 1)
    stprune.patch(model, method="rlt", threshold=0.1)
    for i, row in enumerate(rows):
        with torch.no_grad():
            model(pixel_values=normalize(dataset[i].views, info.mean, info.std))
        assert row["gflops"] == pytest.approx(stprune.last_macs(model).double().mean().item() / 1e9, rel=1e-6)
    stprune.unpatch(model)
    (entry,) = [r for r in first["sweep"] if r["setting"] == "threshold=0.1"]
    assert entry["gflops_per_view"] == pytest.approx(sum(r["gflops"] for r in rows) / 3, rel=1e-9)
    tighter = [r for r in first["sweep"] if r["setting"] == "threshold=0.05"][0]
    assert tighter["gflops_per_view"] >= entry["gflops_per_view"]  # a lower tau keeps more tokens

    # no planned ratio for a setting that decides per clip (the mean is gflops_per_view); a fixed one has it
    summary = json.loads((out / name / res.SUMMARY_FILE).read_text())
    assert summary["pruning"]["estimated_flops_ratio"] is None
    fixed = json.loads((out / "sta_flops_target=0.7" / res.SUMMARY_FILE).read_text())
    assert 0 < fixed["pruning"]["estimated_flops_ratio"] <= 0.7
    # fixed-cost settings have no per-video field
    assert "gflops" not in json.loads(_lines(out / "sta_flops_target=0.7" / "predictions.jsonl")[0])
    # a resume with nothing to do recomputes sweep.json from the rows: the same figures
    (out / res.SWEEP_FILE).unlink()
    again = _eval(videos, out, method="sta", flops_target=0.7, rlt_threshold=[0.1, 0.05], limit=3)
    assert again["sweep"] == first["sweep"]


def test_a_resume_with_more_settings_runs_new_ones_on_every_video_and_old_ones_on_missing_videos(
    videos, tmp_path
):
    out = tmp_path / "out"
    _eval(videos, out, method=["sta", "random"], flops_target=0.7, limit=2)
    kept = {d: res.rank_file(out / d, 0).read_bytes() for d in ("none", "sta_flops_target=0.7")}
    assert all(b.count(b"\n") == 2 for b in kept.values())

    result = _eval(videos, out, method=["sta", "random", "tome"], flops_target=[0.7, 0.5])
    for d, before in kept.items():
        now = res.rank_file(out / d, 0).read_bytes()
        assert now.startswith(before) and now.count(b"\n") == NUM  # old rows kept, never rewritten
    videos_of = {
        d: [json.loads(x)["video"] for x in _lines(res.rank_file(out / d, 0))]
        for d in ("none", "sta_flops_target=0.5", "tome_flops_target=0.7")
    }
    assert all(len(v) == len(set(v)) == NUM for v in videos_of.values())  # the new ones ran on every video
    fresh = _eval(videos, tmp_path / "fresh", method=["sta", "random", "tome"], flops_target=[0.7, 0.5])
    assert result["sweep"] == fresh["sweep"]
    for row in fresh["sweep"]:
        if row["dir"] is not None:
            assert _lines(out / row["dir"] / "predictions.jsonl") == _lines(
                tmp_path / "fresh" / row["dir"] / "predictions.jsonl"
            )


def test_a_sweep_refuses_other_common_settings_and_a_single_setting_folder(videos, tmp_path):
    out, single = tmp_path / "sweep", tmp_path / "single"
    _eval(videos, out, method=["sta", "random"], flops_target=0.7, limit=1)
    with pytest.raises(SettingError, match=r"views: recorded '1x2', now '1x1'") as err:
        _eval(videos, out, method=["sta", "random"], flops_target=0.7, views="1x1")
    assert "\n" not in str(err.value)
    with pytest.raises(SettingError, match="holds a sweep .*this run is a single-setting evaluation"):
        _eval(videos, out, method="sta", flops_target=0.7)
    _eval(videos, single, method="sta", flops_target=0.7, limit=1)
    with pytest.raises(SettingError, match="holds a single-setting evaluation .*sta.*this run is a sweep"):
        _eval(videos, single, method=["sta", "random"], flops_target=0.7)
    # a setting folder that records something else is refused too
    record = json.loads((out / "sta_flops_target=0.7" / "run.json").read_text())
    record["flops_target"] = 0.6
    (out / "sta_flops_target=0.7" / "run.json").write_text(json.dumps(record))
    with pytest.raises(SettingError, match=r"flops_target: recorded 0.6, now 0.7"):
        _eval(videos, out, method=["sta", "random"], flops_target=0.7)
    # --overwrite discards every setting folder, also of settings not asked for again
    result = _eval(videos, out, method=["sta", "tome"], flops_target=0.7, views="1x1", overwrite=True)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "none",
        "sta_flops_target=0.7",
        "tome_flops_target=0.7",
    ]
    assert all(r["num_evaluated"] == NUM for r in result["sweep"])
    # a single-setting run may overwrite a sweep folder: it becomes a single-setting folder
    _eval(videos, out, method="sta", flops_target=0.7, overwrite=True)
    assert not (out / res.SWEEP_FILE).exists() and not [p for p in out.iterdir() if p.is_dir()]


def test_sweep_true_makes_a_sweep_of_one_setting_and_the_unpruned_model(videos, tmp_path):
    result = _eval(videos, tmp_path / "out", method="sta", flops_target=0.7, sweep=True)
    assert [r["dir"] for r in result["sweep"]] == ["none", "sta_flops_target=0.7"]
    assert set(result["summaries"]) == {"none", "sta_flops_target=0.7"}


def test_the_engine_equals_each_setting_run_directly_and_resolves_each_setting_once():
    """Views of several clips packed across batches, each setting on only the clips that need it:
    every clip's mean softmax equals the patched model run on that clip's views directly."""
    from stprune.demo.dataset import frames_to_pixel_values
    from stprune.demo.model import load_demo_info, load_demo_model
    from stprune.demo.synthetic import generate_clips

    model, info = load_demo_model(), load_demo_info()
    settings = sweep_settings(list(encoder_methods()), flops_target=0.7, threshold=THRESHOLDS)
    resolved, skipped = resolve_settings(model, settings)
    assert not skipped and not stprune.is_patched(model)
    for t in resolved[1:]:
        if not t.adaptive:  # the r the search chose is in the kwargs: no search per batch
            assert "flops_target" not in t.patch_kwargs
            stprune.patch(model, **t.patch_kwargs)
            again = stprune.patch_info(model)
            stprune.unpatch(model)
            stprune.patch(model, method=t.method, flops_target=0.7)
            assert stprune.patch_info(model) == again
            stprune.unpatch(model)

    frames, _ = generate_clips(range(4), "val", 0)
    frames = torch.as_tensor(frames)
    views = [torch.stack([frames[i], frames[i].flip(2)]) for i in range(4)]  # 2 views per clip
    needed = [range(len(resolved)), [0, 2], [1], range(len(resolved))]

    def prepare(x):
        return frames_to_pixel_values(x, info.mean, info.std)

    engine = SweepEngine(
        model, lambda x: model(pixel_values=x).logits, resolved, batch_size=3, prepare=prepare
    )
    done = []
    for i in range(4):
        done += engine.add(i, views[i], needed[i])
    done += engine.flush()
    assert sorted(d.owner for d in done) == [0, 1, 2, 3]
    for d in done:
        assert sorted(d.probs) == sorted(needed[d.owner])
        for k, probs in d.probs.items():
            with resolved[k].applied(model), torch.no_grad():
                direct = model(pixel_values=prepare(views[d.owner])).logits.softmax(-1).mean(0)
                if resolved[k].adaptive:
                    macs = stprune.last_macs(model).double().mean().item()
                    assert d.gflops[k] == pytest.approx(macs / 1e9, rel=1e-12)
            torch.testing.assert_close(probs, direct, rtol=0, atol=1e-5)  # other batches: not bitwise
    assert all(v is not None and v > 0 for v in engine.clips_per_s())
    assert running_top1(["none", "sta@0.7"], [3, 1], [4, 0]) == "none 75.0 sta@0.7 -"


def test_cli_sweep_prints_a_table_and_reports_what_it_skipped(videos, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["eval", "--model", "demo", "--data", str(videos), "--out", str(out), "--views", "1x1"]
    args += ["--workers", "0", "--device", "cpu", "--no-progress", "--batch-size", "4"]
    assert main([*args, "--method", "sta", "tome", "--flops-target", "0.7", "0.5"]) == 0
    captured = capsys.readouterr()
    assert "stprune eval: warning: skipped tome flops_target=0.5" in captured.err
    assert "| none | unpruned | - |" in captured.out and "| tome | flops_target=0.7 |" in captured.out
    assert f"results: {out}/sweep.json" in captured.out
    assert [r["dir"] for r in json.loads((out / "sweep.json").read_text())] == [
        "none",
        "sta_flops_target=0.7",
        "sta_flops_target=0.5",
        "tome_flops_target=0.7",
        None,
    ]
    # --r and --flops-target together, several methods: every method at every value
    out2 = str(tmp_path / "out2")
    assert (
        main([*args[:6], out2, *args[7:], "--method", "sta", "random", "--r", "4", "--flops-target", "0.7"])
        == 0
    )
    dirs = [r["dir"] for r in json.loads(Path(out2, "sweep.json").read_text())]
    assert dirs == ["none", "sta_r=4", "sta_flops_target=0.7", "random_r=4", "random_flops_target=0.7"]
    # a sweep none of whose settings the model can take fails before any work
    assert main([*args, "--overwrite", "--method", "tome", "--flops-target", "0.3", "0.2"]) == 2
    assert "no setting of this sweep can run" in capsys.readouterr().err


def test_torchrun_two_ranks_sweep_like_one_process(videos, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(videos.read_text() + "missing.mp4 3\n")  # an error row in every setting
    common = ["--model", "demo", "--data", str(lst), "--root", str(videos.parent), "--views", "1x2"]
    common += ["--batch-size", "3", "--workers", "0", "--device", "cpu", "--no-progress"]
    common += ["--method", "sta", "random", "--flops-target", "0.7", "0.5"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "stprune", "eval", *common, "--out", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single = run_eval(
        "demo",
        lst,
        tmp_path / "single",
        root=videos.parent,
        views="1x2",
        batch_size=3,
        workers=0,
        device="cpu",
        progress=False,
        method=["sta", "random"],
        flops_target=[0.7, 0.5],
    )
    dist = tmp_path / "dist"
    assert json.loads((dist / "sweep.json").read_text()) == single["sweep"]
    assert all(r["num_failed"] == 1 and r["num_evaluated"] == NUM for r in single["sweep"])
    for row in single["sweep"]:
        assert sorted(res.rank_files(dist / row["dir"])) == [0, 1]
        assert _lines(dist / row["dir"] / "predictions.jsonl") == _lines(
            tmp_path / "single" / row["dir"] / "predictions.jsonl"
        )
        d = json.loads((dist / row["dir"] / "summary.json").read_text())
        assert d["run"]["world_size"] == 2
        assert {k: v for k, v in d.items() if k != "run"} == {
            k: v for k, v in json.loads(json.dumps(single["summaries"][row["dir"]])).items() if k != "run"
        }


@pytest.mark.slow
def test_real_kill_9_of_a_sweep_then_immediate_resume(videos, tmp_path):
    """SIGKILL a running sweep (`--workers 2`), resume at once: every setting ends with the rows of
    an uninterrupted sweep, each video exactly once per setting."""
    n = 16
    (tmp_path / "v").mkdir()
    lines = videos.read_text().splitlines()
    for i in range(n):  # the same few clips under many names
        path, label = lines[i % NUM].rsplit(" ", 1)
        (tmp_path / "v" / f"c{i}.mp4").symlink_to(videos.parent / path)
    lst = tmp_path / "many.txt"
    lst.write_text("".join(f"v/c{i}.mp4 {lines[i % NUM].rsplit(' ', 1)[1]}\n" for i in range(n)))
    sweep = {"method": ["sta", "random"], "flops_target": [0.7, 0.5]}
    settings = {"views": "1x2", "device": "cpu", "workers": 2, "batch_size": 3, "progress": False}
    reference = run_eval("demo", lst, tmp_path / "ref", **settings, **sweep)

    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "stprune", "eval", "--model", "demo", "--data", str(lst), "--out", str(out)]
    cmd += ["--views", "1x2", "--workers", "2", "--device", "cpu", "--batch-size", "3", "--no-progress"]
    cmd += ["--method", "sta", "random", "--flops-target", "0.7", "0.5"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = res.rank_file(out / "random_flops_target=0.5", 0)  # the last setting written per video
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if watched.exists() and watched.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = watched.read_bytes().count(b"\n")
    assert 3 <= before < n

    result = run_eval("demo", lst, out, **settings, **sweep)  # at once: its workers may still be alive
    assert result["sweep"] == reference["sweep"]
    for row in reference["sweep"]:
        written = [json.loads(x)["video"] for x in _lines(res.rank_file(out / row["dir"], 0))]
        assert len(written) == len(set(written)) == n, row["dir"]  # each video exactly once
        assert _lines(out / row["dir"] / "predictions.jsonl") == _lines(
            tmp_path / "ref" / row["dir"] / "predictions.jsonl"
        )


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_thresholds_are_refused_before_any_work(bad):
    with pytest.raises(SettingError, match="finite number >= 0"):
        sweep_settings(["sta"], flops_target=0.7, threshold=[0.1, bad])
