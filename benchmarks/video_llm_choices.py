"""Two design choices of stprune's video-LLM pruning, measured on the tiny random models of the tests.

No video-LLM weights or video data can be downloaded where stprune is built, so both measurements
use the random-weight example models (``Adapter.example_model``) and synthetic clips; they say
what the mechanism does with the information it gets, not how a trained model answers.

1. **What plays the role of STA's keys** (``keys="llm"``: the first LLM layer's key projection of
   the video tokens, before rotation; ``keys="embeddings"``: the merged embeddings themselves), on
   Qwen2.5-VL. Clips: a static textured background in which 4 of the 24 token places of every
   temporal slot after the first get new content, so the *novel* tokens are known (the others
   repeat the previous slot exactly). Reported per keep ratio: the share of the novel tokens each
   selection keeps (a redundancy-based selection should keep them all while the budget allows:
   4 of 24 per slot is within keep 0.25), the overlap (Jaccard) of the two selections, and the
   MACs of the scoring. RLT (pixel differences, which sees the change directly) and random
   pruning are the two ends of the scale.
2. **LLaVA-OneVision's positions** (``positions="original"`` vs ``"repacked"``): on random
   prompts (left-padded batches of 2), how far the pruned model's next-token distribution is from
   the unpruned model's (KL divergence, mean over prompts) and how often its greedy continuation
   of 8 tokens equals the unpruned one, at keep 0.5 and 0.25.

Run from the repository root: ``python benchmarks/video_llm_choices.py`` (about a minute on 2 CPU
cores); ``--out FILE`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import stprune  # noqa: E402
from stprune.adapters.hf_llava_onevision import HFLlavaOnevisionAdapter  # noqa: E402
from stprune.adapters.hf_qwen2_5_vl import HFQwen2_5_VLAdapter  # noqa: E402
from stprune.adapters.hf_qwen_vl import pack_qwen_video  # noqa: E402
from stprune.api import _pruner  # noqa: E402

KEEPS = (0.5, 0.25)


def novel_token_clip(frames: int, rows: int, cols: int, cell: int, novel: int, seed: int):
    """(T, 3, rows*cell, cols*cell) frames: a static textured background in which, at every
    temporal slot after the first, ``novel`` random token places get new random content (the
    rest repeats the previous slot exactly). Returns the frames and the flat grid indices of the
    novel tokens."""
    gen = torch.Generator().manual_seed(seed)
    clip = (torch.randn(3, rows * cell, cols * cell, generator=gen) * 0.5).expand(frames, -1, -1, -1).clone()
    novel_tokens = set()
    for s in range(1, frames // 2):
        clip[2 * s :] = clip[2 * s - 1]  # repeat the previous slot from here on
        for place in torch.randperm(rows * cols, generator=gen)[:novel].tolist():
            y, x = divmod(place, cols)
            patch = torch.randn(3, cell, cell, generator=gen)
            clip[2 * s :, :, y * cell : (y + 1) * cell, x * cell : (x + 1) * cell] = patch
            novel_tokens.add(s * rows * cols + place)
    return clip, novel_tokens


def key_sources(clips: int = 8) -> list[dict]:
    model = HFQwen2_5_VLAdapter.example_model(seed=0)
    adapter = HFQwen2_5_VLAdapter(model)
    vcfg = model.config.vision_config
    ts, p, m = vcfg.temporal_patch_size, vcfg.patch_size, vcfg.spatial_merge_size
    rows, cols, frames = 4, 6, 16
    rows_out = []
    for keep in KEEPS:
        stats = {
            name: {"novel_kept": 0, "novel": 0, "macs": 0}
            for name in ("llm", "embeddings", "rlt", "random")
        }
        overlap = []
        for seed in range(clips):
            clip, novel = novel_token_clip(frames, rows, cols, p * m, 4, seed)
            pixels = pack_qwen_video(clip, ts, p, m)
            grid = (frames // ts, rows * m, cols * m)
            call = adapter.example_prompt(1, num_frames=frames, size=(rows * p * m, cols * p * m))
            call = {**call, "pixel_values_videos": pixels, "video_grid_thw": torch.tensor([grid])}
            kept = {}
            for name, method, options in (
                ("llm", "sta", {"keys": "llm"}),
                ("embeddings", "sta", {"keys": "embeddings"}),
                ("rlt", "rlt", {}),
                ("random", "random", {}),
            ):
                stprune.patch(model, method, keep_ratio=keep, **options)
                with torch.no_grad():
                    model(**call)
                video = stprune.last_trace(model).videos[0]
                stats[name]["macs"] += _pruner(model).scoring_macs(video.grid)
                stprune.unpatch(model)
                kept[name] = set(video.kept.tolist())
                stats[name]["novel_kept"] += len(novel & kept[name])
                stats[name]["novel"] += len(novel)
            overlap.append(len(kept["llm"] & kept["embeddings"]) / len(kept["llm"] | kept["embeddings"]))
        row = {"keep_ratio": keep, "jaccard_llm_vs_embeddings": sum(overlap) / len(overlap)}
        for name, s in stats.items():
            row[f"novel_kept_{name}"] = s["novel_kept"] / s["novel"]
            row[f"scoring_macs_{name}"] = s["macs"] // clips
        rows_out.append(row)
    return rows_out


def llava_positions(prompts: int = 16, steps: int = 8) -> list[dict]:
    model = HFLlavaOnevisionAdapter.example_model(seed=0).double()
    adapter = HFLlavaOnevisionAdapter(model)
    vid = adapter.video_placeholders(4)
    side = model.config.vision_config.image_size
    out = []
    for keep in KEEPS:
        row = {"keep_ratio": keep}
        for mode in ("original", "repacked"):
            kls, same = [], 0
            for seed in range(prompts):
                gen = torch.Generator().manual_seed(seed)
                text = torch.randint(4, 80, (2, 12), generator=gen).tolist()
                ids_rows = [text[0][:3] + vid + text[0][3:9], text[1][:1] + vid + text[1][1:4]]
                length = max(map(len, ids_rows))
                ids = torch.tensor([[0] * (length - len(r)) + r for r in ids_rows])
                mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in ids_rows])
                pixels = torch.randn(2, 4, 3, side, side, generator=gen, dtype=torch.float64)
                call = {"input_ids": ids, "attention_mask": mask, "pixel_values_videos": pixels}
                with torch.no_grad():
                    ref = model.generate(
                        **call,
                        max_new_tokens=steps,
                        do_sample=False,
                        output_logits=True,
                        return_dict_in_generate=True,
                    )
                    stprune.patch(model, "sta", keep_ratio=keep, positions=mode)
                    pruned = model.generate(
                        **call,
                        max_new_tokens=steps,
                        do_sample=False,
                        output_logits=True,
                        return_dict_in_generate=True,
                    )
                    stprune.unpatch(model)
                lp_ref = ref.logits[0].double().log_softmax(-1)
                lp = pruned.logits[0].double().log_softmax(-1)
                kls.append(float((lp_ref.exp() * (lp_ref - lp)).sum(-1).mean()))
                same += int((ref.sequences == pruned.sequences).all(1).sum())
            row[f"kl_{mode}"] = sum(kls) / len(kls)
            row[f"same_continuation_{mode}"] = same / (2 * prompts)
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    keys = key_sources()
    print("1. STA's keys on Qwen2.5-VL (tiny, random weights), novel-token clips: share of novel tokens kept")
    print(
        "| keep | keys=llm | keys=embeddings | rlt (pixels) | random | Jaccard llm vs embeddings | "
        "scoring MACs llm / embeddings |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in keys:
        print(
            f"| {r['keep_ratio']} | {r['novel_kept_llm']:.2f} | {r['novel_kept_embeddings']:.2f} | "
            f"{r['novel_kept_rlt']:.2f} | {r['novel_kept_random']:.2f} | "
            f"{r['jaccard_llm_vs_embeddings']:.2f} | "
            f"{r['scoring_macs_llm']} / {r['scoring_macs_embeddings']} |"
        )
    pos = llava_positions()
    print("\n2. LLaVA-OneVision (tiny, random weights): pruned vs unpruned, 16 prompts x 2 rows")
    print("| keep | KL original | KL repacked | same 8 tokens original | same 8 tokens repacked |")
    print("|---:|---:|---:|---:|---:|")
    for r in pos:
        print(
            f"| {r['keep_ratio']} | {r['kl_original']:.2e} | {r['kl_repacked']:.2e} | "
            f"{r['same_continuation_original']:.2f} | {r['same_continuation_repacked']:.2f} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"keys": keys, "llava_positions": pos}, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
