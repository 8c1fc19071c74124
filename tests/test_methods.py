"""Baselines with the same interface as STA: ToMe-style merging and random pruning."""

from __future__ import annotations

import pytest
import torch
from conftest import clip, tiny_videomae, tiny_vivit

import stprune
from stprune.adapters.hf_attention import _biased_sdpa
from stprune.core.merge import bipartite_plan, merge_weighted
from stprune.methods import METHODS, RandomPruning, get_method


def test_registry():
    from stprune.methods import encoder_methods

    assert {"sta", "tome", "random", "rlt", "dycoke", "evs"} <= set(METHODS)
    assert {"dycoke", "evs"}.isdisjoint(encoder_methods()) and {"sta", "tome", "random", "rlt"} <= set(
        encoder_methods()
    )
    assert isinstance(get_method("random"), RandomPruning)


def test_bipartite_plan_hand_example():
    # A = tokens 0, 2, 4; B = 1, 3. Token 4 duplicates token 1, token 0 is near token 3.
    ang = torch.tensor([2.0, 0.5, -1.0, 2.1, 0.5])
    keys = torch.stack([ang.cos(), ang.sin()], -1)[None]
    keep_a, src, dst = bipartite_plan(keys, 2)
    assert src.tolist() == [[2, 0]]  # A index 2 (token 4, exact duplicate), then A index 0 (token 0)
    assert dst.tolist() == [[0, 1]]  # into B index 0 (token 1) and B index 1 (token 3)
    assert keep_a.tolist() == [[1]]


def test_merge_conserves_size_and_weighted_sum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 11, 4, generator=g, dtype=torch.float64)
    size = torch.randint(1, 4, (3, 11, 1), generator=g).double()
    plan = bipartite_plan(torch.randn(3, 11, 5, generator=g, dtype=torch.float64), 4)
    y, s = merge_weighted(x, size, *plan)
    assert y.shape == (3, 7, 4) and s.shape == (3, 7, 1)
    assert torch.allclose(s.sum(1), size.sum(1))
    assert torch.allclose((y * s).sum(1), (x * size).sum(1))


def test_proportional_attention_on_duplicates_is_exact():
    """Attending to a merged token with bias log(2) equals attending to its two identical copies."""
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 5, 8, generator=g, dtype=torch.float64)  # (B, H, Lq, d)
    k = torch.randn(1, 2, 4, 8, generator=g, dtype=torch.float64)
    v = torch.randn(1, 2, 4, 8, generator=g, dtype=torch.float64)
    k_dup = torch.cat([k, k[:, :, 2:3]], dim=2)  # key 2 appears twice
    v_dup = torch.cat([v, v[:, :, 2:3]], dim=2)
    full = torch.nn.functional.scaled_dot_product_attention(q, k_dup, v_dup)
    module = torch.nn.Module()
    module.is_causal = False
    bias = torch.log(torch.tensor([1.0, 1.0, 2.0, 1.0], dtype=torch.float64))[None, None, None]
    module._stprune_attention_bias = lambda: bias
    out, _ = _biased_sdpa(module, q, k, v, None)
    assert torch.allclose(out.transpose(1, 2), full, atol=1e-12)


@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_tome_patch_bias_and_restore(build):
    model = build()
    impl = model.config._attn_implementation
    x = clip()
    with torch.no_grad():
        before = model(pixel_values=x).logits
    stprune.patch(model, method="tome", r=10)
    assert stprune.patch_info(model).stages[0].groups == 1  # ToMe's own schedule: every block
    assert len(stprune.patch_info(model).stages) == 5
    # the model's config is left alone; its attention modules read biased copies of it
    assert model.config._attn_implementation == impl
    attn = [m for m in model.modules() if hasattr(m, "_stprune_attention_bias")]
    assert len(attn) == 6 and all(m.config._attn_implementation == f"stprune_biased_{impl}" for m in attn)
    with torch.no_grad():
        model(pixel_values=x)
    trace = stprune.last_trace(model)
    protected = 1 if "Vivit" in type(model).__name__ else 0
    assert trace.tokens_per_block == [protected + 128 - 10 * i for i in range(6)]
    assert all(s.kept is None and s.positions is None for s in trace.stages)
    pruner = model._stprune
    sizes = pruner._ctx.size
    assert torch.allclose(sizes.sum(1), torch.full((2, 1), 128.0))  # every input token accounted for
    bias = pruner.attention_bias(5)  # what the last block's attention adds
    assert bias.shape == (2, 1, 1, protected + 78)
    assert torch.allclose(bias[:, 0, 0, protected:].exp(), sizes[..., 0])
    assert pruner.attention_bias(0) is None  # block 0 sees unmerged tokens
    assert pruner.attention_bias(1).shape == (2, 1, 1, protected + 118)
    stprune.unpatch(model)
    assert model.config._attn_implementation == impl
    assert all(m.config is model.config for m in attn)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, before)


def test_tome_mean_pooling_is_size_weighted():
    model = tiny_videomae().double()
    x = clip(dtype=torch.float64)
    raw = {}
    # registered before patch, so it sees the last block's output before the size weighting
    model.videomae.encoder.layer[-1].register_forward_hook(lambda m, a, o: raw.__setitem__("h", o))
    stprune.patch(model, method="tome", r=10)
    with torch.no_grad():
        got = model(pixel_values=x).logits
        size = model._stprune._ctx.size
        pooled = (raw["h"] * size).sum(1) / size.sum(1)
        want = model.classifier(model.fc_norm(pooled))
    assert torch.allclose(got, want, atol=1e-10)


def test_random_pruning_seeded_and_per_group():
    model = tiny_videomae()
    x = clip()
    stprune.patch(model, method="random", r=5)
    with torch.no_grad():
        model(pixel_values=x)
    first = [s.kept.clone() for s in stprune.last_trace(model).stages]
    with torch.no_grad():
        model(pixel_values=x)
    again = [s.kept for s in stprune.last_trace(model).stages]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))  # re-seeded every forward
    kept0 = first[0].view(2, 8, 11)
    for gi in range(8):
        block = kept0[:, gi]
        assert ((block >= 16 * gi) & (block < 16 * (gi + 1))).all()
        assert (block.diff(dim=-1) > 0).all()  # kept tokens stay in order
    stprune.unpatch(model)
    stprune.patch(model, method=RandomPruning(seed=7), r=5)
    with torch.no_grad():
        model(pixel_values=x)
    assert not torch.equal(stprune.last_trace(model).stages[0].kept, first[0])


@pytest.mark.parametrize("method", ["sta", "tome", "random"])
def test_every_method_reaches_a_flops_target(method):
    from stprune.bench.flops import count_macs
    from stprune.models import get_adapter

    model = tiny_videomae(depth=12, image=96)
    inputs = get_adapter(model).example_inputs()
    base = count_macs(model, inputs)
    stprune.patch(model, method=method, flops_target=0.75)
    ratio = count_macs(model, inputs) / base
    assert 0.7 < ratio <= 0.75
    assert abs(ratio - stprune.patch_info(model).flops_ratio) < 1e-12


@pytest.mark.parametrize("method", ["sta", "tome", "random"])
def test_pruning_path_compiles_without_graph_breaks(method):
    """fullgraph=True fails on host syncs (.item(), .tolist()) and Python branching on tensor
    values anywhere in the patched forward, hooks included."""
    torch._dynamo.reset()
    model = tiny_videomae()
    stprune.patch(model, method=method, r=4)
    x = clip()
    with torch.no_grad():
        eager = model(pixel_values=x).logits
        compiled = torch.compile(model, backend="eager", fullgraph=True)(pixel_values=x).logits
    assert torch.allclose(compiled, eager, atol=1e-6)
    torch._dynamo.reset()


def test_hash_uniform_is_uniform_and_keyed():
    from stprune.core.hashrand import hash_uniform

    u = hash_uniform((8, 4000), seed=0, stream=0, device="cpu")
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert (counts - 3200).abs().max() < 300
    assert torch.equal(u, hash_uniform((8, 4000), seed=0, stream=0, device="cpu"))
    assert not torch.equal(u, hash_uniform((8, 4000), seed=1, stream=0, device="cpu"))
    assert not torch.equal(u, hash_uniform((8, 4000), seed=0, stream=1, device="cpu"))


def test_content_keys_follow_the_sample_not_its_batch():
    from stprune.core.hashrand import content_keys, hash_uniform

    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(1, 4, 3, 32, 32, generator=g) for _ in range(3))
    keys = content_keys(torch.cat([b, a, c, a]))
    assert keys.dtype == torch.int64 and keys.min() >= 0 and keys.max() < 2**32
    assert keys[1] == keys[3] == content_keys(a)[0]
    assert len(set(keys[:3].tolist())) == 3
    # a row keyed by its sample draws the same numbers at any row index
    u = hash_uniform((4, 50), 0, 2, "cpu", row_keys=keys)
    assert torch.equal(u[1], u[3]) and not torch.equal(u[0], u[1])
    assert torch.equal(u[1], hash_uniform((1, 50), 0, 2, "cpu", row_keys=content_keys(a))[0])
