"""GPU benchmark: stprune STA vs the unpruned model, ToMe and random pruning at matched FLOPs,
and the authors' STA code, with the authors' timing protocol.

Protocol (the authors' ``throughput``): bf16 autocast, batch 32, 16 x 224^2 clips, 50 warm-up
forwards, then 30 timed forwards between two ``cuda.synchronize`` calls. Random weights (speed
does not depend on them). Peak memory is ``torch.cuda.max_memory_allocated`` over the timed part.

    python benchmarks/gpu_bench.py --out benchmarks/results            # VideoMAE-B and -L
    python benchmarks/gpu_bench.py --authors-code /path/to/STA/model_vit.py --compile --profile
    python benchmarks/gpu_bench.py --models video-swin-t video-swin-b  # Video Swin
    python benchmarks/gpu_bench.py --quick --device cpu                # plumbing check (tests)

``--authors-code`` imports the authors' ``model_vit.py`` (github Mark12Ding/STA) from where you
cloned it; it needs ``timm`` and ``einops`` importable. Their code is never part of this repo.
Writes ``gpu_<date>.json`` and ``gpu_<date>.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import stprune
from stprune.architectures.loading import load_model
from stprune.bench.compare import Setting, measure_flops_rows
from stprune.bench.speed import measure_speed
from stprune.models import get_adapter
from stprune.pruning.sequence import PROFILE_LABEL

VIT_SIZES = {"videomae-b": (768, 12, 12), "videomae-l": (1024, 24, 16), "videomae-h": (1280, 32, 16)}


def tiny_model() -> torch.nn.Module:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    cfg = VideoMAEConfig(
        image_size=64,
        num_frames=16,
        hidden_size=64,
        num_hidden_layers=6,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=10,
    )
    return VideoMAEForVideoClassification(cfg).eval()


def settings_for(model: torch.nn.Module, rs: list[int], targets: list[float]) -> list[Setting]:
    """Unpruned; STA at each r and target; ToMe and random at the FLOPs ratio STA reaches there."""
    out = [Setting()]
    for r in rs:
        out.append(Setting("sta", r=r))
    for x in targets:
        out.append(Setting("sta", flops_target=x))
    ratios = []
    for s in out[1:]:
        s.patch(model)
        ratios.append((s.label, stprune.patch_info(model).flops_ratio))
        stprune.unpatch(model)
    for method in ("tome", "random"):
        # the target is STA's own ratio, rounded up, so the baseline lands at or just below it
        out += [Setting(method, flops_target=round(ratio + 5e-4, 3)) for _, ratio in ratios]
    return out


def timed(
    fn, warmup: int, iters: int, device: torch.device, amp: torch.dtype | None
) -> tuple[float, float | None]:
    """clips/s-free timing: seconds per forward, peak MiB (CUDA)."""
    ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        for _ in range(warmup):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / iters
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return dt, peak


def authors_model(path: str, name: str, r: int) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("sta_authors_model_vit", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dim, depth, heads = VIT_SIZES[name]
    from functools import partial

    return mod.VisionTransformer(
        patch_size=16,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_classes=400,
        all_frames=16,
        tubelet_size=2,
        r=r,
    ).eval()


def sta_share(model: torch.nn.Module, inputs: dict, amp: torch.dtype | None, device: torch.device) -> dict:
    """Share of forward time inside the pruning work (profiler label), device and host side."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        for _ in range(3):
            model(**inputs)
        with profile(activities=acts) as prof:
            for _ in range(5):
                model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
    events = prof.key_averages()
    label = [e for e in events if e.key == PROFILE_LABEL]
    out: dict = {}
    if device.type == "cuda":
        total_dev = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA")
        lab_dev = sum(e.device_time_total for e in label)
        out["device_share"] = lab_dev / total_dev if total_dev else None
    total_cpu = sum(e.self_cpu_time_total for e in events)
    out["host_share"] = sum(e.cpu_time_total for e in label) / total_cpu if total_cpu else None
    return out


def sync_check(model: torch.nn.Module, inputs: dict, amp: torch.dtype | None) -> str:
    """Run one patched forward with CUDA sync debugging set to error."""
    ctx = torch.autocast("cuda", dtype=amp) if amp is not None else contextlib.nullcontext()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.inference_mode(), ctx:
            model(**inputs)
        return "none"
    except RuntimeError as err:
        return f"sync: {str(err).splitlines()[0][:200]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


def compiled_run(
    model: torch.nn.Module,
    inputs: dict,
    args: argparse.Namespace,
    device: torch.device,
    amp: torch.dtype | None,
) -> dict:
    import torch._dynamo as dynamo

    dynamo.reset()
    explain = dynamo.explain(model)(**inputs)
    result = {
        "graph_breaks": explain.graph_break_count,
        "graphs": explain.graph_count,
        "break_reasons": [str(b.reason)[:200] for b in explain.break_reasons][:5],
    }
    dynamo.reset()
    backend = "eager" if args.quick else "inductor"
    cm = torch.compile(model, backend=backend)
    t0 = time.perf_counter()
    dt, peak = timed(lambda: cm(**inputs), args.warmup, args.iters, device, amp)
    result.update(
        clips_per_s=inputs["pixel_values"].shape[0] / dt,
        peak_mib=peak,
        warmup_plus_compile_s=time.perf_counter() - t0,
        backend=backend,
    )
    dynamo.reset()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["videomae-b", "videomae-l"])
    ap.add_argument("--r", type=int, nargs="*", default=[32, 48, 64])
    ap.add_argument("--flops-target", type=float, nargs="*", default=[0.7])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--authors-code", default=None, help="path to the authors' model_vit.py")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of STA r=max(--r)")
    ap.add_argument("--profile", action="store_true", help="share of forward time in STA (torch.profiler)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--quick", action="store_true", help="tiny CPU plumbing run")
    args = ap.parse_args()
    if args.quick:
        args.models, args.r, args.flops_target = ["tiny"], [4], [0.7]
        args.batch_size, args.warmup, args.iters, args.amp = 2, 1, 1, "none"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark needs a GPU (use --quick --device cpu for a plumbing check)")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[args.amp]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    report: dict = {
        "date": str(datetime.date.today()),
        "device": gpu,
        "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
        "batch_size": args.batch_size,
        "warmup": args.warmup,
        "iters": args.iters,
        "amp": args.amp,
        "models": {},
    }
    lines = [
        f"# GPU benchmark: {gpu}, {report['date']}",
        "",
        f"`{report['command']}`",
        "",
        f"batch {args.batch_size}, amp {args.amp}, {args.warmup} warm-up + {args.iters} timed forwards, "
        f"torch {torch.__version__}",
        "",
    ]
    for name in args.models:
        model = (tiny_model() if name == "tiny" else load_model(name).model).to(device)
        inputs = get_adapter(model).example_inputs(args.batch_size, device=device)
        rows = measure_flops_rows(model, settings_for(model, args.r, args.flops_target))
        results = []
        for row in rows:
            row.setting.patch(model)
            try:
                res = measure_speed(model, inputs, warmup=args.warmup, iters=args.iters, autocast_dtype=amp)
            finally:
                if stprune.is_patched(model):
                    stprune.unpatch(model)
            results.append(replace(row, speed=res))
            print(
                f"{name} {row.setting.method:7s} {row.setting.label:22s} {row.gflops:8.2f} GFLOPs "
                f"{res.clips_per_s:9.2f} clips/s  peak {res.peak_memory_mb} MiB",
                flush=True,
            )
        base = results[0].speed.clips_per_s
        entry: dict = {"rows": []}
        lines += [
            f"## {name}",
            "",
            "| method | setting | r | GFLOPs | ratio | clips/s | speed-up | 1/ratio | peak MiB |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in results:
            d = row.as_dict()
            d.update(
                clips_per_s=row.speed.clips_per_s,
                speedup=row.speed.clips_per_s / base,
                peak_memory_mb=row.speed.peak_memory_mb,
            )
            entry["rows"].append(d)
            r = ",".join(map(str, row.r_per_stage[:3])) + ("..." if len(row.r_per_stage) > 3 else "")
            peak = "-" if row.speed.peak_memory_mb is None else f"{row.speed.peak_memory_mb:.0f}"
            lines.append(
                f"| {row.setting.method} | {row.setting.label} | {r or '-'} | {row.gflops:.2f} | "
                f"{row.ratio:.3f} | {row.speed.clips_per_s:.1f} | {d['speedup']:.2f}x | "
                f"{1 / row.ratio:.2f}x | {peak} |"
            )
        lines.append("")
        if args.authors_code and name in VIT_SIZES:
            lines += [
                "Authors' code (same input, same protocol):",
                "",
                "| r | clips/s | peak MiB | stprune / authors |",
                "|---:|---:|---:|---:|",
            ]
            x = inputs["pixel_values"].transpose(1, 2).contiguous()  # theirs: (B, C, T, H, W)
            entry["authors"] = []
            for r in [0, *args.r]:
                theirs = authors_model(args.authors_code, name, r).to(device)
                dt, peak = timed(lambda m=theirs, x=x: m(x), args.warmup, args.iters, device, amp)
                ours = next(
                    (
                        d
                        for d in entry["rows"]
                        if d["method"] in ("none", "sta")
                        and d["setting"] == ("unpruned" if r == 0 else f"r={r}")
                    ),
                    None,
                )
                cps = args.batch_size / dt
                rel = ours["clips_per_s"] / cps if ours else None
                entry["authors"].append(
                    {"r": r, "clips_per_s": cps, "peak_memory_mb": peak, "stprune_over_authors": rel}
                )
                lines.append(
                    f"| {r} | {cps:.1f} | {peak:.0f} | {rel:.2f}x |"
                    if peak
                    else f"| {r} | {cps:.1f} | - | - |"
                )
                del theirs
            lines.append("")
        probe = Setting("sta", r=max(args.r))
        probe.patch(model)
        try:
            if args.profile:
                entry["sta_share"] = sta_share(model, inputs, amp, device)
                lines.append(f"STA share of forward time at r={max(args.r)}: {entry['sta_share']}")
            if device.type == "cuda":
                entry["host_syncs_in_pruned_forward"] = sync_check(model, inputs, amp)
                lines.append(
                    f"Host-device syncs in a pruned forward: {entry['host_syncs_in_pruned_forward']}"
                )
            if args.compile:
                entry["compile"] = compiled_run(model, inputs, args, device, amp)
                lines.append(f"torch.compile at r={max(args.r)}: {entry['compile']}")
        finally:
            stprune.unpatch(model)
        lines.append("")
        report["models"][name] = entry
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_{report['date']}" if not args.quick else "gpu_quick"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / (stem + '.json')} and .md")


if __name__ == "__main__":
    main()
