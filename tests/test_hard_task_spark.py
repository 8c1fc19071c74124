"""benchmarks/hard_task_spark.py: the spark's tokens are found where the spark is, and the script runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from hard_task_spark import PATCH, TUBELET, spark_cells  # noqa: E402

from stprune.demo.synthetic_hard import clip_rng, label_of, render_scene, sample_scene  # noqa: E402


def test_spark_cells_are_the_cells_on_the_spark_path():
    for i in range(6):
        scene = sample_scene(clip_rng(i, "val"), label_of(i))
        cells = spark_cells(scene, render_scene(scene), min_diff=24).reshape(8, 6, 6)
        assert 4 <= cells.sum() <= 16  # the task's stated 4 to 16 of 288 tokens
        xs, ys = scene.spark_path()
        frames = range(scene.spark.onset, scene.spark.onset + scene.spark.duration)
        on_path = set()
        for t, x, y in zip(frames, xs, ys, strict=True):
            if 0 <= x < 96 and 0 <= y < 96:
                on_path.add((t // TUBELET, int(y) // PATCH, int(x) // PATCH))
                assert cells[t // TUBELET, int(y) // PATCH, int(x) // PATCH]  # its centre's cell
        slots = {s for s, _, _ in on_path}
        assert set(np.nonzero(cells.any(axis=(1, 2)))[0].tolist()) == slots  # no cell outside its slots


def test_the_script_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "spark.json"
    cmd = [
        sys.executable,
        "benchmarks/hard_task_spark.py",
        "--clips",
        "12",
        "--targets",
        "0.7",
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = {r["setting"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["unpruned", "sta 0.7", "random 0.7", "rlt 0.7", "sta r=18,18,10"]
    assert rows["sta r=18,18,10"]["r"] == [18, 18, 10] and rows["sta r=18,18,10"]["flops_ratio"] < 0.5
    assert rows["unpruned"]["spark_kept_after_last_point"] == 100.0
    assert all(0.6 < rows[name]["flops_ratio"] <= 0.7 for name in ("sta 0.7", "random 0.7", "rlt 0.7"))
    for name in ("sta 0.7", "random 0.7", "rlt 0.7", "sta r=18,18,10"):
        row = rows[name]
        assert row["spark_kept_after_last_point"] <= row["spark_kept_after_first_point"] <= 100.0
        assert 0 < row["tokens_kept_after_last_point"] < 100
