"""RLT as a method: kept tokens, positions, padding, FLOPs, per family (ViT family), and its errors.

The rule is recomputed here independently (Python loops over the published definition), and the
pruned models are compared with a slow reference that runs each clip alone through the model's
own modules (embedding, the kept tokens gathered by hand, every block, the head).
"""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_SWIN, enable_checkpointing, tiny_videomae, tiny_vivit
from torch import nn
from transformers import VideoMAEConfig, VideoMAEForVideoClassification

import stprune
from stprune.adapters import get_adapter
from stprune.adapters.hf_vjepa2 import HFVJEPA2Adapter
from stprune.api import _pruner
from stprune.bench.flops import count_macs
from stprune.errors import InputError, SettingError, SettingTypeError, UnsupportedModelError
from stprune.methods import RLT

FRAMES, IMAGE, TUBELET, PATCH = 16, 64, 2, 16
SLOTS, SIDE = FRAMES // TUBELET, IMAGE // PATCH
N = SIDE * SIDE


def _videomae_token0() -> nn.Module:
    torch.manual_seed(0)
    cfg = VideoMAEConfig(
        image_size=IMAGE,
        patch_size=PATCH,
        num_frames=FRAMES,
        tubelet_size=TUBELET,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
        use_mean_pooling=False,
    )
    return VideoMAEForVideoClassification(cfg).eval()


FAMILIES = {
    "videomae": lambda: tiny_videomae(depth=4),
    "videomae-token0": _videomae_token0,
    "vivit": lambda: tiny_vivit(depth=4),
    "vjepa2": lambda: HFVJEPA2Adapter.example_model(seed=0),
}


def _input_name(model: nn.Module) -> str:
    return get_adapter(model).input_grid().input_name


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**{_input_name(model): x}).logits


def _layer(layer: nn.Module, h: torch.Tensor, *args: object) -> torch.Tensor:
    out = layer(h, *args)
    return out[0] if isinstance(out, tuple) else out


def reference_logits(model: nn.Module, x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Logits of one clip ``x`` (1, T, C, H, W) with only the grid tokens ``kept`` (K,) run."""
    name = type(model).__name__
    with torch.no_grad():
        if name.startswith("VideoMAE"):
            h = model.videomae.embeddings(x, None)[:, kept]
            for layer in model.videomae.encoder.layer:
                h = _layer(layer, h)
            if model.videomae.layernorm is not None:
                h = model.videomae.layernorm(h)
            pooled = model.fc_norm(h.mean(1)) if model.fc_norm is not None else h[:, 0]
            return model.classifier(pooled)
        if name.startswith("Vivit"):
            e = model.vivit.embeddings(x)
            h = torch.cat([e[:, :1], e[:, 1 + kept]], dim=1)
            blocks = model.vivit.layers if hasattr(model.vivit, "layers") else model.vivit.encoder.layer
            for layer in blocks:
                h = _layer(layer, h)
            return model.classifier(model.vivit.layernorm(h)[:, 0])
        enc = model.vjepa2.encoder  # V-JEPA 2: rotary positions of the kept tokens
        h = enc.embeddings(x)[:, kept]
        for layer in enc.layer:
            h = _layer(layer, h, kept[None])
        return model.classifier(model.pooler(enc.layernorm(h)))


def rule_keeps(x: torch.Tensor, tau: float) -> list[int]:
    """Grid indices RLT keeps for one clip (T, C, H, W), by the published rule, with loops."""
    kept = list(range(N))  # the first tubelet
    for t in range(1, SLOTS):
        last, first = x[(t + 1) * TUBELET - 1], x[(t - 1) * TUBELET]
        for y in range(SIDE):
            for w in range(SIDE):
                box = (slice(None), slice(y * PATCH, (y + 1) * PATCH), slice(w * PATCH, (w + 1) * PATCH))
                if float((last[box] - first[box]).abs().mean()) > tau:
                    kept.append(t * N + y * SIDE + w)
    return kept


def moving_square_clip(
    start: int = 0, speed: int = 1, flicker: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(T, 3, H, W): a fixed textured background and one bright patch-sized square that moves
    ``speed`` patches to the right per tubelet (row 1), from column ``start``; ``flicker``: the
    last row of patches gets new noise in every frame as well."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(3, IMAGE, IMAGE, generator=g, dtype=dtype).expand(FRAMES, -1, -1, -1).clone()
    for f in range(FRAMES):
        col = (start + speed * (f // TUBELET)) % SIDE
        x[f, :, PATCH : 2 * PATCH, col * PATCH : (col + 1) * PATCH] = 3.0
        if flicker:
            x[f, :, -PATCH:] = torch.rand(3, PATCH, IMAGE, generator=g, dtype=dtype)
    return x


def square_tokens(start: int, speed: int) -> list[int]:
    """What the rule must keep for :func:`moving_square_clip`, stated directly: the first slot,
    then in slot t the square's place now and one tubelet earlier (nothing when it stands still)."""
    kept = set(range(N))
    for t in range(1, SLOTS if speed % SIDE else 1):
        for col in ((start + speed * t) % SIDE, (start + speed * (t - 1)) % SIDE):
            kept.add(t * N + 1 * SIDE + col)
    return sorted(kept)


@pytest.fixture(params=list(FAMILIES), scope="module")
def family(request):
    return request.param


def _model(family: str, dtype: torch.dtype = torch.float64) -> nn.Module:
    return FAMILIES[family]().to(dtype)


# the rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "speed"), [(0, 1), (2, 0), (1, 2)])
def test_moving_square_keeps_exactly_the_moving_patches_and_the_first_tubelet(family, start, speed):
    model = _model(family)
    x = moving_square_clip(start, speed)
    expected = square_tokens(start, speed)
    assert rule_keeps(x, 0.1) == expected  # the loops agree with the statement of the rule
    stprune.patch(model, "rlt", threshold=0.1)
    _logits(model, x[None])
    st = stprune.last_trace(model).stages[0]
    assert st.stage.after_block == -1 and st.counts is not None
    assert st.positions[0].tolist() == expected[1:] if family == "videomae-token0" else expected
    assert stprune.last_trace(model).tokens_per_block[0] == len(expected) + (family == "vivit")


def test_threshold_on_random_clips_equals_the_rule():
    model = _model("videomae")
    g = torch.Generator().manual_seed(3)
    base = torch.rand(1, 3, IMAGE, IMAGE, generator=g, dtype=torch.float64)
    # noise of a different amplitude in every patch: mean |difference| = amplitude / 3, in [0, 0.2]
    amp = 0.6 * torch.rand(SLOTS, 1, SIDE, SIDE, generator=g, dtype=torch.float64)
    amp = amp.repeat_interleave(TUBELET, 0).repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)
    x = base + amp * torch.rand(FRAMES, 3, IMAGE, IMAGE, generator=g, dtype=torch.float64)
    for tau in (0.05, 0.1, 0.15):
        stprune.patch(model, "rlt", threshold=tau)
        _logits(model, x[None])
        got = stprune.last_trace(model).stages[0].positions[0].tolist()
        stprune.unpatch(model)
        expected = rule_keeps(x, tau)
        assert got == expected
        assert N < len(expected) < SLOTS * N  # the taus cut inside the range: not a trivial case


# outputs equal each clip alone -------------------------------------------------------------------


def _varied_batch() -> torch.Tensor:
    """Three clips that keep different numbers of tokens under tau = 0.1."""
    return torch.stack([moving_square_clip(0, 1), moving_square_clip(2, 0), moving_square_clip(1, 2, True)])


def test_threshold_batch_equals_each_clip_alone_and_the_reference(family):
    model = _model(family)
    x = _varied_batch()
    stprune.patch(model, "rlt", threshold=0.1)
    batch = _logits(model, x)
    st = stprune.last_trace(model).stages[0]
    counts = st.counts.tolist()
    assert len(set(counts)) == 3  # padded: the clips keep different numbers of tokens
    alone = [_logits(model, x[i : i + 1]) for i in range(3)]
    stprune.unpatch(model)  # the reference runs the model's own modules, unhooked
    for i in range(3):
        torch.testing.assert_close(batch[i], alone[i][0], rtol=0, atol=1e-10)  # float64: rounding only
        ref = reference_logits(model, x[i : i + 1], torch.tensor(rule_keeps(x[i], 0.1)))
        torch.testing.assert_close(alone[i], ref, rtol=0, atol=1e-10)
        row = st.positions[i]
        assert (row[counts[i] :] == -1).all() and (row[: counts[i]] >= 0).all()
    assert not torch.allclose(ref, _logits(model, x[2:3]), atol=1e-3)  # pruning changed the output


def test_budget_mode_equals_the_reference(family):
    model = _model(family)
    x = _varied_batch()
    stprune.patch(model, "rlt", r=40)
    out = _logits(model, x)
    st = stprune.last_trace(model).stages[0]
    stprune.unpatch(model)
    assert st.counts is None and st.kept.min() >= 0
    grid = st.positions
    if family == "videomae-token0":  # token 0 is protected: grid place 0, not in the positions
        grid = torch.cat([torch.zeros(3, 1, dtype=torch.long), grid], 1)
    assert grid.shape[1] == SLOTS * N - 40
    for i in range(3):
        ref = reference_logits(model, x[i : i + 1], grid[i])
        torch.testing.assert_close(out[i : i + 1], ref, rtol=0, atol=1e-10)
        assert set(range(N)) <= set(grid[i].tolist())  # the first slot is never dropped


def test_budget_drops_the_smallest_differences():
    from stprune.core.rlt import patch_differences

    model = _model("videomae")
    x = _varied_batch()[1:2] + 0.01 * torch.rand(1, FRAMES, 3, IMAGE, IMAGE, dtype=torch.float64)
    stprune.patch(model, "rlt", r=60)
    _logits(model, x)
    kept = set(stprune.last_trace(model).stages[0].positions[0].tolist())
    d = patch_differences(x, TUBELET, PATCH)[0].flatten()
    dropped = [i for i in range(SLOTS * N) if i not in kept]
    assert len(dropped) == 60
    assert max(d[dropped]) <= min(d[sorted(kept)])


def test_rlt_without_setting_is_the_paper_threshold():
    model = _model("videomae")
    x = _varied_batch()
    stprune.patch(model, "rlt")
    a = _logits(model, x)
    stprune.unpatch(model)
    stprune.patch(model, RLT(threshold=0.1))
    torch.testing.assert_close(_logits(model, x), a, rtol=0, atol=0)


# FLOPs ------------------------------------------------------------------------------------------


def test_threshold_macs_per_clip_equal_flop_counter(family):
    model = _model(family, torch.float32)
    x = _varied_batch().float()
    name = _input_name(model)
    stprune.patch(model, "rlt", threshold=0.1)
    batch_macs = count_macs(model, {name: x})
    per_clip = stprune.last_macs(model)
    padded = _pruner(model).traced_macs()
    assert batch_macs == 3 * padded  # what the padded batch computed
    for i in range(3):
        assert count_macs(model, {name: x[i : i + 1]}) == int(per_clip[i])  # what each clip needs
    assert int(per_clip.max()) == padded and len(set(per_clip.tolist())) == 3
    info = stprune.patch_info(model)
    assert info.macs == info.macs_unpruned and info.stages[0].r is None  # the upper bound


def test_budget_macs_and_flops_target(family):
    model = _model(family, torch.float32)
    x = _varied_batch().float()
    name = _input_name(model)
    base = count_macs(model, {name: x[:1]})
    for target in (0.9, 0.75, 0.6):
        stprune.patch(model, "rlt", flops_target=target)
        info = stprune.patch_info(model)
        measured = count_macs(model, {name: x[:1]})
        assert measured == info.macs == int(stprune.last_macs(model)[0])
        assert info.flops_ratio <= target and measured / base <= target
        r = info.stages[0].r
        stprune.unpatch(model)
        stprune.patch(model, "rlt", r=r - 1)  # one token fewer dropped is above the target
        assert stprune.patch_info(model).flops_ratio > target
        stprune.unpatch(model)


def test_last_macs_for_other_methods_is_the_per_clip_cost():
    model = _model("videomae", torch.float32)
    x = _varied_batch().float()
    stprune.patch(model, "sta", r=4)
    _logits(model, x)
    macs = stprune.last_macs(model)
    assert macs.tolist() == [stprune.patch_info(model).macs] * 3
    assert count_macs(model, {"pixel_values": x}) == int(macs.sum())


# restore_tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "kw"),
    [("rlt", {"threshold": 0.1}), ("rlt", {"r": 50}), ("sta", {"r": 3}), ("random", {"r": 3})],
)
def test_restore_tokens_puts_every_kept_token_back(method, kw):
    model = tiny_videomae(depth=4, base=True).double()
    x = _varied_batch()
    stprune.patch(model, method, **kw)
    with torch.no_grad():
        hidden = model(pixel_values=x).last_hidden_state
    st = stprune.last_trace(model).stages[-1]
    grid, real = stprune.restore_tokens(model, hidden, fill=-7.0)
    assert grid.shape == (3, SLOTS * N, hidden.shape[-1])
    for i in range(3):
        pos = st.positions[i]
        ok = pos >= 0
        torch.testing.assert_close(grid[i, pos[ok]], hidden[i, ok], rtol=0, atol=0)
        assert int(real[i].sum()) == int(ok.sum())
        assert (grid[i][~real[i]] == -7.0).all()
    nearest, real2 = stprune.restore_tokens(model, hidden)
    assert torch.equal(real, real2)
    torch.testing.assert_close(nearest[real], grid[real], rtol=0, atol=0)
    # a pruned place holds the token at the same spatial index in the nearest kept slot
    i, place = next((i, int(p)) for i in range(3) for p in (~real[i]).nonzero().flatten())
    t, n = divmod(place, N)
    slots = [s for s in range(SLOTS) if real[i, s * N + n]]
    src = min(slots, key=lambda s: (abs(s - t), s))
    torch.testing.assert_close(nearest[i, place], grid[i, src * N + n], rtol=0, atol=0)


def test_restore_tokens_vivit_cls_and_errors():
    model = tiny_vivit(depth=4).double()
    x = _varied_batch()
    stprune.patch(model, "rlt", threshold=0.1)
    with torch.no_grad():
        hidden = model(pixel_values=x, output_hidden_states=True).hidden_states[-1]
        with pytest.raises(InputError, match="call the patched model itself"):
            model.vivit(pixel_values=x)  # the selection needs the call that gets the clip
    grid, real = stprune.restore_tokens(model, hidden, fill=0.0)
    counts = stprune.last_trace(model).stages[0].counts
    assert real.sum(1).tolist() == counts.tolist()
    with pytest.raises(ValueError, match="hidden must be"):
        stprune.restore_tokens(model, hidden[:, 1:])
    stprune.unpatch(model)
    stprune.patch(model, "tome", r=2)
    with torch.no_grad():
        model(pixel_values=x)
    with pytest.raises(SettingError, match="merged tokens"):
        stprune.restore_tokens(model, hidden)


# training ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [{"threshold": 0.1}, {"r": 40}])
def test_training_with_and_without_checkpointing(kw):
    x = _varied_batch()
    grads = []
    for checkpointing in (False, True):
        model = _model("videomae")
        if checkpointing:
            enable_checkpointing(model)
        model.train()
        stprune.patch(model, "rlt", **kw)
        model(pixel_values=x).logits.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-12)


# errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"threshold": 0.1, "r": 4}, SettingError, "not both"),
        ({"threshold": 0.1, "flops_target": 0.5}, SettingError, "not both"),
        ({"threshold": "high"}, SettingTypeError, "threshold must be a real number"),
        ({"threshold": float("nan")}, SettingError, "finite"),
        ({"threshold": -1}, SettingError, "threshold must be >= 0"),
        ({"r": SLOTS * N}, SettingError, f"0 <= r <= {(SLOTS - 1) * N}"),
        ({"r": [1, 2]}, SettingTypeError, "one r"),
        ({"r": 4, "schedule": "paper"}, SettingError, "takes no schedule"),
        ({"flops_target": 0.01}, SettingError, "lowest achievable FLOPs ratio"),
    ],
)
def test_bad_settings(kwargs, error, words):
    model = _model("videomae")
    with pytest.raises(error, match=words) as info:
        stprune.patch(model, "rlt", **kwargs)
    assert "\n" not in str(info.value)
    assert not stprune.is_patched(model)


def test_method_options_go_to_their_method_only():
    model = _model("videomae")
    with pytest.raises(SettingTypeError, match="threshold"):
        stprune.patch(model, "sta", r=2, threshold=0.1)  # STA has no threshold
    with pytest.raises(SettingTypeError, match="already configured"):
        stprune.patch(model, RLT(), threshold=0.1)
    assert not stprune.is_patched(model)
    x = _varied_batch()
    kept = []
    for seed in (0, 0, 5):
        stprune.patch(model, "random", r=6, seed=seed)  # RandomPruning's seed is an option too
        _logits(model, x)
        kept.append(stprune.last_trace(model).stages[0].positions)
        stprune.unpatch(model)
    assert torch.equal(kept[0], kept[1]) and not torch.equal(kept[0], kept[2])
    with pytest.raises(SettingTypeError, match="seed must be an int"):
        stprune.patch(model, "random", r=6, seed="7")


def test_video_swin_refuses_rlt_with_the_reason():
    from stprune.models import VideoSwin

    model = VideoSwin(TINY_SWIN).eval()
    with pytest.raises(UnsupportedModelError, match="before the first block"):
        stprune.patch(model, "rlt", r=4)
    assert not stprune.is_patched(model)


def test_rlt_on_vjepa2_at_another_frame_count():
    """V-JEPA 2's family option num_frames reaches the input-level pruner too."""
    model = _model("vjepa2")
    x = _varied_batch()[:, :8]  # 8 frames: 4 slots, for a model configured for 16
    stprune.patch(model, "rlt", threshold=0.1, num_frames=8)
    out = _logits(model, x)
    st = stprune.last_trace(model).stages[0]
    assert st.tokens_in == 4 * N
    stprune.unpatch(model)
    for i in range(3):
        kept = st.positions[i][: int(st.counts[i])]
        torch.testing.assert_close(
            out[i : i + 1], reference_logits(model, x[i : i + 1], kept), rtol=0, atol=1e-10
        )
    with pytest.raises(SettingTypeError, match="num_frames"):
        stprune.patch(_model("videomae"), "rlt", r=4, num_frames=8)
