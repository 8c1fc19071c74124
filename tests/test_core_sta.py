"""STA selection: hand-checked cases, an independent loop implementation of the spec, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stprune.core.sta import first_group_keep, semantic_importance, sta_keep_indices, sta_scoring_macs


def naive_sta(x: torch.Tensor, keys: torch.Tensor, groups: int, r: int, reverse: bool) -> list[list[int]]:
    """Literal, per-sample, per-token transcription of sta-algorithm.md (slow, for tests)."""
    out = []
    for b in range(x.shape[0]):
        length = x.shape[1]
        n = length // groups
        k = [keys[b, i] / keys[b, i].norm() for i in range(length)]
        imp_raw = [x[b, i].abs().sum().item() for i in range(length)]
        kept: dict[int, list[int]] = {}
        order = list(range(groups))[::-1] if reverse else list(range(groups))
        g0 = order[0]
        base = g0 * n
        a_pos = list(range(0, n, 2))
        b_pos = list(range(1, n, 2))
        m = {a: max(float(k[base + a] @ k[base + bb]) for bb in b_pos) for a in a_pos}
        a_sorted = sorted(a_pos, key=lambda a: m[a])
        kept[g0] = b_pos + a_sorted[: len(a_pos) - r]
        prev_tokens = list(range(n))  # all of g0, dropped included
        prev_mass = [1.0] * n
        prev_group = g0
        for t in range(1, groups):
            g = order[t]
            lo = min(imp_raw[g * n : (g + 1) * n])
            hi = max(imp_raw[g * n : (g + 1) * n])
            acc = [0.0] * n
            for jj, j in enumerate(prev_tokens):
                sims = [float(k[g * n + i] @ k[prev_group * n + j]) for i in range(n)]
                mx = max(sims)
                e = [math.exp(s - mx) for s in sims]
                z = sum(e)
                for i in range(n):
                    acc[i] += e[i] / z * prev_mass[jj]
            score = [acc[i] * (1 - (imp_raw[g * n + i] - lo) / (hi - lo)) for i in range(n)]
            keep = sorted(range(n), key=lambda i: score[i])[: n - r]
            kept[g] = keep
            tot = sum(acc[i] for i in keep)
            prev_tokens, prev_mass, prev_group = keep, [acc[i] / tot for i in keep], g
        out.append([g * n + i for g in range(groups) for i in kept[g]])
    return out


def test_first_group_hand_example():
    # 5 tokens: A = {0, 2, 4}, B = {1, 3}. Unit keys at angles; m_a = max cosine to B.
    ang = torch.tensor([0.0, 0.1, 1.0, 3.0, 2.0], dtype=torch.float64)
    k = torch.stack([ang.cos(), ang.sin()], -1)[None]
    # m_0 = cos(0.1) ~ .995, m_2 = cos(0.9) ~ .62, m_4 = cos(1.0) ~ .54 -> ascending: 4, 2, 0
    assert first_group_keep(k, 0).tolist() == [[1, 3, 4, 2, 0]]
    assert first_group_keep(k, 1).tolist() == [[1, 3, 4, 2]]
    assert first_group_keep(k, 3).tolist() == [[1, 3]]


def test_semantic_importance_minmax_and_degenerate_group():
    x = torch.tensor([[[1.0, -1.0], [0.5, 0.0], [3.0, 0.0], [2.0, 2.0]]])
    imp = semantic_importance(x, 2)
    assert torch.allclose(imp, torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    flat = semantic_importance(torch.ones(1, 4, 3), 2)
    assert torch.equal(flat, torch.zeros(1, 2, 2))  # all-equal group: 0, not NaN


CONFIGS = [
    (8, 7, 3, False),
    (8, 7, 3, True),
    (4, 16, 8, True),
    (2, 30, 5, False),
    (3, 9, 5, False),
    (1, 6, 2, False),
]


@pytest.mark.parametrize("groups,n,r,reverse", CONFIGS)
def test_matches_literal_spec(groups, n, r, reverse):
    g = torch.Generator().manual_seed(groups * 100 + n + r)
    x = torch.randn(3, groups * n, 5, generator=g, dtype=torch.float64)
    keys = torch.randn(3, groups * n, 4, generator=g, dtype=torch.float64)
    got = sta_keep_indices(x, keys, groups, r, reverse)
    assert got.tolist() == naive_sta(x, keys, groups, r, reverse)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.integers(1, 6),
    n=st.integers(2, 20),
    frac=st.floats(0, 1),
    reverse=st.booleans(),
    batch=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_properties(groups, n, frac, reverse, batch, seed):
    r = round(frac * ((n + 1) // 2))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, groups * n, 6, generator=g, dtype=torch.float64)
    keys = torch.randn(batch, groups * n, 3, generator=g, dtype=torch.float64)
    idx = sta_keep_indices(x, keys, groups, r, reverse)
    assert idx.shape == (batch, groups * (n - r))
    assert idx.dtype == torch.int64
    per = idx.view(batch, groups, n - r)
    for gi in range(groups):
        block = per[:, gi]
        assert ((block >= gi * n) & (block < (gi + 1) * n)).all()  # groups stay in temporal order
        for b in range(batch):
            assert len(set(block[b].tolist())) == n - r  # no duplicates
    # each sample is pruned independently of the others in the batch
    for b in range(batch):
        alone = sta_keep_indices(x[b : b + 1], keys[b : b + 1], groups, r, reverse)
        assert torch.equal(alone[0], idx[b])


def test_r_zero_is_identity():
    x, keys = torch.randn(2, 12, 4), torch.randn(2, 12, 3)
    assert torch.equal(sta_keep_indices(x, keys, 3, 0), torch.arange(12).expand(2, -1))


def test_half_precision_inputs_give_valid_selection():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4 * 10, 8, generator=g)
    keys = torch.randn(2, 4 * 10, 4, generator=g)
    ref = sta_keep_indices(x, keys, 4, 3)
    half = sta_keep_indices(x.bfloat16(), keys.bfloat16(), 4, 3)
    assert half.shape == ref.shape
    # scoring runs in float32 even for bf16 activations: same group structure, mostly same tokens
    agree = (half.sort(1).values == ref.sort(1).values).float().mean()
    assert agree > 0.8


def test_scoring_macs_counts_the_products():
    from torch.utils.flop_counter import FlopCounterMode

    x, keys = torch.randn(1, 4 * 9, 8), torch.randn(1, 4 * 9, 5)
    with FlopCounterMode(display=False) as fc:
        sta_keep_indices(x, keys, 4, 2)
    assert fc.get_total_flops() == 2 * sta_scoring_macs(9, 4, 2, 5)


def test_scoring_ignores_autocast():
    """Autocast must not lower STA's float32 scoring (it used to fail on a dtype mismatch)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 4 * 16, 8, generator=gen)
    keys = torch.randn(2, 4 * 16, 8, generator=gen)
    plain = sta_keep_indices(x, keys, 4, 5)
    plain_bf16 = sta_keep_indices(x.bfloat16(), keys.bfloat16(), 4, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(sta_keep_indices(x, keys, 4, 5), plain)
        assert torch.equal(sta_keep_indices(x.bfloat16(), keys.bfloat16(), 4, 5), plain_bf16)


def _previous_keep_indices(x, keys, groups, r, reverse):
    """``sta_keep_indices`` as it was before its operator count was cut (2026-12-02), verbatim
    but for the names: flipped key copies for a reversed stage, matmul, a loop over visiting steps."""
    b, length, _ = x.shape
    n = length // groups
    device = x.device
    work = torch.promote_types(keys.dtype, torch.float32)
    k = keys.to(work)
    k = (k / k.norm(dim=-1, keepdim=True)).view(b, groups, n, -1)
    importance = semantic_importance(x.to(work), groups)

    def first(kg):
        a_keys, b_keys = kg[:, 0::2], kg[:, 1::2]
        m = (a_keys @ b_keys.transpose(1, 2)).amax(-1)
        order = m.argsort(dim=-1)
        kept_a = 2 * order[:, : a_keys.shape[1] - r]
        odd = torch.arange(1, n, 2, device=kg.device).expand(b, -1)
        return torch.cat([odd, kept_a], dim=1)

    order = list(range(groups - 1, -1, -1)) if reverse else list(range(groups))
    kept = [torch.empty(0)] * groups
    kept[order[0]] = first(k[:, order[0]])
    if groups > 1:
        cur, prev = (k[:, :-1].flip(1), k[:, 1:].flip(1)) if reverse else (k[:, 1:], k[:, :-1])
        p = (cur @ prev.transpose(-1, -2)).softmax(dim=2)
        w = torch.ones(b, n, 1, dtype=work, device=device)
        for t in range(1, groups):
            g = order[t]
            acc = (p[:, t - 1] @ w).squeeze(-1)
            score = acc * (1.0 - importance[:, g])
            keep = score.topk(n - r, dim=1, largest=False).indices
            kept[g] = keep
            kept_acc = acc.gather(1, keep)
            kept_acc = kept_acc / kept_acc.sum(1, keepdim=True)
            w = torch.zeros(b, n, dtype=work, device=device).scatter(1, keep, kept_acc).unsqueeze(-1)
    return torch.cat([kept[g] + g * n for g in range(groups)], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_equals_the_previous_implementation(dtype):
    """The operator-count cut changed no selected token: the same indices, in the same order, on
    random inputs (every group count of the paper schedule, both visiting orders, batches), and on
    VideoMAE-B's stage shapes at r = 40."""
    gen = torch.Generator().manual_seed(2026)
    shapes = [(g, n, r) for g in (1, 2, 3, 4, 8) for n, r in ((2, 1), (7, 3), (16, 5))]
    cases = [(g, n, r, rev, b) for g, n, r in shapes for rev in (False, True) for b in (1, 3)]
    cases += [(8, 196, 40, False, 1), (4, 312, 40, True, 1), (2, 544, 40, False, 2)]
    for groups, n, r, reverse, batch in cases:
        for _ in range(3):
            x = torch.randn(batch, groups * n, 12, generator=gen).to(dtype)
            keys = torch.randn(batch, groups * n, 8, generator=gen).to(dtype)
            got = sta_keep_indices(x, keys, groups, r, reverse)
            want = _previous_keep_indices(x, keys, groups, r, reverse)
            assert torch.equal(got, want), (groups, n, r, reverse)


def test_sta_share_script_quick_mode():
    """benchmarks/sta_share.py runs end to end and prints the label's share of the forward."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "benchmarks/sta_share.py", "--quick", "--compare-previous"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "round 1, previous:" in proc.stdout and "round 1, current:" in proc.stdout
    share = float(proc.stdout.strip().splitlines()[-1].removeprefix("share="))
    assert 0 < share < 1
