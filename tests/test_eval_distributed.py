"""`torchrun --nproc-per-node 2 -m stprune eval` (gloo, CPU) gives the same results as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from eval_utils import save_tiny_videomae, write_video

from stprune.eval import results as res
from stprune.eval.distributed import shard
from stprune.eval.runner import run_eval

REPO = Path(__file__).resolve().parents[1]


def _strip_run(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "run"}


def test_shard_is_a_partition():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    with pytest.raises(ValueError, match="rank 3"):
        shard(items, 3, 3)


def test_torchrun_two_ranks_match_one_process(tmp_path):
    model = save_tiny_videomae(tmp_path / "model")
    vids = tmp_path / "videos"
    lines = []
    for i in range(5):
        write_video(vids / f"v{i}.mp4", frames=10 + 6 * i, height=48, width=64, seed=10 + i)
        lines.append(f"v{i}.mp4 {i % 4}")
    lines.append("missing.mp4 3")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    common = ["--model", str(model), "--data", str(tmp_path / "list.txt"), "--root", str(vids)]
    common += ["--views", "2x2", "--batch-size", "3", "--workers", "0", "--device", "cpu", "--no-progress"]

    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "stprune", "eval", *common, "--out", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    dist_out = tmp_path / "dist"
    files = res.rank_files(dist_out)
    assert sorted(files) == [0, 1]
    per_rank = [[json.loads(x)["video"] for x in files[r].read_text().splitlines()] for r in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 3 and not set(per_rank[0]) & set(per_rank[1])
    dist_summary = json.loads((dist_out / "summary.json").read_text())
    assert dist_summary["run"]["world_size"] == 2

    # One process, same settings, fresh directory.
    single = run_eval(
        str(model),
        tmp_path / "list.txt",
        tmp_path / "single",
        root=vids,
        views="2x2",
        batch_size=3,
        workers=0,
        device="cpu",
        progress=False,
    )
    assert (dist_out / "predictions.jsonl").read_text() == (
        tmp_path / "single" / "predictions.jsonl"
    ).read_text()
    assert _strip_run(dist_summary) == _strip_run(json.loads(json.dumps(single)))
    assert single["num_failed"] == 1 and single["num_evaluated"] == 5

    # Resuming the 2-rank directory with one process finds every video done and changes nothing.
    before = {r: p.read_bytes() for r, p in files.items()}
    again = run_eval(
        str(model),
        tmp_path / "list.txt",
        dist_out,
        root=vids,
        views="2x2",
        batch_size=3,
        workers=0,
        device="cpu",
        progress=False,
    )
    assert {r: p.read_bytes() for r, p in res.rank_files(dist_out).items()} == before
    assert _strip_run(again) == _strip_run(single)
