"""Documented paths that used to give wrong answers silently: a head that reads token 0 (VideoMAE
without mean pooling), a torch.compile wrapper, ToMe on an eager-attention model, training (with
and without gradient checkpointing), and random pruning's dependence on the batch."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SWIN, clip, enable_checkpointing, tiny_videomae, tiny_vivit
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import VideoMAEForVideoClassification

import stprune
from stprune.bench.flops import count_macs
from stprune.core.tokens import gather_tokens
from stprune.errors import SettingError, UnsupportedModelError
from stprune.models import VideoSwin, get_adapter

# ----- VideoMAE without mean pooling: the head reads token 0 -----------------------------------


def first_token_videomae(depth: int = 6, seed: int = 0) -> nn.Module:
    """A tiny VideoMAE classifier whose head reads token 0 (``use_mean_pooling=False``)."""
    cfg = tiny_videomae(depth=depth).config
    cfg.use_mean_pooling = False
    torch.manual_seed(seed)
    return VideoMAEForVideoClassification(cfg).eval()


GROUPS_OF_ONE = [(0, 1, 20), (2, 1, 16), (4, 1, 10)]


@pytest.mark.parametrize("method", ["sta", "random"])
def test_first_token_head_reads_the_same_token_for_every_clip(method):
    model = first_token_videomae().double()
    x = torch.cat([clip(batch=1, seed=1), clip(batch=1, seed=2)]).double()
    stprune.patch(model, method=method, schedule=GROUPS_OF_ONE)
    with torch.no_grad():
        got = model(pixel_values=x).logits
    trace = stprune.last_trace(model)
    # token 0 is protected: 127 prunable tokens, then 107, 91, 81, plus token 0 in every block
    assert trace.tokens_per_block == [128, 108, 108, 92, 92, 82]
    for s in trace.stages:
        assert s.positions.min() >= 1  # grid positions of the kept prunable tokens: never token 0
    assert not torch.equal(trace.stages[0].kept[0], trace.stages[0].kept[1])  # clips differ
    # reference: the unpatched HF model, keeping token 0 first and the traced kept sets after it
    stprune.unpatch(model)
    kept = {s.stage.after_block: s.kept for s in trace.stages}

    def keep(block):
        def hook(module, args, out):
            return torch.cat([out[:, :1], gather_tokens(out[:, 1:], kept[block])], dim=1)

        return hook

    layers = model.videomae.encoder.layer
    hooks = [layers[b].register_forward_hook(keep(b)) for b in kept]
    with torch.no_grad():
        want = model(pixel_values=x).logits
    for h in hooks:
        h.remove()
    # the same kernels on the same tokens: equal up to float64 rounding of differently laid-out memory
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_first_token_head_with_tome_keeps_token_zero_out_of_merging():
    model = first_token_videomae().double()
    stprune.patch(model, method="tome", r=10)
    with torch.no_grad():
        model(pixel_values=clip(dtype=torch.float64))
    pruner = model._stprune
    assert stprune.last_trace(model).tokens_per_block == [128 - 10 * i for i in range(6)]
    assert torch.allclose(pruner._ctx.size.sum(1), torch.full((2, 1), 127.0, dtype=torch.float64))


def test_first_token_head_refuses_slot_groups_and_counts_flops():
    model = first_token_videomae()
    with pytest.raises(SettingError, match=r"reads token 0.*groups=8 at stage 0.*groups=1"):
        stprune.patch(model, method="sta", r=3)
    assert not stprune.is_patched(model)
    inputs = get_adapter(model).example_inputs()
    stprune.patch(model, method="random", schedule=GROUPS_OF_ONE)
    assert count_macs(model, inputs) == stprune.patch_info(model).macs


# ----- torch.compile ------------------------------------------------------------------------


def test_patch_refuses_a_compiled_model_and_unpatch_too():
    model = tiny_videomae()
    with pytest.raises(UnsupportedModelError, match=r"patch before compiling"):
        stprune.patch(torch.compile(model), r=2)
    assert not stprune.is_patched(model)
    stprune.patch(model, r=2)
    compiled = torch.compile(model)
    assert stprune.is_patched(compiled)
    assert stprune.patch_info(compiled).method == "sta"
    with pytest.raises(UnsupportedModelError, match=r"unpatch the model you patched"):
        stprune.unpatch(compiled)
    assert stprune.is_patched(model)


# ----- ToMe keeps the attention implementation ----------------------------------------------


@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_tome_on_eager_attention_returns_attentions_and_equals_sdpa(build):
    x = clip(dtype=torch.float64)
    eager, sdpa = build().double(), build().double()
    eager.set_attn_implementation("eager")
    for model in (eager, sdpa):
        stprune.patch(model, method="tome", r=10)
    with torch.no_grad():
        out = eager(pixel_values=x, output_attentions=True)
        want = sdpa(pixel_values=x).logits
    # ViViT's eager attention takes its softmax in float32: the two agree to float32 precision
    assert torch.allclose(out.logits, want, atol=1e-6, rtol=0)
    lengths = stprune.last_trace(eager).tokens_per_block
    assert [tuple(a.shape) for a in out.attentions] == [(2, 2, n, n) for n in lengths]
    sums = out.attentions[-1].sum(-1)
    assert torch.allclose(sums, torch.ones_like(sums))
    stprune.unpatch(eager)
    assert eager.config._attn_implementation == "eager"


def test_tome_refuses_an_attention_without_additive_bias():
    model = tiny_videomae()
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(UnsupportedModelError, match=r"flash_attention_2.*'sdpa' or 'eager'"):
        stprune.patch(model, method="tome", r=4)
    assert not stprune.is_patched(model)
    assert not model._forward_pre_hooks and not model.videomae.encoder.layer[0]._forward_hooks
    assert model.config._attn_implementation == "flash_attention_2"


# ----- training -----------------------------------------------------------------------------


def _layers(model: nn.Module) -> list[nn.Module]:
    return get_adapter(model).layout().layers


def _checkpoint_calls(model: nn.Module) -> None:
    """Checkpoint every block's ``__call__``, its hooks included, as transformers versions before
    ``forward``-wrapping did: the pruning hooks then run again in backward."""
    for layer in _layers(model):

        class Checkpointed(type(layer)):
            def __call__(self, *args, **kwargs):
                return checkpoint(super().__call__, *args, use_reentrant=False, **kwargs)

        layer.__class__ = Checkpointed


def _loss_and_grads(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(pixel_values=x).logits.pow(2).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["sta", "tome", "random"])
@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_training_gradients_with_and_without_checkpointing(build, method):
    x = clip(dtype=torch.float64, seed=3)

    def patched(ckpt: str) -> nn.Module:
        model = build().double()
        stprune.patch(model, method=method, r=4)
        model.train()
        if ckpt == "hf":
            enable_checkpointing(model, reentrant=False)
        elif ckpt == "hf-reentrant":
            enable_checkpointing(model, reentrant=True)
        elif ckpt == "hooks-inside":
            _checkpoint_calls(model)
        return model

    model = patched("none")
    with torch.no_grad():
        model.eval()
        eval_logits = model(pixel_values=x).logits
        model.train()
    loss, ref = _loss_and_grads(model, x)
    tokens = stprune.last_trace(model).tokens_per_block
    assert torch.allclose(model(pixel_values=x).logits, eval_logits, atol=1e-12, rtol=0)
    assert all(torch.isfinite(g).all() for g in ref.values())
    for ckpt in ("hf", "hf-reentrant", "hooks-inside"):
        m = patched(ckpt)
        loss_c, grads = _loss_and_grads(m, x)
        assert torch.allclose(loss_c, loss, rtol=1e-12, atol=0), ckpt
        assert stprune.last_trace(m).tokens_per_block == tokens, ckpt
        for name, g in ref.items():
            assert torch.allclose(grads[name], g, rtol=1e-9, atol=1e-12), f"{ckpt}: {name}"
    # the reference: a central difference of the loss along a random direction (the selection
    # is locally constant, so the pruned loss is differentiable at this point; float64, step 1e-8:
    # small enough not to cross a near-tie of ToMe's matching, truncation and rounding errors
    # below 1e-8 of the derivative here)
    kept = [s.kept for s in stprune.last_trace(model).stages]
    gen = torch.Generator().manual_seed(0)
    params = dict(model.named_parameters())
    direction = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params.items()}
    eps = 1e-8
    with torch.no_grad():
        values = []
        for sign in (1.0, -1.0):
            for n, p in params.items():
                p.add_(sign * eps * direction[n])
            values.append(model(pixel_values=x).logits.pow(2).sum())
            for n, p in params.items():
                p.sub_(sign * eps * direction[n])
            for a, s in zip(kept, stprune.last_trace(model).stages, strict=True):
                assert a is None or torch.equal(a, s.kept)  # the same selection at both points
    numeric = (values[0] - values[1]) / (2 * eps)
    analytic = sum((ref[n] * direction[n]).sum() for n in params)
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic)


@pytest.mark.parametrize("method", ["sta", "tome", "random"])
def test_compiled_training_traces_without_graph_breaks(method):
    """The backward-replay test in the hooks must not break a compiled training graph."""
    torch._dynamo.reset()
    model = tiny_videomae()
    stprune.patch(model, method=method, r=4)
    model.train()
    x = clip()
    loss, ref = _loss_and_grads(model, x)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    model.zero_grad(set_to_none=True)
    compiled_loss = compiled(pixel_values=x).logits.pow(2).sum()
    compiled_loss.backward()
    assert torch.allclose(compiled_loss.detach(), loss, rtol=1e-6, atol=0)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[name], rtol=1e-5, atol=1e-7), name
    torch._dynamo.reset()


# ----- random pruning: a clip's selection does not depend on its batch -------------------------


@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_random_selection_is_a_function_of_the_clip(build):
    model = build()
    stprune.patch(model, method="random", r=5)
    a, b = clip(batch=1, seed=10), clip(batch=1, seed=11)
    with torch.no_grad():
        batched = model(pixel_values=torch.cat([b, b.flip(-1), a])).logits
        kept_batched = [s.kept.clone() for s in stprune.last_trace(model).stages]
        alone = model(pixel_values=a).logits
        kept_alone = [s.kept.clone() for s in stprune.last_trace(model).stages]
    for kb, ka in zip(kept_batched, kept_alone, strict=True):
        assert torch.equal(kb[2], ka[0])  # position 2 of a batch of 3 == alone
        assert not torch.equal(kb[0], kb[1])  # other clips, other draws
    # batched GEMMs may differ from single-sample ones in the last bits of float32
    assert torch.allclose(batched[2], alone[0], atol=1e-5, rtol=0)


SWIN = TINY_SWIN


def test_random_selection_is_a_function_of_the_clip_on_video_swin():
    torch.manual_seed(0)
    model = VideoSwin(SWIN).eval()
    stprune.patch(model, method="random", r=2)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 3, 8, 64, 64, generator=g)
    with torch.no_grad():
        batched = model(x)
        kept_batched = [s.kept.clone() for s in stprune.last_trace(model).stages]
        alone = model(x[2:])
        kept_alone = [s.kept.clone() for s in stprune.last_trace(model).stages]
    for kb, ka in zip(kept_batched, kept_alone, strict=True):
        assert torch.equal(kb[2], ka[0])
    assert torch.allclose(batched[2], alone[0], atol=1e-5, rtol=0)


# ----- messages -----------------------------------------------------------------------------


def test_video_swin_too_large_r_names_the_whole_schedule_bound():
    model = VideoSwin(SWIN)
    # stage 0 alone allows r <= 8, but later points have smaller windows: 2 is the largest r
    # every point of the default schedule accepts
    with pytest.raises(
        SettingError, match=r"r=9 is too large .*same r at all 6 stages of this schedule: 0 <= r <= 2"
    ):
        stprune.patch(model, r=9)
    stprune.patch(model, r=2)
    stprune.unpatch(model)
    with pytest.raises(TypeError, match=r"r must be an int .*got '8' of type str"):
        stprune.patch(model, r="8")


@pytest.mark.parametrize("method", ["sta", "random"])
def test_video_swin_training_gradients_equal_a_central_difference(method):
    torch.manual_seed(0)
    model = VideoSwin(SWIN).double()
    stprune.patch(model, method=method, r=2)
    model.train()
    x = torch.randn(2, 3, 8, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model(x).pow(2).sum().backward()
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(0)
    direction = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params.items()}
    analytic = sum((p.grad * direction[n]).sum() for n, p in params.items())
    eps, values = 1e-8, []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for n, p in params.items():
                p.add_(sign * eps * direction[n])
            values.append(model(x).pow(2).sum())
            for n, p in params.items():
                p.sub_(sign * eps * direction[n])
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(numeric - analytic) <= 1e-6 * abs(analytic)


def test_a_merging_method_without_anchor_is_refused_at_patch_time_on_rope_models():
    from stprune.adapters.hf_vjepa2 import HFVJEPA2Adapter
    from stprune.methods import ToMe

    class Unanchored(ToMe):  # merges, but does not say where a merged token sits
        name = "unanchored"
        sets_anchor = False

        def reduce(self, x, keys, stage, ctx):
            out, kept = super().reduce(x, keys, stage, ctx)
            ctx.anchor = None
            return out, kept

    model = HFVJEPA2Adapter.example_model(seed=0)
    with pytest.raises(UnsupportedModelError, match="rotates every token by its grid position"):
        stprune.patch(model, Unanchored(), r=2)  # before any forward
    assert not stprune.is_patched(model)
    other = tiny_videomae()
    stprune.patch(other, Unanchored(), r=2)  # no rotary positions: merging needs no anchor
    with torch.no_grad():
        assert torch.isfinite(other(pixel_values=clip()).logits).all()
