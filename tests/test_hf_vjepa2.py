"""V-JEPA 2 (HF ``VJEPA2ForVideoClassification`` / ``VJEPA2Model``): the patched model against a
slow, hook-free reference, float64.

The reference runs HF's modules one by one (embedding, each ``VJEPA2Layer``, layernorm, the
attentive pooler, the classifier). At every pruning point it computes the block's keys itself
(``attention.key(norm1(block input))``, before RoPE, averaged over heads), applies the method's
selection to the block output, keeps each token's id in the T0 x N grid and passes those ids as
``position_mask`` to every later block. For ToMe (proportional attention, which HF's layer API
cannot take) the blocks and the pooler are evaluated from HF's own submodules with an explicit
softmax; a merged token sits at the grid position of the token it merged into.

The contract suite (tests/test_contract.py) covers the family x method properties; this file
the V-JEPA 2 specifics: RoPE positions, the pooler, the predictor, the cost model, the presets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from conftest import enable_checkpointing
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import VJEPA2Config, VJEPA2ForVideoClassification, VJEPA2Model

import stprune
from stprune.adapters import HFVJEPA2Adapter, get_adapter
from stprune.architectures.presets import build_preset
from stprune.core.hashrand import content_keys
from stprune.core.merge import bipartite_plan, merge_weighted
from stprune.core.schedule import Stage
from stprune.core.sta import sta_keep_indices
from stprune.errors import InputError, SettingError, SettingTypeError
from stprune.methods import get_method
from stprune.methods.base import ForwardContext
from stprune.methods.random import RandomPruning
from stprune.pruning.sequence import SequencePruner

TOL = 1e-9  # float64, SDPA
EAGER_TOL = 1e-7  # HF's VJEPA2 eager attention runs its softmax in float32
DEPTH, SLOTS, PER_SLOT = 6, 8, 16


def tiny_vjepa2(
    base: bool = False,
    dtype: torch.dtype = torch.float64,
    attn: str = "sdpa",
    seed: int = 0,
    frames: int = 16,
) -> nn.Module:
    """Random V-JEPA 2: 6 blocks, ``frames`` (16) frames of 64^2 (8 slots x 16 tokens), width 64, 4
    heads (head_dim 16: RoPE rotates 3 x 4 dims, 4 stay), 2 pooler layers, a 2-layer predictor."""
    torch.manual_seed(seed)
    cfg = VJEPA2Config(
        crop_size=64, frames_per_clip=frames, patch_size=16, tubelet_size=2, hidden_size=64,
        num_attention_heads=4, num_hidden_layers=DEPTH, num_pooler_layers=2, pred_hidden_size=32,
        pred_num_attention_heads=2, pred_num_hidden_layers=2, num_labels=5, attn_implementation=attn,
    )  # fmt: skip
    model = VJEPA2Model(cfg) if base else VJEPA2ForVideoClassification(cfg)
    # HF initialises with a small std: O(1) variety so that a wrong position or selection shows
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.to(dtype).eval()


def vjepa2_clip(batch: int = 2, frames: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(B, T, 3, 64, 64) standard-normal ``pixel_values_videos``."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, frames, 3, 64, 64, generator=g).to(dtype)


def paper_stages(r: int) -> list[Stage]:
    """The paper schedule of the tiny model (after blocks 0, 2, 4; 8, 4, 2 groups; middle reversed)."""
    return [Stage(0, SLOTS, r, False), Stage(2, SLOTS // 2, r, True), Stage(4, SLOTS // 4, r, False)]


# the reference ----------------------------------------------------------------------------------


def _head_keys(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """(B, L, d) keys of ``layer`` on its input h (B, L, C), before RoPE, averaged over heads."""
    att = layer.attention
    k = att.key(layer.norm1(h))
    return k.view(*k.shape[:2], att.num_attention_heads, att.attention_head_size).mean(2)


def _manual_layer(
    layer: nn.Module, h: torch.Tensor, pos: torch.Tensor | None, log_size: torch.Tensor
) -> torch.Tensor:
    """``VJEPA2Layer`` on h (B, L, C) with log(size) (B, L) added to its attention logits."""
    att = layer.attention
    x = layer.norm1(h)
    b, length, _ = x.shape
    shape = (b, length, att.num_attention_heads, att.attention_head_size)
    q, k, v = (f(x).view(shape).transpose(1, 2) for f in (att.query, att.key, att.value))
    ids = att.get_position_ids(x, masks=pos)
    q, k = att.apply_rotary_embeddings(q, ids), att.apply_rotary_embeddings(k, ids)
    logits = (q @ k.transpose(-1, -2)) * att.scaling + log_size[:, None, None, :]
    h = h + att.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, length, -1))
    return h + layer.mlp(layer.norm2(h))


def _attend(qp, kp, vp, heads: int, q_in: torch.Tensor, kv_in: torch.Tensor, log_size: torch.Tensor):
    """Attention of q_in (B, Lq, C) over kv_in (B, L, C), log(size) (B, L) on the keys; (B, Lq, C)."""
    b, lq, c = q_in.shape
    d = c // heads
    q = qp(q_in).view(b, lq, heads, d).transpose(1, 2)
    k = kp(kv_in).view(b, -1, heads, d).transpose(1, 2)
    v = vp(kv_in).view(b, -1, heads, d).transpose(1, 2)
    logits = (q @ k.transpose(-1, -2)) * d**-0.5 + log_size[:, None, None, :]
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, lq, c)


def _manual_pooler(pooler: nn.Module, h: torch.Tensor, log_size: torch.Tensor) -> torch.Tensor:
    """``VJEPA2AttentivePooler`` on h (B, L, C) with proportional attention; (B, C)."""
    for layer in pooler.self_attention_layers:
        sa = layer.self_attn
        x = layer.layer_norm1(h)
        h = h + sa.out_proj(_attend(sa.q_proj, sa.k_proj, sa.v_proj, sa.num_heads, x, x, log_size))
        h = h + layer.mlp(layer.layer_norm2(h))
    cl = pooler.cross_attention_layer
    ca = cl.cross_attn
    q = pooler.query_tokens.repeat(h.shape[0], 1, 1)
    out = q + _attend(ca.q_proj, ca.k_proj, ca.v_proj, ca.num_heads, q, cl.layer_norm1(h), log_size)
    return (out + cl.mlp(cl.layer_norm2(out))).squeeze(1)


@torch.no_grad()
def reference_forward(
    model: nn.Module,
    clip: torch.Tensor,
    stages: Sequence[Stage] = (),
    method: str = "sta",
    use_positions: bool = True,
) -> dict[str, torch.Tensor]:
    """Slow reference of a pruned V-JEPA 2 on ``clip`` (B, T, C, H, W).

    ``method``: "sta", "random" (RandomPruning(0), keyed on the clip's content like the engine)
    or "tome"; ``use_positions=False``: the bug to catch, later blocks see ids 0..L'-1.
    Returns ``"logits"`` (B, labels) (classifier) or ``"last_hidden_state"`` (B, L, C)
    (VJEPA2Model), and ``"positions"`` (B, L) grid ids of the final tokens.
    """
    base = getattr(model, "vjepa2", model)
    enc = base.encoder
    h = enc.embeddings(clip)
    b = h.shape[0]
    pos = torch.arange(h.shape[1]).expand(b, -1)
    moved = False
    size = log_size = None
    by_block = {s.after_block: s for s in stages if s.r}
    ctx = ForwardContext(sample_key=content_keys(clip))
    for block, layer in enumerate(enc.layer):
        mask = pos if moved and use_positions else None
        keys = _head_keys(layer, h) if block in by_block else None
        h = layer(h, mask)[0] if log_size is None else _manual_layer(layer, h, mask, log_size)
        if block not in by_block:
            continue
        s = by_block[block]
        length, c = h.shape[1:]
        if method == "tome":
            g, n = s.groups, length // s.groups
            sz = torch.ones(b, length, 1, dtype=h.dtype) if size is None else size
            keep_a, src, dst = bipartite_plan(keys.reshape(b * g, n, -1), s.r)
            merged, size = merge_weighted(h.reshape(b * g, n, c), sz.reshape(b * g, n, 1), keep_a, src, dst)
            anchor = torch.cat([2 * keep_a, torch.arange(1, n, 2).expand(b * g, -1)], dim=1)
            kept = (anchor.view(b, g, -1) + torch.arange(g).view(1, g, 1) * n).reshape(b, -1)
            h, size = merged.reshape(b, -1, c), size.reshape(b, -1, 1)
            log_size = size.squeeze(-1).log()
        else:
            if method == "sta":
                kept = sta_keep_indices(h, keys, s.groups, s.r, s.reverse)
            else:
                kept = RandomPruning(0).keep_indices(h, keys, s, ctx)
            h = h.gather(1, kept.unsqueeze(-1).expand(-1, -1, c))
        pos = pos.gather(1, kept)
        moved = True
    h = enc.layernorm(h)
    out = {"positions": pos}
    if hasattr(model, "pooler"):
        pooled = model.pooler(h) if log_size is None else _manual_pooler(model.pooler, h, log_size)
        out["logits"] = model.classifier(pooled)
    else:
        out["last_hidden_state"] = h
    return out


# tests ------------------------------------------------------------------------------------------


def _key(model: nn.Module) -> str:
    return "logits" if hasattr(model, "pooler") else "last_hidden_state"


def _out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if hasattr(model, "pooler"):
            return model(pixel_values_videos=x).logits
        return model(pixel_values_videos=x, skip_predictor=True).last_hidden_state


@pytest.fixture(scope="module", params=[False, True], ids=["classifier", "encoder"])
def model(request):
    return tiny_vjepa2(base=request.param)


@pytest.fixture(scope="module")
def x():
    return vjepa2_clip(batch=2)


def test_reference_at_r0_is_bitwise_stock(model, x):
    assert torch.equal(reference_forward(model, x)[_key(model)], _out(model, x))


@pytest.mark.parametrize(
    ("method", "kw"),
    [
        ("sta", dict(r=1)),
        ("sta", dict(r=5)),
        ("sta", dict(r=[2, 5, 7])),
        ("sta", dict(schedule=[(1, 2, 5), (3, 1, 10), (5, 1, 20)])),  # a stage after the last block
        ("sta", dict(flops_target=0.6)),
        ("random", dict(r=4)),
        ("tome", dict(r=8)),
        ("tome", dict(schedule="paper", r=3)),
    ],
    ids=["sta-r1", "sta-r5", "sta-per-stage", "sta-explicit", "sta-target", "random", "tome", "tome-paper"],
)
def test_pruned_equals_slow_reference(model, x, method, kw):
    stprune.patch(model, method=method, **kw)
    try:
        stages = stprune.patch_info(model).stages
        got = _out(model, x)
        trace = stprune.last_trace(model)
    finally:
        stprune.unpatch(model)
    ref = reference_forward(model, x, stages, method=method)
    assert got.shape == ref[_key(model)].shape
    assert (got - ref[_key(model)]).abs().max().item() < TOL
    if method != "tome":
        assert torch.equal(trace.stages[-1].positions, ref["positions"])


def test_r0_and_unpatch_are_bitwise_stock(model, x):
    stock = _out(model, x)
    stprune.patch(model, method="sta", r=0)
    zero = _out(model, x)
    stprune.unpatch(model)
    assert torch.equal(zero, stock)
    assert torch.equal(_out(model, x), stock)


class _PositionBlind(HFVJEPA2Adapter):
    """The adapter as a position-blind integration would have it: no ``position_mask`` passed."""

    needs_positions = False


def test_without_position_mask_the_output_is_wrong(model, x):
    """A pruner that does not hand later blocks their tokens' grid ids runs, but is wrong: the
    reference comparison above catches it by orders of magnitude."""
    stages = paper_stages(3)
    blind = SequencePruner(_PositionBlind(model), get_method("sta"), stages)
    blind.install()
    try:
        got = _out(model, x)
    finally:
        blind.remove()
    ref = reference_forward(model, x, stages)[_key(model)]
    assert (got - ref).abs().max().item() > 1e-6
    wrong = reference_forward(model, x, stages, use_positions=False)[_key(model)]
    assert (got - wrong).abs().max().item() < TOL


def test_eager_tome_adds_the_bias():
    """HF's VJEPA2 eager attention ignores attention_mask; the adapter's eager function adds it."""
    model, x = tiny_vjepa2(attn="eager"), vjepa2_clip()
    stprune.patch(model, method="tome", r=8)
    try:
        stages = stprune.patch_info(model).stages
        got = _out(model, x)
    finally:
        stprune.unpatch(model)
    ref = reference_forward(model, x, stages, method="tome")["logits"]
    assert (got - ref).abs().max().item() < EAGER_TOL


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_training_with_gradient_checkpointing_matches(reentrant):
    x = vjepa2_clip()
    grads, logits = [], []
    for checkpointing in (False, True):
        model = tiny_vjepa2().train()
        if checkpointing:
            enable_checkpointing(model, reentrant)
        stprune.patch(model, method="sta", r=3)
        out = model(pixel_values_videos=x).logits
        out.square().sum().backward()
        stprune.unpatch(model)
        logits.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.equal(logits[0], logits[1])
    assert (grads[0] - grads[1]).abs().max().item() < TOL


def test_predictor_on_pruned_encoder_is_refused(x):
    model = tiny_vjepa2(base=True)
    with torch.no_grad():
        stock = model(pixel_values_videos=x).predictor_output.last_hidden_state
    stprune.patch(model, method="sta", r=3)
    try:
        with pytest.raises(InputError, match="skip_predictor=True"):
            model(pixel_values_videos=x)
        with pytest.raises(InputError, match="context_mask"):
            model(pixel_values_videos=x, skip_predictor=True, context_mask=[torch.arange(128)[None]])
        with pytest.raises(InputError, match="encoder tokens"):  # the predictor called by hand
            model.predictor(torch.zeros(2, 100, 64, dtype=torch.float64), [torch.arange(100)[None]] * 2)
    finally:
        stprune.unpatch(model)
    stprune.patch(model, method="sta", r=0)  # nothing pruned: the predictor runs as stock
    try:
        with torch.no_grad():
            zero = model(pixel_values_videos=x).predictor_output.last_hidden_state
    finally:
        stprune.unpatch(model)
    assert torch.equal(zero, stock)


def test_wrong_clip_geometry_is_refused():
    model = tiny_vjepa2()
    stprune.patch(model, method="sta", r=2)
    try:
        with pytest.raises(InputError, match="frames_per_clip=16"):
            model(pixel_values_videos=vjepa2_clip(batch=1, frames=8))
        with pytest.raises(InputError, match="crop_size"):
            model(pixel_values_videos=torch.zeros(1, 16, 3, 48, 48, dtype=torch.float64))
    finally:
        stprune.unpatch(model)


def _measured_macs(model: nn.Module, inputs: dict) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return int(counter.get_total_flops()) // 2


def _assert_planned_macs_are_measured(model: nn.Module, inputs: dict, patch) -> None:
    """patch_info's MACs (pruned and unpruned) equal FlopCounterMode's count on ``inputs``."""
    unpruned = _measured_macs(model, inputs)
    patch()
    try:
        info = stprune.patch_info(model)
        measured = _measured_macs(model, inputs)
    finally:
        stprune.unpatch(model)
    assert measured == info.macs
    assert unpruned == info.macs_unpruned


@pytest.mark.parametrize("base", [False, True], ids=["classifier", "encoder"])
@pytest.mark.parametrize(
    ("method", "kw"),
    [
        ("sta", dict(r=2)),
        ("sta", dict(schedule=[(1, 2, 5), (3, 1, 10), (5, 1, 20)])),  # the pooler reads fewer tokens
        ("tome", dict(r=8)),
        ("sta", dict(r=0)),
    ],
    ids=["sta", "sta-after-last-block", "tome", "unpruned"],
)
def test_estimated_macs_equal_measured(base, method, kw):
    model = tiny_vjepa2(base=base, dtype=torch.float32)
    inputs = get_adapter(model).example_inputs(batch_size=1)
    _assert_planned_macs_are_measured(model, inputs, lambda: stprune.patch(model, method=method, **kw))


PRESET_SLOTS = {"vjepa2-l": 32, "vjepa2-h": 32, "vjepa2-g": 32, "vjepa2-l-fpc16": 8}


@pytest.mark.parametrize("name", sorted(PRESET_SLOTS))
def test_presets_build_on_meta_and_plan(name):
    with torch.device("meta"):
        model = build_preset(name)
    lay = get_adapter(model).layout()
    assert (lay.num_slots, lay.tokens_per_slot) == (PRESET_SLOTS[name], 256)
    stprune.patch(model, method="sta", flops_target=0.5)
    try:
        assert 0.45 < stprune.patch_info(model).flops_ratio <= 0.5
    finally:
        stprune.unpatch(model)


def test_preset_cost_model_is_exact_at_full_size():
    """vjepa2-l-fpc16 (2048 tokens) on meta tensors: the formula is what FlopCounterMode counts."""
    with torch.device("meta"):
        model = build_preset("vjepa2-l-fpc16")
    inputs = get_adapter(model).example_inputs(batch_size=1, device="meta")
    unpruned = _measured_macs(model, inputs)
    stprune.patch(model, method="sta", r=64)
    try:
        info = stprune.patch_info(model)
        assert _measured_macs(model, inputs) == info.macs
    finally:
        stprune.unpatch(model)
    assert unpruned == info.macs_unpruned


def test_eval_loading_feeds_pixel_values_videos(tmp_path):
    """A saved V-JEPA 2 resolves for eval: size / frames from crop_size / frames_per_clip, and the
    clip goes in as ``pixel_values_videos`` (the adapter's input name)."""
    from stprune.architectures.loading import resolve_model

    model = tiny_vjepa2(dtype=torch.float32)
    model.save_pretrained(tmp_path)
    resolved = resolve_model(str(tmp_path))
    assert (resolved.preprocessing.image_size, resolved.preprocessing.num_frames) == (64, 16)
    views = vjepa2_clip(dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(resolved.logits(views), model(pixel_values_videos=views).logits)


# another frame count: the num_frames option ---------------------------------------------------------


def _patched_at(model: nn.Module, frames: int, **kw) -> None:
    stprune.patch(model, num_frames=frames, **kw)


@pytest.mark.parametrize("base", [False, True], ids=["classifier", "encoder"])
@pytest.mark.parametrize(
    ("method", "kw"),
    [("sta", dict(r=3)), ("sta", dict(r=[2, 5, 7])), ("random", dict(r=4)), ("tome", dict(r=8))],
    ids=["sta", "sta-per-stage", "random", "tome"],
)
def test_num_frames_plans_for_another_frame_count_and_equals_the_reference(base, method, kw):
    """A model whose config says 4 frames (2 slots), patched for 8 (4 slots: the paper schedule
    then has 4, 2, 1 groups), equals the reference at 8 frames; a 4-frame clip is then refused."""
    model = tiny_vjepa2(base=base, frames=4)
    x = vjepa2_clip(batch=2, frames=8)
    _patched_at(model, 8, method=method, **kw)
    try:
        info = stprune.patch_info(model)
        got = _out(model, x)
        trace = stprune.last_trace(model)
        with pytest.raises(InputError, match=r"4 frames .*num_frames=8") as refused:
            _out(model, vjepa2_clip(batch=1, frames=4))
    finally:
        stprune.unpatch(model)
    assert "\n" not in str(refused.value)
    if method != "tome":
        assert [s.groups for s in info.stages] == [4, 2, 1]
    assert info.plan.tokens_per_block[0] == 4 * PER_SLOT
    ref = reference_forward(model, x, info.stages, method=method)
    assert (got - ref[_key(model)]).abs().max().item() < TOL
    if method != "tome":
        assert torch.equal(trace.stages[-1].positions, ref["positions"])
    assert model.config.frames_per_clip == 4  # the option does not change the model


@pytest.mark.parametrize("base", [False, True], ids=["classifier", "encoder"])
@pytest.mark.parametrize("kw", [dict(r=3), dict(r=0), dict(method="tome", r=8)], ids=["sta", "r0", "tome"])
def test_num_frames_macs_equal_measured(base, kw):
    model = tiny_vjepa2(base=base, dtype=torch.float32, frames=4)
    inputs = {"pixel_values_videos": torch.randn(1, 8, 3, 64, 64)}
    if base:
        inputs["skip_predictor"] = True
    _assert_planned_macs_are_measured(model, inputs, lambda: _patched_at(model, 8, **kw))


def test_num_frames_of_the_config_changes_nothing():
    model, x = tiny_vjepa2(), vjepa2_clip()
    stprune.patch(model, r=3)
    default, info = _out(model, x), stprune.patch_info(model)
    stprune.unpatch(model)
    _patched_at(model, 16, r=3)
    try:
        assert torch.equal(_out(model, x), default)
        assert stprune.patch_info(model) == info
    finally:
        stprune.unpatch(model)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (5, SettingError, r"num_frames=5 .*multiple of tubelet_size=2"),
        (0, SettingError, r"num_frames=0 .*2, 4, 6"),
        (1, SettingError, r"num_frames=1 .*>= 2"),
        (-4, SettingError, r"num_frames=-4"),
        (8.0, SettingTypeError, r"num_frames=8\.0 .*int"),
        ("8", SettingTypeError, r"num_frames='8' .*int"),
        (True, SettingTypeError, r"num_frames=True"),
    ],
)
def test_bad_num_frames_are_one_line_errors(value, error, match):
    model = tiny_vjepa2(frames=4)
    with pytest.raises(error, match=match) as err:
        _patched_at(model, value, r=1)
    assert "\n" not in str(err.value)
    assert not stprune.is_patched(model)


def test_paper_schedule_needs_slots_divisible_by_4():
    """12 frames = 6 slots: the paper's T0 / 4 groups do not exist; the error says so, "every" works."""
    model = tiny_vjepa2(frames=4)
    with pytest.raises(SettingError, match=r"T0/4 groups.*multiple of 4; got T0=6") as err:
        _patched_at(model, 12, r=1)
    assert "\n" not in str(err.value)
    _patched_at(model, 12, schedule="every", method="tome", r=2)
    try:
        assert _out(model, vjepa2_clip(batch=1, frames=12)).shape == (1, 5)
    finally:
        stprune.unpatch(model)


@pytest.mark.parametrize("family", ["HFVideoMAEAdapter", "HFVivitAdapter", "VideoSwinAdapter"])
def test_other_families_reject_num_frames(family):
    import stprune.adapters as adapters

    model = getattr(adapters, family).example_model()
    with pytest.raises(SettingTypeError, match="num_frames") as err:
        stprune.patch(model, r=1, num_frames=8)
    assert "\n" not in str(err.value)
    assert not stprune.is_patched(model)


def test_eval_loading_num_frames_sets_the_frame_count(tmp_path):
    """``resolve_model(num_frames=)`` (``stprune eval --num-frames``): a V-JEPA 2 runs at that count."""
    from stprune.architectures.loading import resolve_model

    tiny_vjepa2(dtype=torch.float32, frames=4).save_pretrained(tmp_path)
    resolved = resolve_model(str(tmp_path), num_frames=8)
    assert resolved.preprocessing.num_frames == resolved.model.config.frames_per_clip == 8
    stprune.patch(resolved.model, r=2)
    try:
        assert [s.groups for s in stprune.patch_info(resolved.model).stages] == [4, 2, 1]
        assert resolved.logits(vjepa2_clip(batch=1, frames=8, dtype=torch.float32)).shape == (1, 5)
    finally:
        stprune.unpatch(resolved.model)
    with pytest.raises(SettingError, match=r"num_frames=7 .*multiple of tubelet_size=2"):
        resolve_model(str(tmp_path), num_frames=7)
    with pytest.raises(SettingError, match="--image-size"):
        resolve_model(str(tmp_path), image_size=32)


def test_eval_loading_num_frames_for_vjepa2_presets(monkeypatch):
    from stprune.architectures import loading

    def on_meta(name: str) -> nn.Module:  # the preset's config without 300M random weights
        with torch.device("meta"):
            return build_preset(name)

    monkeypatch.setattr(loading, "build_preset", on_meta)
    resolve_model = loading.resolve_model
    resolved = resolve_model("vjepa2-l-fpc16", num_frames=8)
    assert resolved.preprocessing.num_frames == resolved.model.config.frames_per_clip == 8
    assert resolved.preprocessing.short_side == 292
    with pytest.raises(
        SettingError, match=r"--image-size 128: V-JEPA 2 preset 'vjepa2-l-fpc16' takes --num-frames only"
    ):
        resolve_model("vjepa2-l-fpc16", num_frames=8, image_size=128)
    with pytest.raises(SettingError, match="--num-frames"):
        resolve_model("videomae-s", num_frames=8)
