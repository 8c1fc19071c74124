"""Patching is safe on whatever model a user holds (issue 21): no nested double patching, no state
shared with another model, merged tokens handed to a caller with their sizes, options and
messages that name the right thing, and no profiler label inside a compiled graph."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import clip, tiny_videomae, tiny_vivit

import stprune
from stprune.adapters import HFVideoMAEAdapter, HFVivitAdapter, HFVJEPA2Adapter
from stprune.errors import SettingError, SettingTypeError

# ----- 1. nested double patching -------------------------------------------------------------


def test_patching_a_model_whose_submodule_is_patched_is_refused():
    model = tiny_videomae()
    x = clip()
    with torch.no_grad():
        before = model(pixel_values=x).logits
    stprune.patch(model.videomae, flops_target=0.7)
    with pytest.raises(
        RuntimeError, match=r"submodule 'videomae' \(VideoMAEModel\) is already patched.*unpatch"
    ):
        stprune.patch(model, flops_target=0.7)
    assert not stprune.is_patched(model)
    with torch.no_grad():
        model(pixel_values=x)  # the inner patch alone still runs
    stprune.unpatch(model.videomae)
    stprune.patch(model, flops_target=0.7)  # allowed once the inner patch is gone
    stprune.unpatch(model)
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x).logits, before)


def test_patching_a_submodule_of_a_patched_model_is_refused():
    model = tiny_videomae()
    stprune.patch(model, method="tome", r=4)
    with pytest.raises(
        RuntimeError, match=r"VideoMAEModel is the submodule 'videomae' of a .*already patched"
    ):
        stprune.patch(model.videomae, r=2)
    encoder_layer = model.videomae.encoder.layer[0]
    assert not hasattr(encoder_layer, "_stprune")
    with pytest.raises(ValueError, match=r"submodule 'videomae' of a patched VideoMAEForVideoClassification"):
        stprune.unpatch(model.videomae)
    stprune.unpatch(model)
    stprune.patch(model.videomae, r=2)  # the outer patch is gone: the encoder may be patched alone
    assert stprune.is_patched(model.videomae)
    stprune.unpatch(model.videomae)


def test_a_model_sharing_an_encoder_with_a_patched_model_is_refused():
    a = tiny_videomae()
    b = tiny_videomae(seed=1)
    b.videomae.encoder = a.videomae.encoder  # the same blocks in two models
    stprune.patch(a, r=2)
    with pytest.raises(RuntimeError, match=r"'videomae.encoder' is also the submodule 'videomae.encoder'"):
        stprune.patch(b, r=2)
    stprune.unpatch(a)
    stprune.patch(b, r=2)
    stprune.unpatch(b)


# ----- 2. patching one model leaves another alone ----------------------------------------------

_FAMILIES = [HFVideoMAEAdapter, HFVivitAdapter, HFVJEPA2Adapter]


def _inputs(model):
    from stprune.models import get_adapter

    return get_adapter(model).example_inputs(batch_size=2)


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
@pytest.mark.parametrize(
    "setting", [{"method": "rlt"}, {"method": "tome", "r": 4}], ids=["rlt-threshold", "tome"]
)
@pytest.mark.parametrize("family", _FAMILIES, ids=lambda a: a.__name__)
def test_two_models_from_one_config_are_patched_independently(family, setting, impl):
    a = family.example_model(seed=0)
    a.set_attn_implementation(impl)
    torch.manual_seed(1)
    b = type(a)(a.config).eval()  # the same config object
    assert b.config is a.config
    config_before = a.config.to_dict()
    x = _inputs(a)
    with torch.no_grad():
        a_before = a(**x).logits
        b_before = b(**x).logits
    stprune.patch(a, **setting)
    assert a.config._attn_implementation == impl  # the shared config is not changed
    with torch.no_grad():
        assert torch.equal(b(**x).logits, b_before)  # b never patched: untouched
    stprune.patch(b, method="tome", r=4)  # was refused: 'stprune_biased_sdpa' cannot take a bias
    with torch.no_grad():
        b(**x)
    assert stprune.last_trace(b).tokens_per_block[1] < stprune.last_trace(b).tokens_per_block[0]
    stprune.unpatch(a)  # a's unpatch leaves b's bias in place
    assert stprune.is_patched(b)
    assert any(hasattr(m, "_stprune_attention_bias") for m in b.modules())
    stprune.unpatch(b)
    with torch.no_grad():
        assert torch.equal(a(**x).logits, a_before)
        assert torch.equal(b(**x).logits, b_before)
    assert a.config.to_dict() == config_before and b.config is a.config
    assert a.config._attn_implementation == impl


# ----- 3. ToMe on a bare encoder: sizes for the caller, and a warning -------------------------


@pytest.mark.parametrize("method", ["tome", "rlt"])
def test_encoder_output_weighted_by_trace_sizes_equals_the_patched_classifier(method):
    """ToMe (merged tokens) and RLT's threshold mode (padding) on ``model.videomae``: the head's mean
    weighted by ``last_trace(...).sizes`` is what the patched classifier computes."""
    whole, inner = tiny_videomae().double(), tiny_videomae().double()
    x = clip(dtype=torch.float64)
    x[1, 4:] = x[1, 3:4]  # clip 1 repeats a frame: RLT drops more of it, so the batch is padded
    setting = {"method": "tome", "r": 10} if method == "tome" else {"method": "rlt", "threshold": 0.1}
    stprune.patch(whole, **setting)
    with pytest.warns(UserWarning, match=r"VideoMAEModel.*last_trace\(model\)\.sizes"):
        stprune.patch(inner.videomae, **setting)
    with torch.no_grad():
        want = whole(pixel_values=x).logits
        hidden = inner.videomae(pixel_values=x).last_hidden_state
        sizes = stprune.last_trace(inner.videomae).sizes
        plain = inner.classifier(inner.fc_norm(hidden.mean(1)))
        pooled = (hidden * sizes[..., None]).sum(1) / sizes.sum(1, keepdim=True)
        got = inner.classifier(inner.fc_norm(pooled))
    assert sizes.shape == hidden.shape[:2]
    assert torch.equal(sizes.sum(1), torch.full((2,), 128.0, dtype=sizes.dtype)) or method == "rlt"
    assert not torch.allclose(plain, want, atol=1e-3)  # the plain mean is wrong
    assert torch.allclose(got, want, atol=1e-12, rtol=0)


def test_trace_sizes_of_index_pruning_and_protected_tokens():
    model = tiny_vivit()
    stprune.patch(model, r=4)
    with torch.no_grad():
        model(pixel_values=clip())
    trace = stprune.last_trace(model)
    # CLS first, then every kept token stands for itself
    assert torch.equal(trace.sizes, torch.ones(2, trace.tokens_per_block[-1]))
    assert all(s.sizes is None for s in trace.stages)
    stprune.unpatch(model)
    stprune.patch(model, method="tome", r=10)
    with torch.no_grad():
        model(pixel_values=clip())
    trace = stprune.last_trace(model)
    assert trace.sizes.shape == (2, 1 + 78)
    assert torch.equal(trace.sizes[:, 0], torch.ones(2))
    assert torch.equal(trace.sizes[:, 1:].sum(1), torch.full((2,), 128.0))
    assert torch.equal(trace.stages[-1].sizes, trace.sizes[:, 1:])


def test_no_warning_for_a_classifier_or_an_index_method_on_an_encoder():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stprune.patch(tiny_videomae(), method="tome", r=4)  # the classifier weights its own mean
        stprune.patch(tiny_videomae(base=True), method="sta", r=4)  # every token stands for itself
        stprune.patch(tiny_videomae(base=True), method="rlt", r=20)  # a fixed budget: no padding


# ----- 6. an option of another method ------------------------------------------------------


def test_an_option_of_another_method_names_the_method_it_belongs_to():
    model = tiny_videomae()
    with pytest.raises(
        SettingTypeError,
        match=r"seed= is an option of method 'random', not of method 'sta' \(which takes no options\)",
    ):
        stprune.patch(model, flops_target=0.7, seed=3)
    with pytest.raises(
        SettingTypeError,
        match=r"threshold= is an option of method 'rlt', not of method 'random' \(which takes seed=\)",
    ):
        stprune.patch(model, method="random", r=2, threshold=0.1)
    assert not stprune.is_patched(model)
    stprune.patch(model, method="random", r=2, seed=3)  # where it belongs


def test_too_few_slots_for_the_paper_schedule_suggests_every():
    model = tiny_videomae(frames=6)
    with pytest.raises(SettingError, match=r"got T0=3.*schedule='every'"):
        stprune.patch(model, flops_target=0.7)
    stprune.patch(model, r=4, schedule="every")  # which works
    with torch.no_grad():
        model(pixel_values=clip(frames=6))


# ----- 8. no torch.profiler label while torch.compile traces ---------------------------------


@pytest.mark.parametrize("setting", [{"r": 4}, {"method": "rlt", "r": 20}, {"method": "tome", "r": 4}])
def test_no_record_function_while_compiling(monkeypatch, setting):
    """dynamo ignores record_function inside a compiled graph and warns on every compile."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.profiler.record_function called while torch.compile traces")

    model = tiny_videomae()
    stprune.patch(model, **setting)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(torch.profiler, "record_function", refuse)
    with torch.no_grad():
        model(pixel_values=clip())
