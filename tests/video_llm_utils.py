"""Prompts for the tiny video LLMs of the tests, and the independent reference for pruned generation.

The reference never uses stprune's pruner: it takes the unpatched model's own pieces (input
embeddings, ``get_video_features`` / ``get_image_features``, ``get_rope_index`` or the 1-D
positions ``generate`` uses), keeps, row by row with plain Python, the non-padding tokens that are
not video tokens plus the video tokens the trace says were kept, at their original positions,
left-pads the rows, and decodes greedily by calling the language model on the whole sequence at
every step (no KV cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from stprune.adapters import get_adapter

PAD = 0


@dataclass
class Row:
    """One prompt row: text tokens around its videos (and images), in order.

    ``items`` is a list of ``("text", [ids])``, ``("video", frames_or_grid)``, ``("image", grid)``.
    Qwen: a video is its patch grid ``(T', Hp, Wp)``, an image ``(1, Hp, Wp)``; LLaVA-OneVision: a
    video is its frame count.
    """

    items: list = field(default_factory=list)


def build_prompt(model, rows: list[Row], dtype=torch.float64, seed: int = 0) -> dict:
    """Left-padded batch of ``rows`` with random pixels, as the family's processor lays it out."""
    adapter = get_adapter(model)
    cfg = model.config
    gen = torch.Generator().manual_seed(seed)
    qwen = hasattr(adapter, "video_placeholders") and hasattr(cfg, "vision_start_token_id")
    ids_rows, video_grids, image_grids, llava_frames = [], [], [], []
    for row in rows:
        ids = []
        for kind, value in row.items:
            if kind == "text":
                ids += list(value)
            elif kind == "video":
                ids += adapter.video_placeholders(value)
                (video_grids if qwen else llava_frames).append(value)
            elif kind == "image":
                assert qwen, "images are built for the Qwen families only"
                m = adapter.merge
                n = value[0] * (value[1] // m) * (value[2] // m)
                ids += (
                    [int(cfg.vision_start_token_id)]
                    + [int(cfg.image_token_id)] * n
                    + [int(cfg.vision_end_token_id)]
                )
                image_grids.append(value)
        ids_rows.append(ids)
    length = max(map(len, ids_rows))
    input_ids = torch.tensor([[PAD] * (length - len(r)) + r for r in ids_rows])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in ids_rows])
    out = {"input_ids": input_ids, "attention_mask": mask}
    if qwen:
        vcfg = cfg.vision_config
        width = int(vcfg.in_channels) * int(vcfg.temporal_patch_size) * int(vcfg.patch_size) ** 2
        mm = torch.zeros_like(input_ids, dtype=torch.int32)
        mm[input_ids == int(cfg.image_token_id)] = 1
        mm[input_ids == int(cfg.video_token_id)] = 2
        out["mm_token_type_ids"] = mm
        if video_grids:
            grid = torch.tensor(video_grids)
            out["video_grid_thw"] = grid
            out["pixel_values_videos"] = torch.randn(
                int(grid.prod(-1).sum()), width, generator=gen, dtype=dtype
            )
        if image_grids:
            grid = torch.tensor(image_grids)
            out["image_grid_thw"] = grid
            out["pixel_values"] = torch.randn(int(grid.prod(-1).sum()), width, generator=gen, dtype=dtype)
    elif llava_frames:
        assert len(set(llava_frames)) == 1, "LLaVA-OneVision videos of one call share a frame count"
        vcfg = cfg.vision_config
        side = int(vcfg.image_size)
        out["pixel_values_videos"] = torch.randn(
            len(llava_frames), llava_frames[0], int(vcfg.num_channels), side, side, generator=gen, dtype=dtype
        )
    return out


def _full_sequence(model, inputs: dict):
    """The unpruned prompt as the language model would receive it: embeddings (B, S, C), positions
    ((3, B, S) or (B, S)), and for Qwen3-VL the visual mask (B, S) and each visual position's
    deepstack rows."""
    inner = model.model
    cfg = model.config
    ids = inputs["input_ids"]
    with torch.no_grad():
        emb = inner.get_input_embeddings()(ids).clone()
        deep_video = deep_image = None
        if "video_grid_thw" in inputs:
            out = inner.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
            emb[ids == cfg.video_token_id] = torch.cat(out.pooler_output).to(emb.dtype)
            if getattr(out, "deepstack_features", None):
                deep_video = [torch.cat(f) for f in out.deepstack_features]
        elif "pixel_values_videos" in inputs:  # LLaVA-OneVision
            out = inner.get_video_features(inputs["pixel_values_videos"])
            emb[ids == cfg.video_token_id] = out.pooler_output.flatten(0, 1).to(emb.dtype)
        if "image_grid_thw" in inputs:
            out = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
            emb[ids == cfg.image_token_id] = torch.cat(out.pooler_output).to(emb.dtype)
            if getattr(out, "deepstack_features", None):
                deep_image = [torch.cat(f) for f in out.deepstack_features]
    mask = inputs["attention_mask"]
    if "mm_token_type_ids" in inputs:
        positions, _ = inner.get_rope_index(
            ids,
            inputs["mm_token_type_ids"],
            image_grid_thw=inputs.get("image_grid_thw"),
            video_grid_thw=inputs.get("video_grid_thw"),
            attention_mask=mask,
        )
    else:  # 1-D, as generate computes them
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    visual, deep_rows = None, None
    if deep_video is not None or deep_image is not None:
        is_video = ids == cfg.video_token_id
        is_image = ids == cfg.image_token_id
        visual = is_video | is_image
        deep_rows = {}
        counters = {"v": 0, "i": 0}
        for b, c in visual.nonzero().tolist():
            if is_video[b, c]:
                deep_rows[(b, c)] = [d[counters["v"]] for d in deep_video]
                counters["v"] += 1
            else:
                deep_rows[(b, c)] = [d[counters["i"]] for d in deep_image]
                counters["i"] += 1
    return emb, positions, visual, deep_rows


def reference_generate(
    model, inputs: dict, trace, steps: int, repacked: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, steps) greedy tokens of the *unpatched* model fed only the kept tokens (see module
    docstring), and (B, V) the logits of its first step."""
    cfg = model.config
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    emb, positions, visual, deep_rows = _full_sequence(model, inputs)
    mrope = positions.dim() == 3
    kept_video = {(v.sample, int(c)) for v in trace.videos for c in (*v.columns, *v.protected)}
    is_video = ids == cfg.video_token_id
    rows = []
    for b in range(ids.shape[0]):
        cols = [c for c in range(ids.shape[1]) if mask[b, c] and (not is_video[b, c] or (b, c) in kept_video)]
        pos = positions[:, b, cols] if mrope else positions[b, cols]
        if repacked:
            pos = torch.arange(len(cols))
        row = {
            "emb": emb[b, cols],
            "pos": pos,
            "visual": None if visual is None else visual[b, cols],
            "deep": None if deep_rows is None else [deep_rows[(b, c)] for c in cols if (b, c) in deep_rows],
        }
        rows.append(row)
    lm = model.model.language_model
    tokens, first = [], None
    with torch.no_grad():
        for _ in range(steps):
            n = max(r["emb"].shape[0] for r in rows)
            batch = len(rows)
            e = torch.zeros(batch, n, emb.shape[-1], dtype=emb.dtype)
            p = torch.zeros((3, batch, n) if mrope else (batch, n), dtype=torch.long)
            m = torch.zeros(batch, n, dtype=torch.long)
            v = torch.zeros(batch, n, dtype=torch.bool)
            for b, r in enumerate(rows):
                k = r["emb"].shape[0]
                e[b, n - k :] = r["emb"]
                if mrope:
                    p[:, b, n - k :] = r["pos"]
                else:
                    p[b, n - k :] = r["pos"]
                m[b, n - k :] = 1
                if r["visual"] is not None:
                    v[b, n - k :] = r["visual"]
            extra = {}
            if visual is not None:
                levels = len(rows[0]["deep"][0]) if rows[0]["deep"] else len(next(iter(deep_rows.values())))
                extra = {
                    "visual_pos_masks": v,
                    "deepstack_visual_embeds": [
                        torch.stack([d[level] for r in rows for d in r["deep"]]) for level in range(levels)
                    ],
                }
            hidden = lm(
                inputs_embeds=e, attention_mask=m, position_ids=p, use_cache=False, **extra
            ).last_hidden_state
            logits = model.lm_head(hidden[:, -1])
            first = logits if first is None else first
            nxt = logits.argmax(-1)
            tokens.append(nxt)
            for b, r in enumerate(rows):
                r["emb"] = torch.cat([r["emb"], model.model.get_input_embeddings()(nxt[b : b + 1])])
                step_pos = r["pos"][..., -1:] + 1
                r["pos"] = torch.cat([r["pos"], step_pos], -1)
                if r["visual"] is not None:
                    r["visual"] = torch.cat([r["visual"], torch.zeros(1, dtype=torch.bool)])
    return torch.stack(tokens, 1), first
