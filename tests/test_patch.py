"""patch / unpatch on HF VideoMAE and ViViT: identity, traces, CLS protection, batch independence,
flops_target, FLOPs counts, and every bad input."""

from __future__ import annotations

import pytest
import torch
from conftest import clip, tiny_videomae, tiny_vivit
from torch import nn

import stprune
from stprune.bench.flops import count_macs
from stprune.core.sta import sta_keep_indices
from stprune.core.tokens import gather_tokens
from stprune.models import get_adapter


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).logits


def test_unpatch_restores_identical_outputs(videomae):
    x = clip()
    before = logits(videomae, x)
    stprune.patch(videomae, r=3)
    pruned = logits(videomae, x)
    assert not torch.allclose(before, pruned)
    assert stprune.is_patched(videomae)
    assert stprune.unpatch(videomae) is videomae
    assert not stprune.is_patched(videomae)
    assert torch.equal(logits(videomae, x), before)
    assert not videomae.videomae.encoder.layer[0]._forward_pre_hooks
    assert not videomae._forward_pre_hooks


def test_patch_returns_model_and_keeps_sdpa(videomae):
    assert stprune.patch(videomae, r=2) is videomae
    assert videomae.config._attn_implementation == "sdpa"


def test_trace_matches_shapes_seen_by_every_block():
    model = tiny_videomae(depth=7)
    stprune.patch(model, r=4)
    seen: list[int] = []
    for layer in model.videomae.encoder.layer:
        layer.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[1]))
    logits(model, clip())
    trace = stprune.last_trace(model)
    # 8 slots x 16 tokens; after block 0: 8x12=96; after block 2 (4 groups of 24): 4x20=80;
    # after block 4 (2 groups of 40): 2x36=72
    assert seen == trace.tokens_per_block == [128, 96, 96, 80, 80, 72, 72]
    assert stprune.patch_info(model).plan.tokens_per_block == seen
    assert [s.tokens_out for s in trace.stages] == [96, 80, 72]
    for s in trace.stages:
        assert s.kept.shape == (2, s.tokens_out) and s.positions.shape == (2, s.tokens_out)
        assert s.positions.max() < 128
        for row in s.positions:
            assert len(set(row.tolist())) == s.tokens_out


def test_positions_compose_kept_indices():
    model = tiny_videomae()
    stprune.patch(model, r=3)
    logits(model, clip())
    st = stprune.last_trace(model).stages
    assert torch.equal(st[0].positions, st[0].kept)
    assert torch.equal(st[1].positions, st[0].positions.gather(1, st[1].kept))
    assert torch.equal(st[2].positions, st[1].positions.gather(1, st[2].kept))


def test_model_output_equals_manual_sta_on_captured_tokens():
    """The engine applies exactly core STA on (block output, head-mean keys) - VideoMAEModel too."""
    model = tiny_videomae(base=True, depth=3)
    x = clip(dtype=torch.float64)
    model.double()
    layer0 = model.encoder.layer[0]
    cap = {}
    layer0.register_forward_hook(lambda m, a, o: cap.__setitem__("out", o))
    layer0.attention.attention.key.register_forward_hook(lambda m, a, o: cap.__setitem__("key", o))
    with torch.no_grad():
        model(pixel_values=x)
    b, length, _ = cap["key"].shape
    keys = cap["key"].view(b, length, 2, -1).mean(2)
    want = gather_tokens(cap["out"], sta_keep_indices(cap["out"], keys, 8, 5))
    stprune.patch(model, schedule=[(0, 8, 5)])
    nxt = {}
    model.encoder.layer[1].register_forward_pre_hook(lambda m, a: nxt.__setitem__("in", a[0]))
    with torch.no_grad():
        model(pixel_values=x)
    assert torch.equal(nxt["in"], want)


def test_vivit_cls_token_is_protected_and_first(vivit):
    x = clip()
    stprune.patch(vivit, r=3)
    ins = {}
    h = vivit.vivit.layers[1].register_forward_pre_hook(lambda m, a: ins.__setitem__(1, a[0]))
    logits(vivit, x)
    h.remove()
    trace = stprune.last_trace(vivit)
    assert trace.tokens_per_block[:2] == [1 + 8 * 16, 1 + 8 * 13]
    # the unpruned block-0 output, from the unpatched model
    stprune.unpatch(vivit)
    raw = {}
    h = vivit.vivit.layers[0].register_forward_hook(lambda m, a, o: raw.__setitem__(0, o))
    logits(vivit, x)
    h.remove()
    assert torch.equal(ins[1][:, 0], raw[0][:, 0])  # CLS untouched, still first
    kept = trace.stages[0].kept
    assert torch.equal(ins[1][:, 1:], gather_tokens(raw[0][:, 1:], kept))


def test_vivit_cls_is_excluded_from_scoring(vivit):
    """Changing only the CLS token's content must not change which patch tokens are kept."""
    stprune.patch(vivit, schedule=[(0, 8, 4)])
    x = clip()
    logits(vivit, x)
    kept_a = stprune.last_trace(vivit).stages[0].kept.clone()
    with torch.no_grad():
        vivit.vivit.embeddings.cls_token.add_(5.0)
    logits(vivit, x)
    kept_b = stprune.last_trace(vivit).stages[0].kept
    # block 0 mixes CLS into every token through attention, so kept sets may differ slightly;
    # but the selection is over the 128 patch tokens only and never picks index 128+
    assert kept_a.max() < 128 and kept_b.max() < 128


@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_batch_equals_samples_alone(build):
    model = build().double()
    stprune.patch(model, r=5)
    x = clip(batch=3, dtype=torch.float64, seed=4)
    batched = logits(model, x)
    for i in range(3):
        assert torch.allclose(logits(model, x[i : i + 1])[0], batched[i], atol=1e-10, rtol=0)


@pytest.mark.parametrize("build", [tiny_videomae, tiny_vivit])
def test_analytic_macs_equal_flop_counter(build):
    model = build()
    adapter = get_adapter(model)
    inputs = adapter.example_inputs()
    lay = adapter.layout()
    assert count_macs(model, inputs) == adapter.macs(
        [lay.num_slots * lay.tokens_per_slot + lay.protected] * 6
    )
    stprune.patch(model, r=5)
    assert count_macs(model, inputs) == stprune.patch_info(model).macs


@pytest.mark.parametrize("target", [0.9, 0.7, 0.5])
def test_flops_target_is_closest_without_exceeding(target):
    model = tiny_videomae(image=96)  # 36 tokens per slot
    inputs = get_adapter(model).example_inputs()
    base = count_macs(model, inputs)
    stprune.patch(model, flops_target=target)
    info = stprune.patch_info(model)
    r = info.stages[0].r
    assert all(s.r == r for s in info.stages)
    measured = count_macs(model, inputs) / base
    assert measured <= target
    assert abs(measured - info.flops_ratio) < 1e-12
    stprune.unpatch(model)
    stprune.patch(model, r=r - 1)  # one token less per group would exceed the target
    assert count_macs(model, inputs) / base > target
    stprune.unpatch(model)


def test_per_stage_r_and_explicit_schedule(videomae):
    stprune.patch(videomae, r=[2, 0, 6])
    logits(videomae, clip())
    trace = stprune.last_trace(videomae)
    assert [s.index for s in trace.stages] == [0, 2]  # r=0 stage is a no-op
    assert trace.tokens_per_block == [128, 112, 112, 112, 112, 100]
    stprune.unpatch(videomae)
    stprune.patch(videomae, schedule=[(1, 8, 4), (3, 4, 2, True), (4, 1, 10)])
    logits(videomae, clip())
    assert stprune.last_trace(videomae).tokens_per_block == [128, 128, 96, 96, 88, 78]


def test_other_frame_counts_and_tubelets():
    model = tiny_videomae(frames=8)  # T0 = 4: groups 4, 2, 1
    stprune.patch(model, r=3)
    out = logits(model, clip(frames=8))
    assert out.shape == (2, 5)
    assert stprune.last_trace(model).tokens_per_block[-1] == 1 * (2 * (2 * 13 - 3) - 3)


# ----- bad input -----


def test_double_patch_raises(videomae):
    stprune.patch(videomae, r=1)
    with pytest.raises(RuntimeError, match="already patched"):
        stprune.patch(videomae, r=1)


def test_unpatch_unpatched_raises(videomae):
    with pytest.raises(ValueError, match="not patched"):
        stprune.unpatch(videomae)


def test_last_trace_before_forward_raises(videomae):
    stprune.patch(videomae, r=1)
    with pytest.raises(ValueError, match="has not run a forward"):
        stprune.last_trace(videomae)


def test_unsupported_models_raise_not_implemented():
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    cfg = TimesformerConfig(
        image_size=32,
        num_frames=4,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    with pytest.raises(
        NotImplementedError,
        match=r"TimesformerForVideoClassification is not supported "
        r"\(divided space-time.*supported: VideoMAEForVideoClassification",
    ):
        stprune.patch(TimesformerForVideoClassification(cfg), r=1)
    with pytest.raises(NotImplementedError, match="Linear is not supported"):
        stprune.patch(nn.Linear(2, 2), r=1)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(r=-1), ValueError, r"r must be >= 0 .*got -1"),
        (dict(r=9), ValueError, r"r=9 is too large for groups of 16 tokens .*0 <= r <= 8"),
        (dict(r=1.5), TypeError, r"r must be an int .*1.5"),
        (dict(r="8"), TypeError, r"r must be an int .*got '8' of type str"),
        (
            dict(r=1000),
            ValueError,
            r"r=1000 is too large .*same r at all 3 stages of this schedule: 0 <= r <= 8",
        ),
        (dict(flops_target=0.0), ValueError, r"flops_target must be a number in \(0, 1\]; got 0.0"),
        (dict(flops_target=1.2), ValueError, r"flops_target must be a number in \(0, 1\]; got 1.2"),
        (dict(flops_target=0.05), ValueError, r"flops_target=0.05 cannot be reached.*lowest achievable"),
        (dict(r=2, flops_target=0.5), ValueError, r"either r or flops_target"),
        (dict(), ValueError, r"give r .* or flops_target"),
        (dict(method="tome2", r=2), ValueError, r"unknown method 'tome2'; available: .*sta"),
        (dict(schedule="nope", r=2), ValueError, r"unknown schedule 'nope'"),
    ],
)
def test_bad_arguments(videomae, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        stprune.patch(videomae, **kwargs)
    assert not stprune.is_patched(videomae)


def test_frame_count_the_schedule_cannot_split():
    model = tiny_videomae(frames=6)  # 3 temporal slots: T0/2, T0/4 impossible
    with pytest.raises(ValueError, match=r"multiple of 4; got T0=3"):
        stprune.patch(model, r=2)


def test_input_with_wrong_frame_count_raises_before_output(videomae):
    stprune.patch(videomae, r=2)
    with pytest.raises(ValueError, match=r"has 12 frames .* num_frames=16"):
        logits(videomae, clip(frames=12))


def test_patch_info_prints_as_one_readable_line():
    from stprune.architectures.loading import load_model

    model = load_model("demo").model
    stprune.patch(model, flops_target=0.7)
    info = stprune.patch_info(model)
    text = str(info)
    assert "\n" not in text
    assert text.startswith(
        "sta: after blocks 0, 2, 4 (r=10, 10, 10); tokens in the first / last block 288 / 148"
    )
    assert f"est. FLOPs ratio {info.flops_ratio:.3f} ({info.macs / 1e9:.4g} of" in text
    stprune.unpatch(model)
    stprune.patch(model, method="rlt", r=83)
    assert str(stprune.patch_info(model)).startswith(
        "rlt: before block 0 (r=83); tokens in the first / last block 205"
    )


def test_method_lists_in_errors_are_complete_and_right_for_the_model():
    from stprune.errors import SettingError, UnsupportedModelError
    from stprune.methods import encoder_methods

    model = tiny_videomae()
    with pytest.raises(SettingError) as err:
        stprune.patch(model, method="foo", r=2)
    assert str(err.value) == (
        f"unknown method 'foo'; available: {', '.join(encoder_methods())}, "
        "and for video LLMs only dycoke, evs"
    )
    assert "vid_tldr" in encoder_methods()
    with pytest.raises(
        UnsupportedModelError, match="is an encoder: use one of sta, tome, random, rlt, vid_tldr$"
    ):
        stprune.patch(model, method="dycoke", r=2)


def test_patch_info_line_in_rlt_threshold_mode_says_the_count_follows_the_clip():
    from stprune.architectures.loading import load_model

    model = load_model("demo").model
    stprune.patch(model, method="rlt", threshold=0.1)
    text = str(stprune.patch_info(model))
    assert text.startswith("rlt: before block 0 (r=chosen per clip); est. FLOPs ratio <= 1.000")
    assert "stprune.last_macs(model)" in text and "tokens in the first" not in text
