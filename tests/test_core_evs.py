"""EVS: vLLM's published masks and counts, hand-checked ties, properties, errors.

``tests/data/evs_reference.safetensors`` holds seeded embeddings and the masks vLLM's
``compute_retention_mask`` (``vllm/multimodal/evs.py`` of github.com/vllm-project/vllm at
926c71f6f25f8fe0a71ba4b168205e64bef24a36) returned for them, and a table of its
``compute_retained_tokens_count``. Written on 2026-12-02 on the 2-core x86_64 CPU sandbox, torch
2.13.0+cpu, by ``benchmarks/make_llm_pruning_reference.py`` (its docstring has the command).
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

from stprune.core.evs import evs_dissimilarity, evs_retained_count, evs_retention_mask
from stprune.errors import InputError, SettingError, SettingTypeError

DATA = Path(__file__).parent / "data" / "evs_reference.safetensors"
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


@cache
def reference() -> tuple[dict[str, torch.Tensor], dict[str, str], list[dict]]:
    assert DATA.exists(), f"missing {DATA}: regenerate it with benchmarks/make_llm_pruning_reference.py"
    with safe_open(str(DATA), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        meta = f.metadata()
    return tensors, meta, json.loads(meta["cases"])


def reference_inputs() -> list[str]:
    return sorted({case["input"] for case in reference()[2]})


def test_reference_file_records_its_source():
    _, meta, cases = reference()
    assert meta["source"] == "https://github.com/vllm-project/vllm"
    assert meta["file"] == "vllm/multimodal/evs.py"
    assert meta["commit"] == "926c71f6f25f8fe0a71ba4b168205e64bef24a36"
    assert meta["generated"] == "2026-12-02" and meta["torch"].startswith("2.13.0")
    assert DATA.stat().st_size < 1_000_000
    assert {c["frames"] for c in cases} == {1, 2, 4, 7}
    assert {c["q"] for c in cases} == {0.0, 0.3, 0.5, 0.75, 0.9}
    grids = {(c["height"], c["width"], c["merge"]) for c in cases}
    assert grids >= {(4, 4, 1), (4, 6, 2), (8, 8, 2), (6, 10, 2)}


@pytest.mark.parametrize("name", reference_inputs())
def test_matches_vllm_mask(name):
    tensors, _, cases = reference()
    cases = [c for c in cases if c["input"] == name]
    assert cases
    for case in cases:
        x = tensors[f"input.{name}"].to(DTYPES[case["dtype"]])
        n = case["tokens_per_frame"]
        assert n == (case["height"] // case["merge"]) * (case["width"] // case["merge"])
        retain = evs_retained_count(n, case["frames"], case["q"])
        assert retain == case["retain"], case
        mask = evs_retention_mask(x, n, retain)
        assert mask.dtype == torch.bool and torch.equal(mask, tensors[f"{case['key']}.mask"]), case


def test_retained_count_is_vllms():
    tensors, _, _ = reference()
    qs, sizes, frames, table = (
        tensors[f"count_table.{k}"] for k in ("q", "tokens_per_frame", "num_frames", "retained")
    )
    for a, q in enumerate(qs.tolist()):
        for b, n in enumerate(sizes.tolist()):
            for c, t in enumerate(frames.tolist()):
                assert evs_retained_count(n, t, q) == table[a, b, c], (n, t, q)
    assert evs_retained_count(1, 10, 0.9) == 1  # int(10 * 0.09999999999999998) = 0: the floor
    assert evs_retained_count(196, 8, 0.75) == 392 and evs_retained_count(196, 8, 0.0) == 1568


# --- by hand --------------------------------------------------------------------------------------


def test_ties_go_to_the_earlier_token():
    # frames v0, v1, v0 (every token the frame's vector): all 10 later dissimilarities are equal
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 1, 8, generator=g, dtype=torch.float64)
    x = v[[0, 1, 0]].expand(3, 5, 8).reshape(15, 8)
    d = evs_dissimilarity(x, 5)
    assert torch.all(d[:5] == 255) and torch.unique(d[5:]).numel() == 1 and d[5] > 0
    mask = evs_retention_mask(x, 5, 8)
    assert mask.nonzero().flatten().tolist() == list(range(8))


def test_keeps_the_most_changed_tokens():
    x = torch.ones(3, 4, 2, dtype=torch.float64)
    x[1, 2] = torch.tensor([1.0, -1.0])  # orthogonal to frame 0's token: dissimilarity 1
    x[2, 0] = torch.tensor([-1.0, -1.0])  # opposite to frame 1's token: dissimilarity 2
    x[2, 2] = torch.tensor([1.0, 1.0])  # back again: dissimilarity 1 (tie with x[1, 2])
    mask = evs_retention_mask(x.reshape(12, 2), 4, 6)
    assert mask.nonzero().flatten().tolist() == [0, 1, 2, 3, 6, 8]
    mask = evs_retention_mask(x.reshape(12, 2), 4, 7)
    assert mask.nonzero().flatten().tolist() == [0, 1, 2, 3, 6, 8, 10]


def test_one_frame_keeps_everything():
    x = torch.randn(6, 4)
    assert evs_retention_mask(x, 6, 6).all()
    assert evs_retained_count(6, 1, 0.9) == 6


# --- properties -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    frames=st.integers(1, 9),
    n=st.integers(1, 12),
    c=st.integers(1, 6),
    q=st.floats(0, 1, exclude_max=True),
    seed=st.integers(0, 2**31 - 1),
)
def test_mask_properties(frames, n, c, q, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(frames * n, c, generator=g, dtype=torch.float64)
    retain = evs_retained_count(n, frames, q)
    assert n <= retain <= frames * n
    mask = evs_retention_mask(x, n, retain)
    assert mask.shape == (frames * n,) and int(mask.sum()) == retain
    assert mask[:n].all()  # the first frame
    if frames > 1:
        # independent score: 1 - cos to the same token one frame earlier
        y = x.view(frames, n, c)
        d = (1 - F.cosine_similarity(y[1:], y[:-1], dim=-1)).flatten()
        later = mask[n:]
        if later.any() and (~later).any():
            assert d[later].min() >= d[~later].max() - 1e-12


# --- errors ---------------------------------------------------------------------------------------


def test_errors_name_the_value_and_range():
    x = torch.randn(4 * 6, 3)
    with pytest.raises(SettingError, match=r"retain must be in \[6, 24\].*got 5"):
        evs_retention_mask(x, 6, 5)
    with pytest.raises(SettingError, match=r"retain must be in \[6, 24\].*got 25"):
        evs_retention_mask(x, 6, 25)
    with pytest.raises(SettingTypeError, match="retain must be an int; got True"):
        evs_retention_mask(x, 6, True)
    with pytest.raises(InputError, match=r"got shape \(24,\)"):
        evs_retention_mask(x[:, 0], 6, 6)
    with pytest.raises(InputError, match="x has 24 tokens, not a positive multiple of tokens_per_frame=5"):
        evs_retention_mask(x, 5, 5)
    with pytest.raises(InputError, match="x has 0 tokens"):
        evs_retention_mask(x[:0], 6, 6)
    with pytest.raises(InputError, match="floating point; got dtype torch.int64"):
        evs_dissimilarity(torch.ones(12, 2, dtype=torch.int64), 6)
    with pytest.raises(SettingError, match="tokens_per_frame must be >= 1; got 0"):
        evs_retention_mask(x, 0, 6)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(SettingError, match=r"pruning_rate must be in \[0, 1\); got"):
            evs_retained_count(16, 4, bad)
    with pytest.raises(SettingTypeError, match="pruning_rate must be a real number; got None"):
        evs_retained_count(16, 4, None)
    with pytest.raises(SettingError, match="num_frames must be >= 1; got 0"):
        evs_retained_count(16, 0, 0.5)
