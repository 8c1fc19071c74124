"""vid-TLDR: the authors' published functions' outputs, an independent reference forward, costs, refusals.

``tests/data/vid_tldr_reference.safetensors`` holds seeded inputs and what the published
``get_objective_score`` and ``vidTLDR`` (github.com/mlvlab/vid-TLDR @ a25051d,
``multi_modality/utils/vid_TLDR.py``) returned for them: saliency scores; chains of merging calls
(outputs, sizes and the merge plan, float32 as published and float64 with the working dtype of its
``merge`` set to float64, since float64 inputs raise there); and a tiny ``VideoMAEModel`` run block
by block the way the authors' ViT block runs (attention, residual, ``vidTLDR``, MLP). Written on
2026-12-02 on the 2-core x86_64 CPU sandbox, torch 2.13.0+cpu, transformers 5.24.0, by
``benchmarks/make_vid_tldr_reference.py`` (its docstring has the command).
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from conftest import clip, enable_checkpointing, tiny_videomae
from safetensors import safe_open
from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

import stprune
from stprune.api import _pruner
from stprune.bench.flops import count_macs
from stprune.core.vid_tldr import (
    attention_saliency,
    mean_attention,
    saliency_merge,
    saliency_plan,
    vid_tldr_macs,
)
from stprune.errors import SettingError, UnsupportedModelError
from stprune.methods import METHODS, VidTLDR

DATA = Path(__file__).parent / "data" / "vid_tldr_reference.safetensors"
#: the patched model against the float64 references. Against the authors' block (the same
#: operations): eager attention agrees to rounding (2e-16 measured); SDPA (the fused CPU kernel)
#: rounds differently, and vid-TLDR's saliency normalisation (differences of nearly equal attention
#: entropies, divided by their range) amplifies rounding about 1e4-fold on these tiny random models
#: (4e-12 measured). The independent reference sums entropies in Python: 1e-12 measured either way
EAGER_TOL = 1e-14
SDPA_TOL = 1e-10


@cache
def reference() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    assert DATA.exists(), f"missing {DATA}: regenerate it with benchmarks/make_vid_tldr_reference.py"
    with safe_open(str(DATA), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        meta = f.metadata()
    return tensors, meta


def chains() -> list[dict]:
    return json.loads(reference()[1]["chains"])


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({8: torch.int64, 4: torch.int32}[t.element_size()])


def test_reference_file_records_its_source():
    tensors, meta = reference()
    assert meta["source"] == "https://github.com/mlvlab/vid-TLDR"
    assert meta["file"] == "multi_modality/utils/vid_TLDR.py"
    assert meta["commit"] == "a25051d4a4808ce2b480bd1a80a96f68c21aa5cb"
    assert meta["blob"] == "4f6d31b6069ece6c9e6eca7c6f99db3c4b01f40a"
    assert meta["generated"] == "2026-12-02" and meta["torch"].startswith("2.13.0")
    assert "self.dtype to be equal to src.dtype" in meta["published_float64_raises"]
    assert DATA.stat().st_size < 1_000_000
    assert len(json.loads(meta["objective"])) == 5 and len(chains()) == 5
    assert {c["name"] for c in chains()} >= {"n33-odd", "n20-max", "n24-ties"}


# ---------------------------------------------------------------------------------------------
# the core functions against the published ones
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c["name"] for c in json.loads(reference()[1]["objective"])])
def test_saliency_equals_the_published_objective_score_bitwise(case):
    tensors, _ = reference()
    got = attention_saliency(tensors[f"{case}/attn"].mean(dim=1))
    want = tensors[f"{case}/score"]
    assert got.shape == want.shape and got.dtype == torch.float64
    assert torch.equal(bits(got), bits(want))
    assert (want >= 0).all() and (want <= 1).all() and (want == 0).any() and (want == 1).any()


@pytest.mark.parametrize("mode", ["float64", "float32"])
@pytest.mark.parametrize("case", [c["name"] for c in chains()])
def test_merging_equals_the_published_vidtldr_bitwise(case, mode):
    """Plan (unmerged / merged / partner indices), tokens and sizes of every call of the chain."""
    tensors, _ = reference()
    spec = next(c for c in chains() if c["name"] == case)
    key, dtype = f"chain/{case}", getattr(torch, mode)
    x, size = tensors[f"{key}/x"].to(dtype), None
    for i, r in enumerate(spec["r"]):
        if r == 0:  # the published function returns its input unchanged
            assert torch.equal(tensors[f"{key}/{mode}/out{i}"], x)
            continue
        attn = tensors[f"{key}/attn{i}"].to(dtype)
        size = torch.ones_like(x[..., :1]) if size is None else size
        plan = saliency_plan(x, r, attention_saliency(attn.mean(dim=1)))
        assert torch.equal(plan.unmerged, tensors[f"{key}/{mode}/unm_idx{i}"])
        assert torch.equal(plan.src, tensors[f"{key}/{mode}/src_idx{i}"])
        assert torch.equal(plan.dst, tensors[f"{key}/{mode}/dst_idx{i}"])
        x, size = saliency_merge(x, size, plan)
        assert x.dtype == dtype and x.shape[1] == attn.shape[-1] - r
        assert torch.equal(bits(x), bits(tensors[f"{key}/{mode}/out{i}"]))
        assert torch.equal(bits(size), bits(tensors[f"{key}/{mode}/size{i}"]))


def test_mean_attention_is_the_head_mean_of_the_softmax():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 7, 5, generator=g, dtype=torch.float64)
    k = torch.randn(2, 3, 9, 5, generator=g, dtype=torch.float64)
    want = ((q * 5**-0.5) @ k.transpose(-1, -2)).softmax(-1).mean(1)
    assert torch.equal(mean_attention(q, k, 5**-0.5), want)  # 3 heads: the same sums in the same order


def test_saliency_guards_are_exact_where_the_published_formula_is_finite():
    """0 log 0 counts as 0 and an all-equal clip gets 0, where the published code gives NaN."""
    attn = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]], dtype=torch.float64)
    s = attention_saliency(attn)
    assert torch.isfinite(s).all()
    plogp = torch.tensor([0.0, 2 * 0.5 * math.log(0.5), sum(p * math.log(p) for p in (0.2, 0.3, 0.5))])
    n = (plogp - plogp.min()) / (plogp.max() - plogp.min())
    fg = n >= n.mean()
    want = torch.where(fg, (n - n.mean()) / (n - n.mean()).max(), torch.zeros(()))
    assert torch.allclose(s[0, :, 0], want.double(), rtol=0, atol=1e-15)
    uniform = torch.full((2, 4, 4), 0.25, dtype=torch.float64)
    assert torch.equal(attention_saliency(uniform), torch.zeros(2, 4, 1, dtype=torch.float64))


def test_background_tokens_vanish_and_sizes_add_their_weights():
    """A merged token enters its partner with weight size * saliency; saliency 0 drops it."""
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]]], dtype=torch.float64)
    size = torch.tensor([[[2.0], [1.0], [1.0], [3.0]]], dtype=torch.float64)
    sal = torch.tensor([[[0.5], [0.0], [0.0], [0.0]]], dtype=torch.float64)
    plan = saliency_plan(x, 2, sal)  # A = tokens 0, 2 -> B partners 1, 3
    assert plan.src.tolist() == [[0, 1]] and plan.dst.tolist() == [[0, 1]] and plan.unmerged.shape == (1, 0)
    out, new = saliency_merge(x, size, plan)
    assert new[0, :, 0].tolist() == [1.0 + 0.5 * 2.0, 3.0]  # token 2 has saliency 0: it vanishes
    assert torch.allclose(out[0, 0], (1.0 * x[0, 1] + 0.5 * 2.0 * x[0, 0]) / 2.0, rtol=0, atol=1e-15)
    assert torch.allclose(out[0, 1], x[0, 3], rtol=0, atol=1e-15)


def test_groups_match_inside_each_group_with_the_clips_saliency():
    """With G groups, matching stays inside a group; saliency and the size divisor are the clip's."""
    g = torch.Generator().manual_seed(2)
    b, heads, groups, n, c, r = 2, 2, 3, 10, 6, 3
    x = torch.randn(b, groups * n, c, generator=g, dtype=torch.float64)
    q = torch.randn(b, heads, groups * n, 4, generator=g, dtype=torch.float64)
    k = torch.randn(b, heads, groups * n, 4, generator=g, dtype=torch.float64)
    size = torch.rand(b, groups * n, 1, generator=g, dtype=torch.float64) + 0.5
    from stprune.core.schedule import Stage
    from stprune.methods.base import BlockAttention, ForwardContext

    ctx = ForwardContext(size=size, attention=BlockAttention(q, k, 0.5, 0))
    out, kept = VidTLDR().reduce(x, x, Stage(0, groups, r), ctx)
    assert kept is None and out.shape == (b, groups * (n - r), c)
    sal = attention_saliency(mean_attention(q, k, 0.5))
    for gi in range(groups):
        part = slice(gi * n, (gi + 1) * n)
        plan = saliency_plan(x[:, part], r, sal[:, part])
        want, want_size = saliency_merge(x[:, part], size[:, part], plan, size.amax(1, keepdim=True))
        got = slice(gi * (n - r), (gi + 1) * (n - r))
        assert torch.equal(out[:, got], want) and torch.equal(ctx.size[:, got], want_size)


# ---------------------------------------------------------------------------------------------
# the patched model
# ---------------------------------------------------------------------------------------------


def authors_model(attn: str) -> tuple[VideoMAEModel, dict]:
    tensors, meta = reference()
    case = json.loads(meta["model"])
    model = VideoMAEModel(VideoMAEConfig(**case["config"], attn_implementation=attn)).double().eval()
    state = {k.removeprefix("model/state/"): v for k, v in tensors.items() if k.startswith("model/state/")}
    model.load_state_dict(state)
    return model, case


@pytest.mark.parametrize(("attn", "tol"), [("eager", EAGER_TOL), ("sdpa", SDPA_TOL)])
def test_patched_model_equals_the_authors_block(attn, tol):
    """A VideoMAEModel patched with vid_tldr at the authors' per-layer r equals the same weights run
    the way the authors' ViT runs (their vidTLDR between attention and MLP), tokens and sizes."""
    tensors, _ = reference()
    model, case = authors_model(attn)
    schedule = [(i, 1, r) for i, r in enumerate(case["r"]) if r]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the encoder returns merged tokens: patch warns about pooling
        stprune.patch(model, "vid_tldr", schedule=schedule)
    with torch.no_grad():
        hidden = model(pixel_values=tensors["model/clip"].double()).last_hidden_state
    assert hidden.shape == tensors["model/hidden"].shape
    torch.testing.assert_close(hidden, tensors["model/hidden"], rtol=0, atol=tol)
    torch.testing.assert_close(
        stprune.last_trace(model).sizes, tensors["model/size"][..., 0], rtol=0, atol=tol
    )


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _reference_merge(x, size, rows, groups, r):
    """vid-TLDR's merge of one clip, written out token by token (independent of stprune.core).

    x (L, C), size (L,), rows (L, Lk) head-mean attention rows -> (L', C), (L',)."""
    ent = torch.tensor([sum(p * math.log(p) for p in row.tolist() if p > 0) for row in rows], dtype=x.dtype)
    s = (ent - ent.min()) / (ent.max() - ent.min())
    background = s < s.mean()
    s = (s - s.mean()) / (s - s.mean()).max()
    s[background] = 0.0
    n = len(x) // groups
    out_x, out_s = [], []
    for gi in range(groups):
        tok = list(range(gi * n, (gi + 1) * n))
        a_tok, b_tok = tok[0::2], tok[1::2]
        best = []
        for i in a_tok:
            sims = [_cosine(x[i], x[j]) for j in b_tok]
            best.append((max(sims), i, b_tok[sims.index(max(sims))]))
        ranked = sorted(best, key=lambda t: -t[0])
        merged, unmerged = ranked[:r], sorted(t[1] for t in ranked[r:])
        for i in unmerged:
            out_x.append(x[i])
            out_s.append(size[i])
        for j in b_tok:
            into = [i for _, i, dst in merged if dst == j]
            w = size[j] + sum(s[i] * size[i] for i in into)
            out_x.append((size[j] * x[j] + sum(s[i] * size[i] * x[i] for i in into)) / w)
            out_s.append(w)
    return torch.stack(out_x), torch.stack(out_s)


def reference_forward(model, pixels, schedule):
    """The classifier's logits with vid-TLDR, HF submodules run one by one (float64, eager math).

    schedule: {block: (groups, r)}. Protected token: VideoMAE's token 0 when its head reads it."""
    enc = model.videomae
    p = 1 if model.fc_norm is None else 0
    x = enc.embeddings(pixels, None)
    size = None  # (B, L) of the prunable tokens
    for i, layer in enumerate(enc.encoder.layer):
        att = layer.attention.attention
        b, n, _ = x.shape
        hd = att.attention_head_size

        def split(t, b=b, n=n, hd=hd):
            return t.view(b, n, -1, hd).transpose(1, 2)

        h = layer.layernorm_before(x)
        q, k, v = split(att.query(h)), split(att.key(h)), split(att.value(h))
        logits = q @ k.transpose(-1, -2) * hd**-0.5
        plain = logits.softmax(-1).mean(1)  # (B, L, L): the map the saliency reads
        if size is not None:
            logits = logits + torch.cat([size.new_ones(b, p), size], 1).log()[:, None, None, :]
        ctx = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1)
        x = x + layer.attention.output.dense(ctx)
        if i in schedule:
            groups, r = schedule[i]
            sz = torch.ones(b, n - p, dtype=x.dtype) if size is None else size
            merged = [_reference_merge(x[j, p:], sz[j], plain[j, p:], groups, r) for j in range(b)]
            x = torch.cat([x[:, :p], torch.stack([m[0] for m in merged])], 1)
            size = torch.stack([m[1] for m in merged])
        x = layer.output(layer.intermediate(layer.layernorm_after(x)), x)
    if p:
        return model.classifier(enc.layernorm(x)[:, 0])
    s = torch.ones(x.shape[:2], dtype=x.dtype) if size is None else size
    pooled = (x * s[..., None]).sum(1) / s.sum(1, keepdim=True)
    return model.classifier(model.fc_norm(pooled))


def _classifier(attn: str, mean_pooling: bool = True):
    torch.manual_seed(3)
    cfg = VideoMAEConfig(
        image_size=64, patch_size=16, num_frames=16, tubelet_size=2, hidden_size=32, num_hidden_layers=6,
        num_attention_heads=2, intermediate_size=64, num_labels=5, use_mean_pooling=mean_pooling,
        attn_implementation=attn,
    )  # fmt: skip
    return VideoMAEForVideoClassification(cfg).double().eval()


@pytest.mark.parametrize(
    ("attn", "mean_pooling", "kw", "schedule"),
    [
        ("sdpa", True, {"r": 20}, {0: (1, 20), 1: (1, 20), 2: (1, 20)}),
        ("eager", True, {"r": [30, 12, 4]}, {0: (1, 30), 1: (1, 12), 2: (1, 4)}),
        ("sdpa", True, {"schedule": "paper", "r": 3}, {0: (8, 3), 2: (4, 3), 4: (2, 3)}),
        ("sdpa", False, {"schedule": "every", "r": 9}, {i: (1, 9) for i in range(5)}),
    ],
    ids=["default-sdpa", "per-stage-eager", "paper-groups", "protected-token-every"],
)
def test_patched_classifier_equals_an_independent_reference(attn, mean_pooling, kw, schedule):
    """Batch 2, float64: saliency, merging, proportional attention, size-weighted pooling (or the
    protected token 0 a first-token head reads), against HF layers run one by one."""
    model = _classifier(attn, mean_pooling)
    x = clip(dtype=torch.float64, seed=5)
    with torch.no_grad():
        want = reference_forward(model, x, schedule)
    stprune.patch(model, "vid_tldr", **kw)
    assert [(s.after_block, s.groups, s.r) for s in stprune.patch_info(model).stages] == [
        (blk, g, r) for blk, (g, r) in schedule.items()
    ]
    with torch.no_grad():
        got = model(pixel_values=x).logits
    torch.testing.assert_close(got, want, rtol=0, atol=SDPA_TOL)
    assert not torch.allclose(got, model.classifier.bias.expand_as(got))


def test_attention_stays_fused_and_the_map_is_computed_once_per_merging_block(monkeypatch):
    """SDPA still runs every block's attention; the map vid-TLDR reads is one extra q k^T per head of
    each merging block only (counted as such by FlopCounterMode)."""
    model = tiny_videomae()
    assert model.config._attn_implementation == "sdpa"
    stprune.patch(model, "vid_tldr", r=10)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k)
    )
    with torch.no_grad():
        model(pixel_values=clip())
    assert len(calls) == 6  # one fused attention per block, none switched to eager
    assert [
        m.config._attn_implementation for m in model.modules() if hasattr(m, "_stprune_attention_bias")
    ] == ["stprune_biased_sdpa"] * 6


@pytest.mark.parametrize(
    ("kw", "mean_pooling"),
    [
        ({"r": 10}, True),
        ({"r": [40, 3, 0]}, True),
        ({"schedule": "every", "r": 6}, True),
        ({"schedule": "paper", "r": 2}, True),
        ({"flops_target": 0.8}, True),
        ({"r": 10}, False),
        ({"schedule": "every", "r": 6}, False),
    ],
    ids=["default", "per-stage", "every", "paper", "target", "first-token", "first-token-every"],
)
def test_analytic_macs_equal_the_flop_counter(kw, mean_pooling):
    """The attention map (H d L (L + P) per merging block), the A x B similarities on the tokens
    (width C) and the merging block's MLP on fewer tokens, exactly as FlopCounterMode counts them
    (a first-token head protects token 0: P = 1)."""
    model = _classifier("sdpa", mean_pooling).float()
    one = {"pixel_values": clip(batch=1)}
    base = count_macs(model, one)
    stprune.patch(model, "vid_tldr", **kw)
    info = stprune.patch_info(model)
    assert info.macs_unpruned == base
    assert count_macs(model, one) == info.macs == _pruner(model).traced_macs()
    lay = _pruner(model).layout
    expected = info.macs_unpruned
    tokens = info.plan.tokens_per_block
    for s, n in zip(info.stages, info.plan.stage_group_sizes, strict=True):
        if s.r:
            L = s.groups * n
            p = lay.protected
            expected += 32 * L * (L + p) + s.groups * ((n + 1) // 2) * (n // 2) * 32  # map + matching
            expected -= s.groups * s.r * 2 * 32 * 64  # the block's MLP on the merged tokens
    full = tokens[0]
    for t in tokens:  # the blocks' attention and linear layers on fewer tokens
        expected -= 4 * (full - t) * 32 * 32 + 2 * (full * full - t * t) * 32 + 2 * (full - t) * 32 * 64
    assert info.macs == expected


def test_vid_tldr_is_registered_and_takes_no_options():
    assert METHODS["vid_tldr"] is VidTLDR
    assert VidTLDR.option_names == () and VidTLDR.tracks_size and VidTLDR.uses_attention
    model = tiny_videomae()
    with pytest.raises(TypeError, match="no_such"):
        stprune.patch(model, "vid_tldr", r=1, no_such=1)
    assert not stprune.is_patched(model)


@pytest.mark.parametrize(
    ("family", "match"),
    [
        ("HFVivitAdapter", "add both residuals inside their own forward"),
        ("HFVJEPA2Adapter", "rotates queries and keys"),
        ("VideoSwinAdapter", "merged token has no place in the window grid"),
    ],
    ids=["vivit", "vjepa2", "video-swin"],
)
def test_models_that_cannot_take_it_refuse_in_one_line(family, match):
    from stprune.adapters import ADAPTERS

    model = next(a for a in ADAPTERS if a.__name__ == family).example_model()
    with pytest.raises(UnsupportedModelError, match=match) as err:
        stprune.patch(model, "vid_tldr", r=2)
    assert "\n" not in str(err.value) and "vid_tldr" in str(err.value)
    assert not stprune.is_patched(model)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"r": 65}, r"r=65 is too large for groups of 128 tokens .* 0 <= r <= 32"),
        ({"r": [64, 33, 1]}, r"stage 1 .* r=33 is too large for groups of 64 tokens .* 0 <= r <= 32"),
        ({"schedule": "paper", "r": 9}, r"0 <= r <= 8"),
        ({"flops_target": 0.2}, "lowest achievable FLOPs ratio"),
    ],
    ids=["r-uniform", "r-stage", "r-paper", "target"],
)
def test_bad_settings_name_the_bound(kw, match):
    """vid-TLDR merges at most half a group (n // 2, the authors' cap); a uniform r too large names
    the largest r every stage of the schedule accepts."""
    model = tiny_videomae()
    with pytest.raises(SettingError, match=match) as err:
        stprune.patch(model, "vid_tldr", **kw)
    assert "\n" not in str(err.value)
    assert not stprune.is_patched(model)


def test_largest_r_runs_and_one_more_is_refused():
    model = tiny_videomae()
    stprune.patch(model, "vid_tldr", r=32)  # 128 -> 96 -> 64 -> 32: the third stage merges 32 of 64
    with torch.no_grad():
        model(pixel_values=clip())
    assert stprune.last_trace(model).tokens_per_block == [128, 96, 64, 32, 32, 32]
    stprune.unpatch(model)
    with pytest.raises(SettingError, match="0 <= r <= 32"):
        stprune.patch(model, "vid_tldr", r=33)


def test_odd_groups_merge_at_most_half_rounded_down():
    """A first-token head protects token 0: 127 tokens merge in one group, at most 63 (ToMe: 64)."""
    model = _classifier("sdpa", mean_pooling=False).float()
    with pytest.raises(SettingError, match="r=64 is too large for groups of 127 tokens .* 0 <= r <= 63"):
        stprune.patch(model, "vid_tldr", schedule=[(0, 1)], r=64)
    stprune.patch(model, "vid_tldr", schedule=[(0, 1)], r=63)
    with torch.no_grad():
        model(pixel_values=clip())
    assert stprune.last_trace(model).tokens_per_block == [128] + [65] * 5


def test_training_gradients_with_and_without_checkpointing():
    x = clip(dtype=torch.float64, seed=3)

    def loss_and_grads(ckpt: bool):
        model = tiny_videomae().double()
        stprune.patch(model, "vid_tldr", r=12)
        model.train()
        if ckpt:
            enable_checkpointing(model)
        loss = model(pixel_values=x).logits.pow(2).sum()
        loss.backward()
        return (
            loss.detach(),
            {n: p.grad.clone() for n, p in model.named_parameters()},
            stprune.last_trace(model),
        )

    loss, ref, trace = loss_and_grads(False)
    assert trace.tokens_per_block == [128, 116, 104, 92, 92, 92]
    assert all(torch.isfinite(g).all() for g in ref.values())
    loss_c, grads, trace_c = loss_and_grads(True)
    assert torch.allclose(loss_c, loss, rtol=1e-12, atol=0)
    assert trace_c.tokens_per_block == trace.tokens_per_block
    for name, g in ref.items():
        assert torch.allclose(grads[name], g, rtol=1e-9, atol=1e-12), name


def test_compiles_without_graph_breaks():
    torch._dynamo.reset()
    model = tiny_videomae()
    stprune.patch(model, "vid_tldr", r=8)
    x = clip()
    with torch.no_grad():
        eager = model(pixel_values=x).logits
        compiled = torch.compile(model, backend="eager", fullgraph=True)(pixel_values=x).logits
    assert torch.allclose(compiled, eager, atol=1e-6)
    torch._dynamo.reset()


def test_cost_of_one_step():
    assert vid_tldr_macs(10, 2, 0, 4, 8, 16, 1) == 0
    # L = 20 tokens against 21 keys, 4 heads of 8; 2 groups of A 5 x B 5 on width 16
    assert vid_tldr_macs(10, 2, 3, 4, 8, 16, 1) == 4 * 8 * 20 * 21 + 2 * 5 * 5 * 16
    assert vid_tldr_macs(11, 1, 1, 1, 1, 1, 0) == 11 * 11 + 6 * 5
