"""Paired statistics (`stprune.eval.stats`): the Wilson interval, the paired bootstrap and the exact
McNemar test against hand-computed and independent values; and where they are printed: sweep.json,
the sweep's console table and plot, the demo's table."""

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from stprune.cli import main
from stprune.eval import PairedComparison, compare, top1_ci
from stprune.eval import results as res
from stprune.eval.runner import run_eval
from stprune.eval.stats import (
    RESAMPLES,
    STAT_FIELDS,
    Z95,
    SettingCorrectness,
    as_correct,
    format_delta,
    format_p,
    mcnemar_p,
    nearest_sta,
    paired_bootstrap_ci,
    significant,
    sweep_statistics,
    wilson_interval,
)


def exact_mcnemar(b: int, c: int) -> float:
    """Independent: exact rational arithmetic with math.comb."""
    m = b + c
    if m == 0:
        return 1.0
    tail = Fraction(sum(math.comb(m, k) for k in range(min(b, c) + 1)), 2**m)
    return float(min(Fraction(1), 2 * tail))


# --------------------------------------------------------------------------------------------
# the functions
# --------------------------------------------------------------------------------------------


def test_wilson_interval_against_hand_computed_values():
    assert abs(Z95 - 1.959963984540054) < 1e-12
    # 8 of 10, the textbook case: [0.4902, 0.9433]
    assert wilson_interval(8, 10) == pytest.approx((0.49016, 0.94332), abs=1e-5)
    # k = 0: [0, z^2 / (n + z^2)]; k = n: [n / (n + z^2), 1]; never degenerate
    z2 = Z95**2
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-12)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0), abs=1e-12)
    # the demo's 499 of 500, in percent
    top1, lo, hi = top1_ci([True] * 499 + [False])
    assert top1 == pytest.approx(99.8) and (lo, hi) == pytest.approx((98.876, 99.965), abs=1e-3)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        top1_ci([])


def test_exact_mcnemar_against_hand_computed_and_math_comb():
    assert mcnemar_p(0, 5) == pytest.approx(0.0625, abs=1e-15) == mcnemar_p(5, 0)  # 2 / 2^5
    assert mcnemar_p(0, 10) == pytest.approx(2 / 1024, rel=1e-12)
    assert mcnemar_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024, rel=1e-12)  # C(10,0) + C(10,1)
    for b in (0, 1, 7, 250):
        assert mcnemar_p(b, b) == 1.0  # b = c: no evidence at all
    assert mcnemar_p(3, 4) == 1.0 == mcnemar_p(0, 1)
    for b, c in [(2, 11), (30, 70), (480, 560), (2000, 2210), (1, 300)]:
        assert mcnemar_p(b, c) == pytest.approx(exact_mcnemar(b, c), rel=1e-9), (b, c)
        assert mcnemar_p(b, c) == mcnemar_p(c, b)
    # far beyond what 2^m in floating point could hold: still finite, tiny, and monotone
    p_far = mcnemar_p(50_000, 52_000)
    assert 0.0 < p_far < mcnemar_p(50_000, 51_000) < 1e-2
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_the_bootstrap_is_seeded_and_resamples_clips():
    assert paired_bootstrap_ci(12, 4, 200) == paired_bootstrap_ci(12, 4, 200)  # same seed, same interval
    assert paired_bootstrap_ci(12, 4, 200, seed=3) == paired_bootstrap_ci(12, 4, 200, seed=3)
    assert paired_bootstrap_ci(0, 0, 50) == (0.0, 0.0)  # no discordant clip: no spread
    # the counts-of-kinds draw is the same distribution as resampling n clip indices: the
    # percentiles agree with an explicit index bootstrap to one step of the lattice (100 / n)
    n, b, c = 200, 12, 4
    d = np.zeros(n)
    d[:b], d[b : b + c] = 1, -1
    idx = np.random.default_rng(1).integers(0, n, (RESAMPLES, n))
    explicit = np.percentile(100.0 * d[idx].sum(axis=1) / n, [2.5, 97.5])
    ours = paired_bootstrap_ci(b, c, n)
    assert np.abs(np.array(ours) - explicit).max() <= 100.0 / n + 1e-9


def test_the_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    """200 simulated pairs of settings on 400 clips each (correlated: mostly both right), true
    difference 3 points; fixed seeds, so the count is the same on every run."""
    rng = np.random.default_rng(2024)
    kinds = [0.82, 0.06, 0.03, 0.09]  # both right, only A, only B, both wrong
    true_delta = 100.0 * (kinds[1] - kinds[2])
    covered = 0
    for sim in range(200):
        kind = rng.choice(4, size=400, p=kinds)
        a = (kind == 0) | (kind == 1)
        b = (kind == 0) | (kind == 2)
        lo, hi = compare(a, b, seed=sim).ci95
        covered += lo <= true_delta <= hi
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_compare_takes_correctness_predictions_or_scores():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    pred_a = np.array([0, 1, 2, 3, 4, 5, 6, 0])
    pred_b = np.array([0, 1, 0, 0, 0, 5, 6, 0])
    r = compare(pred_a, pred_b, labels)
    assert isinstance(r, PairedComparison)
    assert (r.b, r.c, r.n) == (3, 0, 8) and r.delta == pytest.approx(37.5)
    assert r.mcnemar_p == pytest.approx(0.25) and not r.significant  # 3 clips: n.s.
    assert compare(pred_a == labels, pred_b == labels) == r
    scores = torch.nn.functional.one_hot(torch.as_tensor(pred_a), 8).float()  # (n, C): the arg-max
    assert compare(scores, torch.as_tensor(pred_b), torch.as_tensor(labels)).delta == r.delta
    assert compare([1, 0, 1], [1, 1, 1]).delta == pytest.approx(-100 / 3)
    with pytest.raises(ValueError, match="0 / 1"):
        as_correct([0, 2, 1])
    with pytest.raises(ValueError, match="same clips"):
        compare([1, 0], [1, 0, 1])


def test_an_interval_covering_0_is_printed_as_not_significant():
    assert format_delta(-0.4, (-1.0, 0.0), 0.5) == "-0.40 [-1.00, +0.00] p=0.5 n.s."
    assert format_delta(0.2, (-0.4, 0.8), 1.0, digits=1) == "+0.2 [-0.4, +0.8] p=1 n.s."
    assert format_delta(-3.4, (-5.0, -2.0), 1e-6) == "-3.40 [-5.00, -2.00] p<0.0001"  # a real loss
    assert format_delta(None, None) == "-"
    # few discordant clips: the percentile interval excludes 0, McNemar does not: n.s.
    r = compare([1] * 495 + [0] * 5, [1] * 500)
    assert r.ci95[1] < 0 and r.mcnemar_p == pytest.approx(0.0625)
    assert not r.significant and str(r).startswith("-1.00 [") and "n.s." in str(r)
    assert not significant((-2.0, 0.0), 0.001) and significant((-2.0, -0.2), 0.001)
    assert not significant(None, 0.001) and not significant((-2.0, -0.2), None)
    assert [format_p(p) for p in (1.0, 0.0625, 0.0031, 1e-7)] == ["1", "0.0625", "0.0031", "<0.0001"]


def test_sweep_statistics_pair_units_and_pick_sta_at_the_nearest_ratio():
    n = 40
    base = {f"v{i}": i != 0 for i in range(n)}  # 39 of 40
    sta7 = {f"v{i}": i not in (0, 1) for i in range(n)}
    sta5 = {f"v{i}": i not in (0, 1, 2) for i in range(n)}
    rnd = {f"v{i}": i >= 12 for i in range(n) if i != 39}  # v39 failed for this setting only
    settings = [
        SettingCorrectness("none", "unpruned", 1.0, base),
        SettingCorrectness("sta", "flops_target=0.7", 0.68, sta7),
        SettingCorrectness("sta", "flops_target=0.5", 0.48, sta5),
        SettingCorrectness("random", "flops_target=0.5", 0.49, rnd),
        SettingCorrectness("tome", "flops_target=0.6", 0.58, sta7),  # 0.10 from both: the first STA
        SettingCorrectness("rlt", "threshold=0.1", None, sta7),  # ratio unknown: no STA comparison
    ]
    assert [nearest_sta(settings, i) for i in range(6)] == [None, None, None, 2, 1, None]
    out = sweep_statistics(settings)
    assert all(set(f) == set(STAT_FIELDS) for f in out)
    assert out[0]["top1_ci95"] == pytest.approx([100 * x for x in wilson_interval(39, 40)])
    assert out[0]["delta_top1_vs_unpruned"] is None and out[0]["sta_setting"] is None
    assert out[1]["delta_top1_vs_unpruned"] == pytest.approx(-2.5)  # b = 0, c = 1 of 40
    assert out[1]["mcnemar_p"] == 1.0 and out[1]["delta_top1_vs_sta"] is None  # STA itself
    # random vs unpruned on the 39 videos both have: b = 0, c = 11
    r = out[3]
    assert r["delta_top1_vs_unpruned"] == pytest.approx(-100 * 11 / 39)
    assert r["mcnemar_p"] == pytest.approx(exact_mcnemar(0, 11), rel=1e-12)
    assert r["delta_ci95"] == list(paired_bootstrap_ci(0, 11, 39))
    assert r["top1_ci95"] == pytest.approx([100 * x for x in wilson_interval(27, 39)])
    # vs STA at 0.48 (sta5), same 39 videos: b = 0, c = 9
    assert r["sta_setting"] == "flops_target=0.5"
    assert r["delta_top1_vs_sta"] == pytest.approx(-100 * 9 / 39)
    assert r["mcnemar_p_vs_sta"] == pytest.approx(exact_mcnemar(0, 9), rel=1e-12)
    assert out[4]["sta_setting"] == "flops_target=0.7" and out[4]["delta_top1_vs_sta"] == 0.0
    assert out[5]["delta_top1_vs_sta"] is None and out[5]["delta_top1_vs_unpruned"] is not None
    assert sweep_statistics(settings) == out  # deterministic
    # without STA in the sweep nothing is compared with STA
    assert all(f["sta_setting"] is None for f in sweep_statistics([settings[0], settings[3]]))


def test_the_plot_draws_the_intervals_as_error_bars():
    from matplotlib.container import ErrorbarContainer

    from stprune.eval.sweep import CurvePoint, sweep_figure

    points = [
        CurvePoint("none", "unpruned", 1.0, 99.0, ci95=(97.0, 99.7)),
        CurvePoint("sta", "flops_target=0.7", 0.7, 98.0, ci95=(96.0, 99.0)),
        CurvePoint("random", "flops_target=0.7", 0.7, 90.0, ci95=(86.0, 93.0)),
    ]
    fig = sweep_figure(points, "t")
    ax = fig.axes[0]
    assert sum(isinstance(c, ErrorbarContainer) for c in ax.containers) == 3
    assert "95%" in ax.get_ylabel() and ax.get_ylim()[0] < 86.0
    fig.canvas.draw()
    legend, plot = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 > plot.x1  # beside the axes: it hides no point or error bar


# --------------------------------------------------------------------------------------------
# stprune eval: sweep.json, resume, the console table
# --------------------------------------------------------------------------------------------

NUM = 12


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory):
    """NUM list entries over 3 demo videos (symlinks under other names)."""
    from stprune.demo.videos import make_demo_videos

    root = tmp_path_factory.mktemp("statsvideos")
    videos = make_demo_videos(root / "src", 3, progress=False)
    lines = videos.read_text().splitlines()
    (root / "v").mkdir()
    out = []
    for i in range(NUM):
        path, label = lines[i % 3].rsplit(" ", 1)
        (root / "v" / f"c{i:02d}.mp4").symlink_to(videos.parent / path)
        out.append(f"v/c{i:02d}.mp4 {label}\n")
    lst = root / "many.txt"
    lst.write_text("".join(out))
    return lst


SWEEP = {"method": ["sta", "random"], "flops_target": [0.7], "views": "1x1", "workers": 0}
SWEEP.update({"batch_size": 4, "device": "cpu", "progress": False})


def _craft(folder: Path, wrong: set[int]) -> None:
    """Rewrite a setting's rows: entry i is right unless i is in ``wrong`` (then label + 1)."""
    path = res.rank_file(folder, 0)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for row in rows:
        i = int(Path(row["video"]).stem[1:])
        row["pred"] = (row["label"] + 1) % 12 if i in wrong else row["label"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # another order too


def test_sweep_json_holds_the_statistics_of_the_same_videos_and_a_resume_keeps_them(
    many_videos, tmp_path, capsys
):
    out = tmp_path / "sweep"
    first = run_eval("demo", many_videos, out, limit=5, **SWEEP)  # interrupted after 5 videos...
    assert all(r["num_evaluated"] == 5 for r in first["sweep"])
    resumed = run_eval("demo", many_videos, out, **SWEEP)  # ...and resumed
    fresh = run_eval("demo", many_videos, tmp_path / "fresh", **SWEEP)
    assert resumed["sweep"] == fresh["sweep"]  # statistics included
    for row in fresh["sweep"]:
        assert set(row) >= set(STAT_FIELDS)

    # crafted correctness: the figures recomputed from the rows on disk (a resume with nothing
    # to do rewrites sweep.json from them), paired video by video whatever the row order
    wrong = {"none": {0}, "sta_flops_target=0.7": {0, 1}, "random_flops_target=0.7": set(range(7))}
    for folder, bad in wrong.items():
        _craft(out / folder, bad)
    table = run_eval("demo", many_videos, out, **SWEEP)["sweep"]
    assert json.loads((out / "sweep.json").read_text()) == table
    by = {r["dir"]: r for r in table}
    base, sta, rnd = by["none"], by["sta_flops_target=0.7"], by["random_flops_target=0.7"]
    assert base["top1_ci95"] == pytest.approx([100 * x for x in wilson_interval(11, 12)])
    assert base["delta_top1_vs_unpruned"] is None and base["mcnemar_p"] is None
    assert sta["delta_top1_vs_unpruned"] == pytest.approx(-100 / 12)  # b = 0, c = 1
    assert sta["mcnemar_p"] == 1.0 and sta["delta_ci95"] == list(paired_bootstrap_ci(0, 1, 12))
    assert sta["sta_setting"] is None and sta["delta_top1_vs_sta"] is None
    assert rnd["top1"] == pytest.approx(100 * 5 / 12)
    assert rnd["top1_ci95"] == pytest.approx([100 * x for x in wilson_interval(5, 12)])
    assert rnd["delta_top1_vs_unpruned"] == pytest.approx(-100 * 6 / 12)  # b = 0, c = 6
    assert rnd["mcnemar_p"] == pytest.approx(exact_mcnemar(0, 6), rel=1e-12)  # 1/32
    assert rnd["delta_ci95"] == list(paired_bootstrap_ci(0, 6, 12))
    assert rnd["sta_setting"] == "flops_target=0.7"
    assert rnd["delta_top1_vs_sta"] == pytest.approx(-100 * 5 / 12)  # b = 0, c = 5
    assert rnd["mcnemar_p_vs_sta"] == pytest.approx(0.0625)
    assert rnd["delta_ci95_vs_sta"] == list(paired_bootstrap_ci(0, 5, 12))
    # the user-facing function gives the same figures from the same per-video correctness
    right = {k: [i not in bad for i in range(NUM)] for k, bad in wrong.items()}
    mine = compare(right["random_flops_target=0.7"], right["none"])
    assert (mine.delta, list(mine.ci95), mine.mcnemar_p) == (
        rnd["delta_top1_vs_unpruned"],
        rnd["delta_ci95"],
        rnd["mcnemar_p"],
    )
    assert run_eval("demo", many_videos, out, **SWEEP)["sweep"] == table  # again: identical

    # the console table: intervals, differences, p-values, n.s. and what they mean
    args = ["eval", "--model", "demo", "--data", str(many_videos), "--out", str(out), "--views", "1x1"]
    args += ["--workers", "0", "--device", "cpu", "--no-progress", "--batch-size", "4"]
    capsys.readouterr()
    assert main([*args, "--method", "sta", "random", "--flops-target", "0.7"]) == 0
    text = capsys.readouterr().out
    assert "| top-1 % [95% CI] |" in text and "| vs unpruned | vs STA | STA at |" in text
    lo, hi = rnd["top1_ci95"]
    assert f"| 41.67 [{lo:.2f}, {hi:.2f}] |" in text
    assert f"| -8.33 [{sta['delta_ci95'][0]:+.2f}, {sta['delta_ci95'][1]:+.2f}] p=1 n.s. | - | - |" in text
    assert "p=0.0313 |" in text and "p=0.0625 n.s. | flops_target=0.7 |" in text
    assert "Wilson score interval over the videos evaluated" in text
    assert f"{RESAMPLES:,} resamples of the videos" in text and "n.s.: not significant" in text


# --------------------------------------------------------------------------------------------
# stprune demo
# --------------------------------------------------------------------------------------------


def test_the_demo_rows_and_table_carry_the_statistics(capsys):
    from stprune.demo.benchmark import DemoRow, demo_payload, print_demo, run_demo

    rows = run_demo(num_clips=16, targets=[0.5], methods=["sta", "random"], batch_size=8, progress=False)
    base, sta, rnd = rows
    k = round(base.top1 * 16 / 100)
    assert base.top1_ci95 == pytest.approx([100 * x for x in wilson_interval(k, 16)])
    assert base.delta_top1_vs_unpruned is None
    assert sta.delta_top1_vs_unpruned == pytest.approx(sta.top1 - base.top1)
    assert sta.sta_setting is None and rnd.sta_setting == "flops_target=0.5"
    assert rnd.delta_top1_vs_sta == pytest.approx(rnd.top1 - sta.top1)
    payload = json.loads(json.dumps(demo_payload(rows)))
    assert all(set(r) >= set(STAT_FIELDS) for r in payload["results"])

    # printed: the columns, the notes, and a change that is not significant says so
    crafted = [
        DemoRow("none", "unpruned", 1.04, 1.0, 99.8, 50.0, [], top1_ci95=[98.9, 100.0]),
        DemoRow(
            "random", "flops_target=0.7", 0.71, 0.68, 99.4, 70.0, [10, 10, 10],
            top1_ci95=[98.3, 99.8], delta_top1_vs_unpruned=-0.4, delta_ci95=[-1.0, 0.0], mcnemar_p=0.5,
        ),
        DemoRow(
            "random", "flops_target=0.5", 0.50, 0.48, 96.4, 90.0, [17, 17, 17],
            top1_ci95=[94.4, 97.7], delta_top1_vs_unpruned=-3.4, delta_ci95=[-5.0, -2.0], mcnemar_p=1e-5,
        ),
    ]  # fmt: skip
    print_demo(crafted, "demo")
    text = capsys.readouterr().out
    assert "| top-1 95% CI | vs unpruned | vs STA | STA at |" in text
    assert "| 99.4 | 70.0 | [98.30, 99.80] | -0.4 [-1.0, +0.0] p=0.5 n.s. | - | - |" in text
    assert "at 0.68x GFLOPs top-1 99.4% (-0.4 [-1.0, +0.0] p=0.5 n.s.)" in text
    assert "at 0.48x GFLOPs top-1 96.4% (-3.4 [-5.0, -2.0] p<0.0001)" in text
    assert "Wilson score interval over the clips evaluated" in text


def test_the_documented_python_block_prints_what_its_comments_say(capsys):
    """docs/eval.md's block on compare / top1_ci, run as written there."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "eval.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "compare(right_a" in b)
    exec(block, {})  # noqa: S102 - the documented code itself
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("(87.5, 52.91") and ", 97.75" in printed[0]
    assert printed[1:] == ["+25.00 [+0.00, +62.50] p=0.5 n.s. (8 clips, b=2, c=0)", "False", "20.0"]
    for line in printed[1:]:
        assert f"# {line}" in block or line in block
