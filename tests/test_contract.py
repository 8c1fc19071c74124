"""The contract every registered encoder family x every method keeps (as timm tests every model).

(Video LLMs, pruned once before their language model, have their own contract:
``tests/test_contract_video_llm.py``.) A family enters this suite by registering its adapter
(``stprune.adapters.base.register_adapter``) with an ``example_model``; a method by being in
``stprune.methods.METHODS``. No test here names a family or a method. A (family, method) pair the
family cannot take must be refused by ``patch`` with ``UnsupportedModelError`` before anything
changes; every other pair is checked for:

* patch / unpatch identity (bitwise: the same kernels run on the same memory);
* batch independence (a clip's output does not depend on the other clips of its batch);
* planned tokens per block == traced tokens per block;
* analytic MACs == ``FlopCounterMode`` (math SDPA kernel), pruned and unpruned;
* ``flops_target`` honoured (the largest planned ratio not above the target; measured likewise);
* trace positions consistent (unique, in the grid, as many as kept);
* bad settings rejected before any forward, leaving the model unpatched.
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
from stprune.methods import METHODS, get_method

ENCODERS = [a for a in ADAPTERS if not issubclass(a, VideoLLMAdapter)]
PAIRS = [(a, m) for a in ENCODERS for m in sorted(METHODS)]
IDS = [f"{a.__name__}-{m}" for a, m in PAIRS]


def _logits(out: object) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.logits


def _forward(model: torch.nn.Module, inputs: dict) -> torch.Tensor:
    with torch.no_grad():
        return _logits(model(**inputs))


def _setup(adapter_cls: type, method: str, dtype: torch.dtype = torch.float32):
    """The family's example model (unpatched), an example input (batch 3), whether it takes ``method``."""
    model = adapter_cls.example_model(seed=0).to(dtype)
    inputs = get_adapter(model).example_inputs(batch_size=3, dtype=dtype)
    torch.manual_seed(1)
    inputs = {k: torch.randn_like(v) for k, v in inputs.items()}
    try:
        stprune.patch(model, method=method, flops_target=0.8)
    except UnsupportedModelError:
        assert not stprune.is_patched(model)
        return model, inputs, False
    stprune.unpatch(model)
    return model, inputs, True


def _takes(adapter_cls: type, method: str) -> bool:
    return _setup(adapter_cls, method)[2]


#: the pairs the families take (decided at collection, so no pair is skipped at run time)
SUPPORTED = [(a, m) for a, m in PAIRS if _takes(a, m)]


@pytest.fixture(params=SUPPORTED, ids=[f"{a.__name__}-{m}" for a, m in SUPPORTED])
def case(request):
    adapter_cls, method = request.param
    model, inputs, _ = _setup(adapter_cls, method)
    return adapter_cls, method, model, inputs


@pytest.mark.parametrize(("adapter_cls", "method"), PAIRS, ids=IDS)
def test_refusals_are_clean(adapter_cls, method):
    """A pair the family cannot take is refused with UnsupportedModelError and leaves no trace."""
    model = adapter_cls.example_model(seed=0)
    inputs = get_adapter(model).example_inputs(batch_size=1)
    before = _forward(model, inputs)
    try:
        stprune.patch(model, method=method, flops_target=0.8)
    except UnsupportedModelError as err:
        assert str(err) and "\n" not in str(err)
        assert not stprune.is_patched(model)
        assert torch.equal(_forward(model, inputs), before)
    else:
        stprune.unpatch(model)
        assert torch.equal(_forward(model, inputs), before)


def test_every_family_has_an_example_and_at_least_one_method():
    assert ENCODERS
    for adapter_cls in ENCODERS:
        assert any(a is adapter_cls for a, _ in SUPPORTED), adapter_cls.__name__


def test_patch_unpatch_identity(case):
    _, method, model, inputs = case
    before = _forward(model, inputs)
    stprune.patch(model, method=method, flops_target=0.7)
    pruned = _forward(model, inputs)
    assert pruned.shape == before.shape and torch.isfinite(pruned).all()
    stprune.unpatch(model)
    assert not stprune.is_patched(model)
    assert torch.equal(_forward(model, inputs), before)


def test_batch_independence(case):
    adapter_cls, method, _, _ = case
    model, inputs, _ = _setup(adapter_cls, method, dtype=torch.float64)
    stprune.patch(model, method=method, flops_target=0.7)
    batch = _forward(model, inputs)
    for i in range(3):
        alone = _forward(model, {k: v[i : i + 1] for k, v in inputs.items()})
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-10)  # float64: rounding only


def test_planned_tokens_equal_traced_tokens(case):
    _, method, model, inputs = case
    stprune.patch(model, method=method, flops_target=0.7)
    _forward(model, inputs)
    assert stprune.patch_info(model).plan.tokens_per_block == stprune.last_trace(model).tokens_per_block


def test_analytic_macs_equal_flop_counter(case):
    _, method, model, inputs = case
    one = {k: v[:1] for k, v in inputs.items()}
    unpruned = count_macs(model, one)
    stprune.patch(model, method=method, flops_target=0.7)
    info = stprune.patch_info(model)
    assert unpruned == info.macs_unpruned
    measured = count_macs(model, one)
    assert measured == _pruner(model).traced_macs()  # exact, for the data at hand
    # the plan: exact where the cost does not depend on the data; an estimate within 5% otherwise
    assert abs(measured / info.macs - 1) < 0.05


@pytest.mark.parametrize("target", [0.9, 0.7])
def test_flops_target_honoured(case, target):
    _, method, model, inputs = case
    one = {k: v[:1] for k, v in inputs.items()}
    base = count_macs(model, one)
    try:
        stprune.patch(model, method=method, flops_target=target)
    except SettingError as err:  # out of reach: the error names the lowest achievable ratio
        assert "lowest achievable FLOPs ratio" in str(err)
        return
    info = stprune.patch_info(model)
    r = info.stages[0].r
    assert all(s.r == r for s in info.stages) and info.flops_ratio <= target
    measured = count_macs(model, one) / base
    assert measured <= target + 0.02 and abs(measured - info.flops_ratio) < 0.02
    stprune.unpatch(model)
    if r > 0:  # one r less is above the target: r is the largest ratio not above it
        stprune.patch(model, method=method, r=r - 1)
        assert stprune.patch_info(model).flops_ratio > target


def test_trace_positions_are_consistent(case):
    _, method, model, inputs = case
    stprune.patch(model, method=method, flops_target=0.7)
    _forward(model, inputs)
    trace = stprune.last_trace(model)
    assert trace.stages
    for st in trace.stages:
        assert st.tokens_out <= st.tokens_in
        if st.positions is None:  # a merging method: tokens stand for several positions
            assert get_method(method).tracks_size
            continue
        b = st.positions.shape[0]
        assert st.positions.shape == (b, st.tokens_out) and st.kept.shape == (b, st.tokens_out)
        assert int(st.kept.min()) >= 0 and int(st.kept.max()) < st.tokens_in
        for row in st.positions:
            assert row.unique().numel() == st.tokens_out  # no place kept twice
        assert int(st.positions.min()) >= 0
        mask = getattr(st, "mask", None)
        if mask is not None:  # grid models: the active mask is exactly the kept positions
            flat = mask.reshape(b, -1)
            assert flat.sum(1).tolist() == [st.tokens_out] * b
            assert flat.gather(1, st.positions).all()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"r": 10**6}, SettingError),
        ({"r": 1, "flops_target": 0.5}, SettingError),
        ({"flops_target": 1.5}, SettingError),
        ({"flops_target": 0.0}, SettingError),
        ({"r": "8"}, SettingTypeError),
        ({"r": -1}, SettingError),
        ({"r": 1, "schedule": [(10**4, 1, 1)]}, SettingError),
        ({"r": 1, "schedule": "no-such-schedule"}, SettingError),
        ({"r": 1, "no_such_option": True}, SettingTypeError),
    ],
    ids=[
        "r-huge",
        "r-and-target",
        "target-above-1",
        "target-0",
        "r-str",
        "r-negative",
        "after-block",
        "schedule-name",
        "option",
    ],  # fmt: skip
)
def test_bad_settings_are_rejected_before_any_forward(case, kwargs, error):
    _, method, model, inputs = case
    before = _forward(model, inputs)
    with pytest.raises(error) as info:
        stprune.patch(model, method=method, **kwargs)
    assert "\n" not in str(info.value)
    assert not stprune.is_patched(model)
    assert torch.equal(_forward(model, inputs), before)
