"""Video LLMs: pruned generation equals an independent reference, and everything around it.

The reference (``tests/video_llm_utils.py``) is the *unpatched* language model fed only the kept
video embeddings at their original positions, decoding greedily with no cache. Everything runs
in float64 on tiny random configs of each host, batch 2 with left padding and rows of different
lengths, several decoding steps.
"""

from __future__ import annotations

import math

import pytest
import torch

import stprune
from stprune.adapters import get_adapter
from stprune.adapters.hf_llava_onevision import HFLlavaOnevisionAdapter
from stprune.adapters.hf_qwen2_5_vl import HFQwen2_5_VLAdapter
from stprune.adapters.hf_qwen3_vl import HFQwen3VLAdapter
from stprune.adapters.hf_qwen_vl import pack_qwen_video, unpack_qwen_video
from stprune.core.dycoke import dycoke_kept_count, dycoke_ttm_keep
from stprune.core.evs import evs_retention_mask
from stprune.core.rlt import keep_by_budget, patch_differences
from stprune.core.sta import sta_keep_indices
from stprune.errors import InputError, SettingError, SettingTypeError, UnsupportedModelError
from tests.video_llm_utils import Row, build_prompt, reference_generate

QWEN = [HFQwen2_5_VLAdapter, HFQwen3VLAdapter]


def per_slot(keep_ratio: float, n: int) -> int:
    """Tokens kept per temporal slot of n tokens: keep_ratio * n rounded half up, at least 1 (docs)."""
    return max(1, math.floor(keep_ratio * n + 0.5))


HOSTS = [*QWEN, HFLlavaOnevisionAdapter]
STEPS = 6


@pytest.fixture(scope="module", params=HOSTS, ids=lambda a: a.__name__)
def host(request):
    model = request.param.example_model(seed=0).double()
    return request.param, model


def _video(adapter_cls, size: str):
    """A video item: Qwen patch grids (T', Hp, Wp); LLaVA-OneVision frame counts (one per call)."""
    if adapter_cls is HFLlavaOnevisionAdapter:
        return 4
    return {"big": (4, 4, 6), "small": (2, 4, 4)}[size]  # patches; merge 2 -> 2 x 3 and 2 x 2 tokens


def two_rows(adapter_cls) -> list[Row]:
    """Batch 2, rows of different lengths (so left padding), one video each."""
    return [
        Row([("text", [5, 6, 7]), ("video", _video(adapter_cls, "big")), ("text", [8, 9, 10, 11])]),
        Row([("text", [12]), ("video", _video(adapter_cls, "small")), ("text", [13, 14])]),
    ]


def _methods(adapter_cls) -> list[str]:
    methods = ["sta", "random", "dycoke", "evs"]
    return methods + (["rlt"] if adapter_cls in QWEN else [])


def _patched_generate(model, inputs, method, **kwargs):
    """Greedy tokens (B, STEPS) of the patched model, its trace, and (B, V) float64 logits of a
    pruned forward of the prompt (1-D positions passed as generate computes them: a plain forward
    of a 1-D model numbers left padding as tokens)."""
    extra = {}
    if "mm_token_type_ids" not in inputs:
        mask = inputs["attention_mask"]
        extra["position_ids"] = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    stprune.patch(model, method, **kwargs)
    try:
        out = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False)
        logits = model(**inputs, **extra).logits[:, -1]
        trace = stprune.last_trace(model)
    finally:
        stprune.unpatch(model)
    return out[:, inputs["input_ids"].shape[1] :], trace, logits


@pytest.mark.parametrize("method", ["sta", "random", "rlt", "dycoke", "evs"])
def test_generate_equals_reference(host, method):
    adapter_cls, model = host
    if method not in _methods(adapter_cls):
        with pytest.raises(UnsupportedModelError, match="bilinear"):
            stprune.patch(model, method, keep_ratio=0.5)
        assert not stprune.is_patched(model)
        return
    inputs = build_prompt(model, two_rows(adapter_cls))
    tokens, trace, logits = _patched_generate(model, inputs, method, keep_ratio=0.5)
    ref_tokens, ref_logits = reference_generate(model, inputs, trace, STEPS)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-10)
    assert len(trace.videos) == 2 and [v.sample for v in trace.videos] == [0, 1]
    assert trace.length_out < trace.length_in


def test_two_videos_in_one_prompt(host):
    adapter_cls, model = host
    v1, v2 = _video(adapter_cls, "big"), _video(adapter_cls, "small")
    rows = [
        Row([("text", [5]), ("video", v1), ("text", [6, 7]), ("video", v2), ("text", [8])]),
        Row([("text", [9, 10]), ("video", v2), ("text", [11])]),
    ]
    inputs = build_prompt(model, rows)
    tokens, trace, logits = _patched_generate(model, inputs, "sta", keep_ratio=0.5)
    assert [(v.sample, v.index) for v in trace.videos] == [(0, 0), (0, 1), (1, 2)]
    ref_tokens, ref_logits = reference_generate(model, inputs, trace, STEPS)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-10)


@pytest.mark.parametrize("adapter_cls", QWEN, ids=lambda a: a.__name__)
def test_video_and_image_in_one_prompt(adapter_cls):
    model = adapter_cls.example_model(seed=0).double()
    rows = [
        Row([("text", [5]), ("image", (1, 4, 4)), ("text", [6]), ("video", (4, 4, 6)), ("text", [7, 8])]),
        Row([("text", [9]), ("video", (2, 4, 4)), ("text", [10]), ("image", (1, 4, 6)), ("text", [11])]),
    ]
    inputs = build_prompt(model, rows)
    tokens, trace, logits = _patched_generate(model, inputs, "sta", keep_ratio=0.5)
    ref_tokens, ref_logits = reference_generate(model, inputs, trace, STEPS)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-10)
    # only video tokens were dropped: the images (and the text) are all still there
    dropped = torch.zeros(2, dtype=torch.int64)
    for v in trace.videos:
        dropped[v.sample] += v.tokens_in - v.tokens_out
    assert torch.equal(trace.row_kept, trace.row_lengths - dropped)
    assert torch.equal(trace.row_lengths, inputs["attention_mask"].sum(1))


def test_llava_positions_original_and_repacked():
    model = HFLlavaOnevisionAdapter.example_model(seed=0).double()
    inputs = build_prompt(model, two_rows(HFLlavaOnevisionAdapter))
    for mode in ("original", "repacked"):
        tokens, trace, logits = _patched_generate(model, inputs, "sta", keep_ratio=0.5, positions=mode)
        ref_tokens, ref_logits = reference_generate(model, inputs, trace, STEPS, repacked=mode == "repacked")
        assert torch.equal(tokens, ref_tokens), mode
        torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-10)


def test_generate_without_cache_and_with_beams(host):
    """generate without the KV cache (every step a full pruned forward) gives the cached tokens;
    beam search and several sequences per prompt repeat each row, and each copy is pruned alike."""
    adapter_cls, model = host
    inputs = build_prompt(model, two_rows(adapter_cls))
    method = "rlt" if adapter_cls in QWEN else "sta"  # rlt needs the pixels generate encoded first
    stprune.patch(model, method, keep_ratio=0.5)
    try:
        cached = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False)
        trace = stprune.last_trace(model)
        uncached = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, use_cache=False)
        assert torch.equal(cached, uncached)
        model.generate(**inputs, max_new_tokens=2, do_sample=False, num_beams=2)
        beams = stprune.last_trace(model)
    finally:
        stprune.unpatch(model)
    assert [v.sample for v in beams.videos] == [0, 1, 2, 3]
    for i, v in enumerate(beams.videos):
        assert torch.equal(v.kept, trace.videos[i // 2].kept) and v.grid == trace.videos[i // 2].grid


def test_text_only_and_image_only_prompts_run_bitwise_stock(host):
    adapter_cls, model = host
    text = build_prompt(model, [Row([("text", [5, 6, 7, 8])]), Row([("text", [9, 10])])])
    calls = [text]
    if adapter_cls in QWEN:
        calls.append(build_prompt(model, [Row([("text", [5]), ("image", (1, 4, 4)), ("text", [6])])]))
    for inputs in calls:
        stock = model(**inputs).logits
        stock_gen = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        stprune.patch(model, "sta", keep_ratio=0.25)
        try:
            assert torch.equal(model(**inputs).logits, stock)
            assert torch.equal(model.generate(**inputs, max_new_tokens=3, do_sample=False), stock_gen)
            assert stprune.last_trace(model).videos == []
        finally:
            stprune.unpatch(model)


def test_the_bare_model_without_its_head_can_be_patched(host):
    """``*Model`` (no LM head): its last hidden states equal those of the patched
    ``*ForConditionalGeneration``."""
    adapter_cls, model = host
    inputs = build_prompt(model, two_rows(adapter_cls))
    stprune.patch(model, "sta", keep_ratio=0.5)
    try:
        full = model(**inputs, output_hidden_states=True).hidden_states[-1]
    finally:
        stprune.unpatch(model)
    stprune.patch(model.model, "sta", keep_ratio=0.5)
    try:
        bare = model.model(**inputs).last_hidden_state
        assert len(stprune.last_trace(model.model).videos) == 2
    finally:
        stprune.unpatch(model.model)
    assert torch.equal(bare, full)


def test_unpatch_gives_back_the_stock_model_bitwise(host):
    adapter_cls, model = host
    inputs = build_prompt(model, two_rows(adapter_cls))
    before = model(**inputs).logits
    stprune.patch(model, "sta", r=2)
    assert model(**inputs).logits.shape[1] < before.shape[1]
    stprune.unpatch(model)
    assert torch.equal(model(**inputs).logits, before)


def test_trace_reports_kept_indices_in_grid_order(host):
    adapter_cls, model = host
    inputs = build_prompt(model, two_rows(adapter_cls))
    stprune.patch(model, "sta", keep_ratio=0.25)
    try:
        model(**inputs)
        trace = stprune.last_trace(model)
    finally:
        stprune.unpatch(model)
    assert trace.batch_size == 2
    for v in trace.videos:
        t, h, w = v.grid
        kept_per_slot = per_slot(0.25, h * w)
        assert v.tokens_out == t * kept_per_slot
        assert v.kept.dtype == torch.int64 and v.kept.dim() == 1
        assert torch.equal(v.kept, v.kept.sort().values) and v.kept.unique().numel() == v.tokens_out
        assert int(v.kept.min()) >= 0 and int(v.kept.max()) < v.tokens_in
        counts = torch.bincount(v.kept // (h * w), minlength=t)  # STA keeps the same count per slot
        assert counts.tolist() == [kept_per_slot] * t
        # the kept columns hold video placeholders of that row
        assert (inputs["input_ids"][v.sample, v.columns] == model.config.video_token_id).all()
    assert trace.tokens_per_block == [trace.length_out] * get_adapter(model).llm_shape.layers


def test_manual_decoding_loop_without_mask_or_positions(host):
    """A user's own loop (prefill with a cache, then one token at a time, no mask and no position
    ids) decodes the same tokens as generate: the pruner supplies the unpruned positions."""
    adapter_cls, model = host
    inputs = build_prompt(model, [two_rows(adapter_cls)[0]])
    inputs.pop("attention_mask")
    stprune.patch(model, "sta", keep_ratio=0.5)
    try:
        expected = model.generate(**inputs, max_new_tokens=STEPS, do_sample=False)[
            :, inputs["input_ids"].shape[1] :
        ]
        out = model(**inputs, use_cache=True)
        cache, tokens = out.cache, []
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(STEPS):
            tokens.append(nxt)
            out = model(input_ids=nxt, cache=cache, use_cache=True)
            cache = out.cache
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    finally:
        stprune.unpatch(model)
    assert torch.equal(torch.cat(tokens, 1), expected)


# --- the selections are the methods' own rules on this video ------------------------------------


def _video_tokens(model, inputs, video: int = 0):
    """(T'*N, C) embeddings of a call's video, in grid order, from the unpatched model."""
    inner = model.model
    with torch.no_grad():
        if "video_grid_thw" in inputs:
            return inner.get_video_features(
                inputs["pixel_values_videos"], inputs["video_grid_thw"]
            ).pooler_output[video]
        return inner.get_video_features(inputs["pixel_values_videos"]).pooler_output[video, :-1]


def _kept(model, inputs, method, **kwargs):
    stprune.patch(model, method, **kwargs)
    try:
        model(**inputs)
        return stprune.last_trace(model).videos[0]
    finally:
        stprune.unpatch(model)


def test_sta_selection_is_sta_on_the_first_layers_keys(host):
    adapter_cls, model = host
    inputs = build_prompt(model, [two_rows(adapter_cls)[0]])
    video = _kept(model, inputs, "sta", keep_ratio=0.5)
    t, h, w = video.grid
    x = _video_tokens(model, inputs)
    layer = model.model.language_model.layers[0]
    with torch.no_grad():
        k = layer.self_attn.k_proj(layer.input_layernorm(x)).view(x.shape[0], -1, layer.self_attn.head_dim)
        if hasattr(layer.self_attn, "k_norm"):
            k = layer.self_attn.k_norm(k)
    r = h * w - per_slot(0.5, h * w)
    expected = sta_keep_indices(x[None], k.mean(1)[None], t, r)[0].sort().values
    assert torch.equal(video.kept, expected)
    # keys="embeddings": the same rule on the embeddings themselves
    video = _kept(model, inputs, "sta", keep_ratio=0.5, keys="embeddings")
    assert torch.equal(video.kept, sta_keep_indices(x[None], x[None], t, r)[0].sort().values)


def test_evs_and_dycoke_selections_are_their_rules(host):
    adapter_cls, model = host
    inputs = build_prompt(model, [two_rows(adapter_cls)[0]])
    x = _video_tokens(model, inputs)
    video = _kept(model, inputs, "evs", keep_ratio=0.5)
    t, h, w = video.grid
    budget = t * per_slot(0.5, h * w)
    assert torch.equal(video.kept, evs_retention_mask(x, h * w, budget).nonzero().squeeze(1))
    video = _kept(model, inputs, "dycoke", merging_ratio=0.5)
    n = h * w
    assert torch.equal(video.kept, dycoke_ttm_keep(x, n, int(0.5 * n)).sort().values)
    video = _kept(model, inputs, "dycoke", keep_ratio=0.75)
    budget = t * per_slot(0.75, n)
    keep = max(k for k in range(n + 1) if dycoke_kept_count(t, n, k) <= budget)
    assert torch.equal(video.kept, dycoke_ttm_keep(x, n, keep).sort().values)


@pytest.mark.parametrize("adapter_cls", QWEN, ids=lambda a: a.__name__)
def test_rlt_selection_is_the_pixel_rule_on_the_clip(adapter_cls):
    """RLT on the LLM's grid: a token is a tubelet of ``temporal_patch_size`` frames x (patch * merge)^2
    pixels; the frames are built first and packed as the processor does."""
    model = adapter_cls.example_model(seed=0).double()
    vcfg = model.config.vision_config
    ts, p, m = vcfg.temporal_patch_size, vcfg.patch_size, vcfg.spatial_merge_size
    frames = torch.randn(8, 3, 2 * p * m, 3 * p * m, dtype=torch.float64)
    frames[2:4, :, : p * m, : p * m] += 5.0  # one token changes a lot in slot 1
    rows = pack_qwen_video(frames, ts, p, m)
    assert torch.equal(unpack_qwen_video(rows, (4, 2 * m, 3 * m), 3, ts, p, m), frames)
    inputs = build_prompt(model, [Row([("text", [5]), ("video", (4, 2 * m, 3 * m)), ("text", [6])])])
    inputs["pixel_values_videos"] = rows
    video = _kept(model, inputs, "rlt", keep_ratio=0.5)
    diff = patch_differences(frames[None], ts, (p * m, p * m))
    assert torch.equal(video.kept, keep_by_budget(diff, 4 * 3)[0])
    assert 6 in video.kept.tolist()  # slot 1, token 0: the changed one


# --- settings and inputs that are refused -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"keep_ratio": 0}, SettingError, "keep_ratio must be in (0, 1]"),
        ({"keep_ratio": 1.5}, SettingError, "got 1.5"),
        ({"keep_ratio": "0.5"}, SettingTypeError, "keep_ratio must be a number"),
        ({"r": -1}, SettingError, "r must be >= 0"),
        ({"r": [1, 2]}, SettingTypeError, "one r"),
        ({"r": 1, "keep_ratio": 0.5}, SettingError, "not both"),
        ({"keep_ratio": 0.5, "flops_target": 0.5}, SettingError, "flops_target is not defined"),
        ({"keep_ratio": 0.5, "schedule": "paper"}, SettingError, "takes no schedule"),
        ({}, SettingError, "needs keep_ratio"),
        ({"keep_ratio": 0.5, "keys": "values"}, SettingError, "keys must be one of"),
        ({"keep_ratio": 0.5, "no_such": 1}, SettingTypeError, "unknown pruning options"),
    ],
)
def test_bad_settings_are_refused_in_one_line(host, kwargs, error, text):
    adapter_cls, model = host
    with pytest.raises(error) as info:
        stprune.patch(model, "sta", **kwargs)
    assert text in str(info.value) and "\n" not in str(info.value)
    assert not stprune.is_patched(model)


def test_methods_that_cannot_prune_a_video_llm_are_refused(host):
    adapter_cls, model = host
    with pytest.raises(UnsupportedModelError, match="merges tokens"):
        stprune.patch(model, "tome", keep_ratio=0.5)
    with pytest.raises(SettingError, match="own budget"):
        stprune.patch(model, "dycoke", keep_ratio=0.5, merging_ratio=0.7)
    assert not stprune.is_patched(model)


def test_video_llm_methods_are_refused_on_encoders():
    from stprune.adapters.hf_videomae import HFVideoMAEAdapter

    encoder = HFVideoMAEAdapter.example_model()
    for method in ("dycoke", "evs"):
        with pytest.raises(UnsupportedModelError, match="video LLM"):
            stprune.patch(encoder, method, r=2)
    with pytest.raises(SettingError, match="keep_ratio"):
        stprune.patch(encoder, "sta", keep_ratio=0.5)


def test_r_that_empties_a_slot_is_refused_at_the_forward(host):
    adapter_cls, model = host
    inputs = build_prompt(model, two_rows(adapter_cls))
    stprune.patch(model, "sta", r=50)
    try:
        with pytest.raises(InputError, match="r=50 drops every token"):
            model(**inputs)
    finally:
        stprune.unpatch(model)


def test_a_video_without_a_temporal_slot_is_refused(host):
    adapter_cls, model = host
    inputs = build_prompt(model, [two_rows(adapter_cls)[0]])
    if "video_grid_thw" in inputs:
        inputs["video_grid_thw"] = inputs["video_grid_thw"].clone()
        inputs["video_grid_thw"][0, 0] = 0
        needle = "needs at least one temporal slot"
    else:
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"][:, :0]
        needle = "frames >= 1"
    stprune.patch(model, "sta", keep_ratio=0.5)
    try:
        with pytest.raises(InputError, match=needle):
            model(**inputs)
    finally:
        stprune.unpatch(model)


def test_labels_and_a_second_video_on_a_filled_cache_are_refused(host):
    adapter_cls, model = host
    inputs = build_prompt(model, [two_rows(adapter_cls)[0]])
    stprune.patch(model, "sta", keep_ratio=0.5)
    try:
        with pytest.raises(InputError, match="labels"):
            model(**inputs, labels=inputs["input_ids"])
        out = model(**inputs, use_cache=True)
        ids = inputs["input_ids"]
        again = {
            **inputs,
            "input_ids": ids,
            "attention_mask": torch.ones(1, 2 * ids.shape[1], dtype=torch.long),
        }
        with pytest.raises(InputError, match="non-empty KV cache"):
            model(**again, cache=out.cache, use_cache=True)
    finally:
        stprune.unpatch(model)


def test_attention_implementations_other_than_sdpa_and_eager_are_refused():
    model = HFQwen2_5_VLAdapter.example_model()
    model.model.language_model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(UnsupportedModelError, match="attn_implementation='flash_attention_2'"):
        stprune.patch(model, "sta", keep_ratio=0.5)
    assert not stprune.is_patched(model)


def test_eager_attention_gives_the_same_tokens_as_sdpa():
    """One row: with left padding, transformers 5.24's eager attention gives NaN rows (stock too)."""
    model = HFQwen2_5_VLAdapter.example_model(seed=0).double()
    inputs = build_prompt(model, two_rows(HFQwen2_5_VLAdapter)[:1])
    sdpa, trace, _ = _patched_generate(model, inputs, "sta", keep_ratio=0.5)
    model.set_attn_implementation("eager")
    eager, _, _ = _patched_generate(model, inputs, "sta", keep_ratio=0.5)
    assert torch.equal(sdpa, eager)
