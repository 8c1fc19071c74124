"""The contract every registered video-LLM family x every method keeps.

A family enters by registering a :class:`~stprune.adapters.video_llm.VideoLLMAdapter` with an
``example_model``; a method by being in ``stprune.methods.METHODS``. No test here names a family
or a method. A pair the family cannot take is refused by ``patch`` (``UnsupportedModelError``)
before anything changes; every other pair is checked for:

* patch / unpatch identity (bitwise) and a text-only call running bitwise stock while patched;
* batch independence (a row's logits do not depend on the other rows);
* planned sequence length == traced, budgets kept per video;
* analytic MACs == ``FlopCounterMode`` (math SDPA kernel), pruned and unpruned, and
  ``last_macs`` == each row measured alone;
* bad settings rejected before any forward, leaving the model unpatched.

Generation against the independent reference is in ``tests/test_video_llm.py``.
"""

from __future__ import annotations

import pytest
import torch

import stprune
from stprune.adapters import ADAPTERS, get_adapter
from stprune.adapters.video_llm import VideoLLMAdapter
from stprune.api import _pruner
from stprune.bench.flops import count_macs
from stprune.errors import SettingError, SettingTypeError, UnsupportedModelError
from stprune.methods import METHODS

FAMILIES = [a for a in ADAPTERS if issubclass(a, VideoLLMAdapter)]
PAIRS = [(a, m) for a in FAMILIES for m in sorted(METHODS)]
KEEP = 0.5


def _setting(method: str) -> dict:
    return {"keep_ratio": KEEP}


def _forward(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def _takes(adapter_cls, method) -> bool:
    model = adapter_cls.example_model(seed=0)
    try:
        stprune.patch(model, method, **_setting(method))
    except UnsupportedModelError:
        return False
    return True


SUPPORTED = [(a, m) for a, m in PAIRS if _takes(a, m)]


@pytest.fixture(params=SUPPORTED, ids=[f"{a.__name__}-{m}" for a, m in SUPPORTED])
def case(request):
    adapter_cls, method = request.param
    model = adapter_cls.example_model(seed=0).double()
    inputs = get_adapter(model).example_prompt(batch_size=3, dtype=torch.float64)
    return adapter_cls, method, model, inputs


def test_every_family_takes_sta_and_is_in_this_suite():
    assert FAMILIES
    for adapter_cls in FAMILIES:
        assert (adapter_cls, "sta") in SUPPORTED


@pytest.mark.parametrize(("adapter_cls", "method"), PAIRS, ids=[f"{a.__name__}-{m}" for a, m in PAIRS])
def test_refusals_are_clean(adapter_cls, method):
    model = adapter_cls.example_model(seed=0)
    inputs = get_adapter(model).example_prompt(1)
    before = _forward(model, inputs)
    try:
        stprune.patch(model, method, **_setting(method))
    except UnsupportedModelError as err:
        assert str(err) and "\n" not in str(err)
        assert not stprune.is_patched(model)
    else:
        stprune.unpatch(model)
    assert torch.equal(_forward(model, inputs), before)


def test_patch_unpatch_identity_and_text_only_stock(case):
    _, method, model, inputs = case
    before = _forward(model, inputs)
    text = {"input_ids": inputs["input_ids"][:, :4], "attention_mask": inputs["attention_mask"][:, :4]}
    text_before = _forward(model, text)
    stprune.patch(model, method, **_setting(method))
    pruned = _forward(model, inputs)
    assert torch.isfinite(pruned).all()
    assert torch.equal(_forward(model, text), text_before)
    stprune.unpatch(model)
    assert torch.equal(_forward(model, inputs), before)


def test_batch_independence(case):
    _, method, model, inputs = case
    stprune.patch(model, method, **_setting(method))
    batch = _forward(model, inputs)[:, -1]
    for i in range(3):
        alone = _row(inputs, i, get_adapter(model))
        torch.testing.assert_close(_forward(model, alone)[0, -1], batch[i], rtol=0, atol=1e-10)


def _row(inputs: dict, i: int, adapter) -> dict:
    """Row i of an example prompt (each row has one video of the same shape)."""
    out = {}
    videos = inputs["pixel_values_videos"]
    for key, value in inputs.items():
        if key == "pixel_values_videos" and "video_grid_thw" in inputs:  # rows of patches, video-major
            per = videos.shape[0] // inputs["video_grid_thw"].shape[0]
            out[key] = videos[i * per : (i + 1) * per]
        elif isinstance(value, torch.Tensor):
            out[key] = value[i : i + 1]
        else:
            out[key] = value
    return out


def test_planned_length_equals_traced_and_budgets_hold(case):
    _, method, model, inputs = case
    stprune.patch(model, method, **_setting(method))
    _forward(model, inputs)
    trace = stprune.last_trace(model)
    plan = stprune.patch_info(model).plan
    assert plan.tokens_per_block == trace.tokens_per_block  # same prompt shape as the plan's
    assert len(trace.videos) == 3 and [v.sample for v in trace.videos] == [0, 1, 2]
    for v in trace.videos:
        t, h, w = v.grid
        assert v.tokens_out <= max(
            h * w, t * max(1, int(KEEP * h * w + 0.5))
        )  # budget (or a first-slot floor)
        assert v.kept.unique().numel() == v.tokens_out and int(v.kept.max()) < v.tokens_in


def test_analytic_macs_equal_flop_counter(case):
    _, method, model, inputs = case
    one = _row(inputs, 0, get_adapter(model))
    unpruned = count_macs(model, one)
    stprune.patch(model, method, **_setting(method))
    info = stprune.patch_info(model)
    assert info.macs_unpruned == unpruned
    measured = count_macs(model, one)
    assert measured == _pruner(model).traced_macs() == info.macs
    # last_macs: each row as if it ran alone
    count_macs(model, inputs)
    per_row = stprune.last_macs(model)
    alone = []
    for i in range(3):
        alone.append(count_macs(model, _row(inputs, i, get_adapter(model))))
    count_macs(model, inputs)
    assert stprune.last_macs(model).tolist() == per_row.tolist() == alone


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"keep_ratio": 0.0}, SettingError),
        ({"keep_ratio": 2}, SettingError),
        ({"keep_ratio": True}, SettingTypeError),
        ({"r": -1}, SettingError),
        ({"r": "2"}, SettingTypeError),
        ({"keep_ratio": 0.5, "r": 1}, SettingError),
        ({"flops_target": 0.5}, SettingError),
        ({"keep_ratio": 0.5, "schedule": "every"}, SettingError),
        ({"keep_ratio": 0.5, "no_such_option": True}, SettingTypeError),
    ],
    ids=["keep-0", "keep-2", "keep-bool", "r-neg", "r-str", "both", "target", "schedule", "option"],
)
def test_bad_settings_are_rejected_before_any_forward(case, kwargs, error):
    _, method, model, inputs = case
    before = _forward(model, inputs)
    with pytest.raises(error) as info:
        stprune.patch(model, method, **kwargs)
    assert "\n" not in str(info.value)
    assert not stprune.is_patched(model)
    assert torch.equal(_forward(model, inputs), before)
