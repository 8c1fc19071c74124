"""Schedules: the paper's, explicit ones, per-stage r, token plans and their errors."""

from __future__ import annotations

import pytest

from stprune.core.schedule import Stage, normalize_schedule, paper_schedule, plan_tokens


def test_paper_schedule_depth_12():
    assert paper_schedule(12, 8, 64) == [
        Stage(0, 8, 64, False),
        Stage(4, 4, 64, True),
        Stage(8, 2, 64, False),
    ]
    assert paper_schedule(24, 8, [1, 2, 3]) == [Stage(0, 8, 1), Stage(8, 4, 2, True), Stage(16, 2, 3)]


def test_plan_videomae_b_r64_by_hand():
    # 8 slots x 196: stage 0 keeps 8 x (196-64) = 1056; stage 1: groups of 264 -> 4 x 200 = 800;
    # stage 2: groups of 400 -> 2 x 336 = 672
    plan = plan_tokens(paper_schedule(12, 8, 64), 12, 8, 196)
    assert plan.stage_group_sizes == [196, 264, 400]
    assert plan.tokens_per_block == [1568] + [1056] * 4 + [800] * 4 + [672] * 3
    assert plan.final_tokens == 672


def test_plan_with_protected_token():
    plan = plan_tokens([Stage(1, 4, 2)], 3, 4, 5, protected=1)
    assert plan.tokens_per_block == [21, 21, 13]


def test_explicit_schedules_tuples_dicts_and_r_fill():
    a = normalize_schedule([(0, 8, 10), (5, 2, 4, True)], 12, 8, None)
    assert a == [Stage(0, 8, 10), Stage(5, 2, 4, True)]
    b = normalize_schedule(
        [{"after_block": 1, "groups": 4}, {"after_block": 3, "groups": 2, "reverse": True}], 6, 8, [7, 9]
    )
    assert b == [Stage(1, 4, 7), Stage(3, 2, 9, True)]
    c = normalize_schedule([(0, 8), (2, 4)], 6, 8, 3)
    assert [s.r for s in c] == [3, 3]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(schedule="paper", depth=12, num_slots=3, r=4), r"T0=3"),
        (dict(schedule="paper", depth=2, num_slots=8, r=4), r"depth >= 3 .*; got 2"),
        (dict(schedule="paper", depth=12, num_slots=8, r=-1), r"r must be >= 0 .*; got -1"),
        (dict(schedule="paper", depth=12, num_slots=8, r=[1, 2]), r"one value per stage \(3\); got 2"),
        (dict(schedule="fast", depth=12, num_slots=8, r=4), r"unknown schedule 'fast'"),
        (dict(schedule=[(0, 8, 1), (0, 4, 1)], depth=12, num_slots=8, r=None), r"greater than the previous"),
        (dict(schedule=[(12, 8, 1)], depth=12, num_slots=8, r=None), r"after_block=12 outside \[0, 11\]"),
        (dict(schedule=[(0, 8, 1)], depth=12, num_slots=8, r=2), r"r=1 and r=2"),
        (dict(schedule=[(0, 0, 1)], depth=12, num_slots=8, r=None), r"groups must be >= 1; got 0"),
    ],
)
def test_normalize_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        normalize_schedule(**kwargs)


def test_r_type_error():
    with pytest.raises(TypeError, match="r must be an int"):
        paper_schedule(12, 8, 2.5)


def test_plan_errors_name_value_and_range():
    with pytest.raises(ValueError, match=r"r=99 is too large for groups of 196 tokens .* 0 <= r <= 98"):
        plan_tokens(paper_schedule(12, 8, 99), 12, 8, 196)
    # stage 1 after r=98: groups of 2 x 98 = 196, |A| = 98 is fine; r=97 -> stage 2 groups of 2x(2x99-97)
    plan_tokens(paper_schedule(12, 8, 98), 12, 8, 196)
    with pytest.raises(ValueError, match=r"groups=3 must divide the temporal slot count T0 \(8\)"):
        plan_tokens([Stage(0, 3, 1)], 12, 8, 196)
    with pytest.raises(ValueError, match=r"groups=4 must divide the previous stage group count \(2\)"):
        plan_tokens([Stage(0, 2, 1), Stage(1, 4, 1)], 12, 8, 196)
    with pytest.raises(ValueError, match="no r"):
        plan_tokens([Stage(0, 8, None)], 12, 8, 196)


def test_too_large_r_names_the_largest_r_the_whole_schedule_accepts():
    # 8 slots x 49 tokens, depth 6: stage 0 alone would allow r <= 25, but r=25 leaves stage 1
    # groups of 2 x 24 = 48 tokens (r <= 24); r=24 passes every stage
    stages = paper_schedule(6, 8, 1000)
    with pytest.raises(ValueError, match=r"r=1000 is too large .*same r at all 3 stages.* 0 <= r <= 24$"):
        plan_tokens(stages, 6, 8, 49)
    with pytest.raises(ValueError, match=r"stage 1 .*r=25 is too large .* 0 <= r <= 24$"):
        plan_tokens(paper_schedule(6, 8, 25), 6, 8, 49)
    plan_tokens(paper_schedule(6, 8, 24), 6, 8, 49)
    # per-stage r: the stage's own bound, given the stages before it
    with pytest.raises(
        ValueError, match=r"stage 1 \(after block 2\): r=48 .*allowed at this stage: 0 <= r <= 47"
    ):
        plan_tokens(paper_schedule(6, 8, [2, 48, 2]), 6, 8, 49)


def test_r_given_as_text_is_a_type_error():
    from stprune.errors import SettingTypeError

    with pytest.raises(SettingTypeError, match=r"r must be an int .*got '8' of type str"):
        paper_schedule(12, 8, "8")
    with pytest.raises(SettingTypeError, match=r"stage 0: groups must be an int; got 2.5"):
        normalize_schedule([(0, 2.5, 1)], 12, 8, None)
    with pytest.raises(SettingTypeError, match=r"r must be an int .*got '3'"):
        normalize_schedule([{"after_block": 0, "groups": 8, "r": "3"}], 12, 8, None)


def test_messages_count_in_the_singular_and_plural():
    with pytest.raises(ValueError, match=r"\(4 tokens in 1 group\)") as err:
        plan_tokens([Stage(0, 1, 3)], 2, 1, 4)
    assert "1 groups" not in str(err.value)
    with pytest.raises(ValueError, match=r"one value per stage \(3\); got 1 value: \[1\]"):
        paper_schedule(12, 8, [1])


def test_errors_are_stprune_errors():
    from stprune.errors import SettingError

    for kwargs in (
        dict(schedule="fast", depth=12, num_slots=8, r=4),
        dict(schedule="paper", depth=2, num_slots=8, r=4),
    ):
        with pytest.raises(SettingError):
            normalize_schedule(**kwargs)
