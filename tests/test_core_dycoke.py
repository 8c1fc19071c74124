"""DyCoke's TTM: the authors' published function's outputs, hand-checked quirks, properties, errors.

``tests/data/dycoke_ttm_reference.safetensors`` holds seeded inputs and what the published
``dycole_ttm`` (github.com/KD-TAO/DyCoke, ``llava/model/llava_arch.py``) returned for them, as
the indices of its output rows in the input (``idx``; ``unique`` false where bitwise repeated
frames make several indices possible, then only ``x[idx]`` is compared). Written on 2026-12-02
on the 2-core x86_64 CPU sandbox, torch 2.13.0+cpu, by ``benchmarks/make_llm_pruning_reference.py``
(its docstring has the exact command and the commits: DyCoke dd74634, the function as of 35cc532,
and the first public version 26dc6f4 for ``legacy_pair_index``). For F <= 4 frames the
published function raises; those references come from it with an empty window list allowed
(see the generator), and are marked ``published_raises``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from stprune.core.dycoke import dycoke_frame_roles, dycoke_keep_from_ratio, dycoke_kept_count, dycoke_ttm_keep
from stprune.errors import InputError, SettingError, SettingTypeError

DATA = Path(__file__).parent / "data" / "dycoke_ttm_reference.safetensors"
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


@cache
def reference() -> tuple[dict[str, torch.Tensor], dict[str, str], list[dict]]:
    assert DATA.exists(), f"missing {DATA}: regenerate it with benchmarks/make_llm_pruning_reference.py"
    with safe_open(str(DATA), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        meta = f.metadata()
    return tensors, meta, json.loads(meta["cases"])


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def reference_inputs() -> list[str]:
    return sorted({case["input"] for case in reference()[2]})


def test_reference_file_records_its_source():
    tensors, meta, cases = reference()
    assert meta["source"] == "https://github.com/KD-TAO/DyCoke"
    assert meta["function"] == "dycole_ttm" and meta["file"] == "llava/model/llava_arch.py"
    assert meta["commit"] == "dd7463498203479d0ff6f2d29c4e72928c0af244"
    assert meta["legacy_commit"] == "26dc6f4ffa825b9ee4d8a2f11dee9a9ebe31a294"
    assert meta["generated"] == "2026-12-02" and meta["torch"].startswith("2.13.0")
    assert DATA.stat().st_size < 1_000_000
    # what the file covers
    assert {c["frames"] for c in cases} == {2, 3, 4, 5, 8, 9, 16}
    assert {c["tokens_per_frame"] for c in cases} == {16, 196}
    assert {c["merging_ratio"] for c in cases} == {0.7, 0.5, 0.3}
    assert {c["dtype"] for c in cases} == {"float64", "float32", "bfloat16"}
    assert any(c["legacy"] for c in cases) and any(not c["unique"] for c in cases)


@pytest.mark.parametrize("name", reference_inputs())
def test_matches_published_function(name):
    tensors, _, cases = reference()
    cases = [c for c in cases if c["input"] == name]
    assert cases
    for case in cases:
        x = tensors[f"input.{name}"].to(DTYPES[case["dtype"]])
        n = case["tokens_per_frame"]
        keep = dycoke_keep_from_ratio(case["merging_ratio"], n)
        idx = dycoke_ttm_keep(x, n, keep, legacy_pair_index=case["legacy"])
        ref = tensors[f"{case['key']}.idx"].long()
        label = {k: case[k] for k in ("frames", "tokens_per_frame", "dtype", "merging_ratio", "legacy")}
        assert idx.dtype == torch.int64 and idx.shape == (case["length"],) == ref.shape, label
        assert len(idx) == dycoke_kept_count(case["frames"], n, keep), label
        assert torch.equal(bits(x[idx]), bits(x[ref])), label  # the published output, bitwise
        if case["unique"]:
            assert torch.equal(idx, ref), label


def test_published_function_raises_for_four_frames_or_fewer():
    cases = reference()[2]
    assert all(bool(c["published_raises"]) == (c["frames"] <= 4) for c in cases)
    messages = {c["published_raises"] for c in cases if c["frames"] <= 4}
    assert messages == {"RuntimeError: stack expects a non-empty TensorList"}


def test_keep_count_is_the_published_float_expression():
    tensors, _, _ = reference()
    ratios, sizes, keep = (tensors[f"keep_table.{k}"] for k in ("ratios", "sizes", "keep"))
    for a, ratio in enumerate(ratios.tolist()):
        for b, n in enumerate(sizes.tolist()):
            assert dycoke_keep_from_ratio(ratio, n) == keep[a, b], (ratio, n)
    assert dycoke_keep_from_ratio(0.7, 196) == 58  # (1 - 0.7) * 196 = 58.800000000000004
    assert dycoke_keep_from_ratio(0.3, 196) == 137
    assert dycoke_keep_from_ratio(0.9, 10) == 0  # 1 - 0.9 = 0.09999999999999998: not 1
    assert dycoke_keep_from_ratio(0, 7) == 7 and dycoke_keep_from_ratio(1, 7) == 0


# --- the quirks, by hand -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames, full, pruned, dropped",
    [
        (2, [0], [1], []),
        (3, [0], [1], [2]),
        (4, [0, 2], [1, 3], []),  # no window for F <= 4
        (5, [0], [1, 2, 3], [4]),  # an odd frame count drops the last frame
        (6, [0, 4], [1, 2, 3, 5], []),
        (8, [0, 4, 6], [1, 2, 3, 5, 7], []),  # range(0, F - 4, 4): the window at 4 is skipped
        (9, [0, 4], [1, 2, 3, 5, 6, 7], [8]),
        (16, [0, 4, 8, 12, 14], [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 15], []),
    ],
)
def test_frame_roles(frames, full, pruned, dropped):
    assert dycoke_frame_roles(frames) == (full, pruned, dropped)
    assert dycoke_kept_count(frames, 10, 3) == 10 * len(full) + 3 * len(pruned)


def ranked_pair(n: int, c: int, order: list[int], seed: int = 0) -> torch.Tensor:
    """(2n, c): frame 0 random, frame 1 whose token order[r] has the r-th smallest similarity.

    Token t of frame 1 is a[t] plus a vector orthogonal to a[t] of norm s * |a[t]|, so its
    cosine to a[t] is 1 / sqrt(1 + s^2): s falls with the rank.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, c, generator=g, dtype=torch.float64)
    u = torch.randn(n, c, generator=g, dtype=torch.float64)
    u = u - (u * a).sum(1, keepdim=True) / (a * a).sum(1, keepdim=True) * a
    u = u / u.norm(dim=1, keepdim=True) * a.norm(dim=1, keepdim=True)
    b = torch.empty_like(a)
    for rank, token in enumerate(order):
        b[token] = a[token] + (n - rank) * 0.2 * u[token]
    return torch.cat([a, b])


def test_pruned_tokens_come_in_similarity_order_not_spatial_order():
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    x = ranked_pair(8, 64, order)
    sim = F.cosine_similarity(x[:8], x[8:], dim=1)
    assert sim.argsort().tolist() == order  # the construction worked
    assert dycoke_ttm_keep(x, 8, 3).tolist() == list(range(8)) + [8 + t for t in order[:3]]


def test_pair_similarity_current_versus_first_public_version():
    # pair 0 ranks its odd frame's tokens one way, pair 1 another way
    first, second = [6, 1, 4, 0, 2, 7, 3, 5], [3, 0, 7, 5, 1, 6, 2, 4]
    x = torch.cat([ranked_pair(8, 64, first, seed=1), ranked_pair(8, 64, second, seed=2)])
    whole = list(range(8))
    assert dycoke_ttm_keep(x, 8, 2).tolist() == whole + [8 + t for t in first[:2]] + [
        16 + t for t in whole
    ] + [24 + t for t in second[:2]]
    # first public version: pair j uses pair j - 1's similarity, pair 0 the last pair's
    assert dycoke_ttm_keep(x, 8, 2, legacy_pair_index=True).tolist() == whole + [
        8 + t for t in second[:2]
    ] + [16 + t for t in whole] + [24 + t for t in first[:2]]


def test_window_prunes_frame_two_against_frame_zero_from_the_input():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6 * 4, 16, generator=g, dtype=torch.float64)
    order = [2, 0, 3, 1]
    pair = ranked_pair(4, 16, order, seed=4)  # frames 0 and 2 of the clip
    x[0:4], x[8:12] = pair[:4], pair[4:]
    idx = dycoke_ttm_keep(x, 4, 2).tolist()
    assert idx[:4] == [0, 1, 2, 3]  # frame 0 whole
    assert idx[6:8] == [8 + t for t in order[:2]]  # frame 2 pruned against frame 0
    assert idx[10:14] == [16, 17, 18, 19]  # frame 4 whole
    assert len(idx) == dycoke_kept_count(6, 4, 2) == 16


def test_keep_zero_and_keep_all():
    x = torch.randn(9 * 5, 3, dtype=torch.float64)
    full, pruned, dropped = dycoke_frame_roles(9)
    assert dycoke_ttm_keep(x, 5, 0).tolist() == [f * 5 + t for f in full for t in range(5)]
    assert sorted(dycoke_ttm_keep(x, 5, 5).tolist()) == list(range(8 * 5))  # frame 8 dropped


def test_budget_planning_without_data():
    frames, n, budget = 32, 196, 2000
    full, pruned, _ = dycoke_frame_roles(frames)
    counts = [dycoke_kept_count(frames, n, k) for k in range(n + 1)]
    assert counts == sorted(counts) and counts[0] == len(full) * n
    keep = max(k for k in range(n + 1) if counts[k] <= budget)
    assert dycoke_kept_count(frames, n, keep) <= budget < dycoke_kept_count(frames, n, keep + 1)
    assert dycoke_kept_count(frames, n, 0) > 1500  # a budget of 1500 is unreachable


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(2, 21),
    n=st.integers(1, 12),
    c=st.integers(1, 5),
    frac=st.floats(0, 1),
    legacy=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_selection_properties(frames, n, c, frac, legacy, seed):
    keep = round(frac * n)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames * n, c, generator=g, dtype=torch.float64)
    idx = dycoke_ttm_keep(x, n, keep, legacy_pair_index=legacy)
    full, pruned, dropped = dycoke_frame_roles(frames)
    assert sorted(full + pruned + dropped) == list(range(frames))
    assert len(idx) == dycoke_kept_count(frames, n, keep) == len(full) * n + len(pruned) * keep
    frame_of = (idx // n).tolist()
    assert frame_of == sorted(frame_of)  # frames in order
    pairs = frames // 2
    window_frames = {i + 2 for i in range(0, frames - 4, 4)}
    for f in range(frames):
        got = idx[idx // n == f] - f * n
        if f in full:
            assert got.tolist() == list(range(n))  # whole, spatial order
        elif f in dropped:
            assert got.numel() == 0
        else:
            assert got.numel() == keep and got.unique().numel() == keep
            # the kept tokens are the least similar to the rule's reference frame
            if f in window_frames:
                a, b = f - 2, f
            else:
                j = (f // 2 - 1) % pairs if legacy else f // 2
                a, b = 2 * j, 2 * j + 1
            sim = F.cosine_similarity(x[a * n : (a + 1) * n], x[b * n : (b + 1) * n], dim=1)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[got] = True
            if 0 < keep < n:
                assert sim[mask].max() <= sim[~mask].min() + 1e-12
            assert torch.all(sim[got][1:] >= sim[got][:-1] - 1e-12)  # ascending similarity


# --- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_value_and_range():
    x = torch.randn(4 * 6, 3)
    with pytest.raises(SettingError, match=r"keep must be in \[0, 6\]; got 7"):
        dycoke_ttm_keep(x, 6, 7)
    with pytest.raises(SettingError, match=r"keep must be in \[0, 6\]; got -1"):
        dycoke_ttm_keep(x, 6, -1)
    with pytest.raises(SettingTypeError, match="keep must be an int; got 2.0"):
        dycoke_ttm_keep(x, 6, 2.0)
    with pytest.raises(SettingError, match="tokens_per_frame must be >= 1; got 0"):
        dycoke_ttm_keep(x, 0, 0)
    with pytest.raises(InputError, match=r"got shape \(1, 24, 3\)"):
        dycoke_ttm_keep(x[None], 6, 2)
    with pytest.raises(InputError, match="x has 24 tokens, not a multiple of tokens_per_frame=5"):
        dycoke_ttm_keep(x, 5, 2)
    with pytest.raises(InputError, match="at least 2 frames.*got 1"):
        dycoke_ttm_keep(x, 24, 2)
    with pytest.raises(InputError, match="floating point; got dtype torch.int64"):
        dycoke_ttm_keep(torch.ones(12, 2, dtype=torch.int64), 6, 2)
    with pytest.raises(InputError, match="at least 2 frames.*got 1"):
        dycoke_frame_roles(1)
    with pytest.raises(SettingTypeError, match="num_frames must be an int"):
        dycoke_frame_roles(4.0)
    with pytest.raises(SettingError, match=r"keep must be in \[0, 10\]; got 11"):
        dycoke_kept_count(8, 10, 11)
    for bad in (-0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(SettingError, match=r"merging_ratio must be in \[0, 1\]; got"):
            dycoke_keep_from_ratio(bad, 196)
    with pytest.raises(SettingTypeError, match="merging_ratio must be a real number; got '0.7'"):
        dycoke_keep_from_ratio("0.7", 196)
    with pytest.raises(SettingError, match="tokens_per_frame must be >= 1; got 0"):
        dycoke_keep_from_ratio(0.7, 0)
