"""Peak memory and time of loading a Video Swin checkpoint with ``load_video_swin``, per file format.

    python benchmarks/load_swin.py [--arch b] [--repeats 3] [--dir DIR] [--compare-with OLD.py]

Writes a random-weight checkpoint of the architecture (torchvision layout, float32) as
``.safetensors`` and ``.pth`` into DIR (default: a temporary directory, removed afterwards), then
loads each file in a fresh Python process per run, in interleaved rounds (median time):

* ``load s``: the ``load_video_swin(path)`` call alone.
* ``load+touch s``: that call plus reading every weight once (a sum per tensor). A loader that
  keeps a memory map has not read most of the file when it returns; this column charges it the
  reads it deferred, so it is the one to compare loaders by. (The touch is a CRC-32 of every
  tensor's bytes, which also checks that all loaders give the same weights.)
* ``peak MB`` (MB: 2^20 bytes): the process's RSS high-water mark (``getrusage`` ``ru_maxrss``,
  Linux) after the touch, minus its RSS just before the load (file pages mapped into the process
  count too).
* ``unaligned`` / ``file-mapped``: how many of the model's parameters and buffers do not start
  at a 64-byte boundary / lie in a mapping of a file (``/proc/self/maps``).

``--compare-with FILE`` also runs ``load_video_swin`` from another copy of
``stprune/architectures/video_swin/weights.py`` (e.g. an older version), as a second loader. Linux only
(``/proc/self/status``, ``/proc/self/maps``). Swin-B: about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import bisect
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

FORMATS = ("safetensors", "pth")


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def file_mapped_count(pointers: list[int]) -> int:
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) >= 5 and fields[4] != "0":  # inode 0: anonymous memory
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    ranges.sort()
    starts = [lo for lo, _ in ranges]
    count = 0
    for p in pointers:
        i = bisect.bisect_right(starts, p) - 1
        count += i >= 0 and p < ranges[i][1]
    return count


def child(loader: str, path: str) -> None:
    """One load in this (fresh) process; prints one JSON line."""
    import torch

    if loader == "current":
        from stprune.models import load_video_swin
    else:
        spec = importlib.util.spec_from_file_location("compared_video_swin_weights", loader)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        load_video_swin = module.load_video_swin
    before = current_rss_mb()
    start = time.perf_counter()
    model = load_video_swin(path)
    loaded = time.perf_counter() - start
    tensors = [v for v in model.state_dict().values() if v.numel()]
    total = 0
    for v in tensors:  # reads every byte in place (no copy), and proves the loaders read the same bits
        total = zlib.crc32(memoryview(v.detach().reshape(-1).view(torch.uint8).numpy()), total)
    touched = time.perf_counter() - start
    print(
        json.dumps(
            {
                "load_s": loaded,
                "touch_s": touched,
                "peak_mb": peak_rss_mb() - before,
                "weights_mb": sum(v.numel() * v.element_size() for v in tensors) / 2**20,
                "unaligned": sum(v.data_ptr() % 64 != 0 for v in tensors),
                "mapped": file_mapped_count([v.data_ptr() for v in tensors]),
                "tensors": len(tensors),
                "checksum": total,
            }
        )
    )


def checkpoint_paths(arch: str, folder: Path) -> dict[str, Path]:
    return {fmt: folder / f"swin_{arch}.{fmt}" for fmt in FORMATS}


def write_checkpoints(arch: str, folder: str) -> None:
    """Random weights (seed 0) in both formats; run in a child so that this process stays small."""
    import torch
    from safetensors.torch import save_file

    from stprune.architectures.video_swin.weights import export_state_dict
    from stprune.models import video_swin_b, video_swin_s, video_swin_t

    torch.manual_seed(0)
    make = {"t": video_swin_t, "s": video_swin_s, "b": video_swin_b}[arch]
    state = export_state_dict(make(), "torchvision")
    paths = checkpoint_paths(arch, Path(folder))
    save_file(state, str(paths["safetensors"]))
    torch.save(state, paths["pth"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="b", choices=["t", "s", "b"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    ap.add_argument("--compare-with", default=None, metavar="FILE", help="another video_swin_weights.py")
    ap.add_argument("--child", nargs=2, metavar=("LOADER", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--write", nargs=2, metavar=("ARCH", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.write:
        write_checkpoints(*args.write)
        return

    loaders = {"current": "current"}
    if args.compare_with:
        loaders = {Path(args.compare_with).name: str(Path(args.compare_with).resolve()), **loaders}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        # this process imports no torch and holds no tensors: a child's ru_maxrss starts from the
        # RSS of the process it was forked from, so that must stay small
        subprocess.run([sys.executable, __file__, "--write", args.arch, str(folder)], check=True)
        paths = checkpoint_paths(args.arch, folder)
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeats):  # interleaved: drift on a shared machine hits every variant alike
            for name, loader in loaders.items():
                for fmt in FORMATS:
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", loader, str(paths[fmt])],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    runs.setdefault((name, fmt), []).append(json.loads(out.strip().splitlines()[-1]))
    sums = {r["checksum"] for rs in runs.values() for r in rs}
    if len(sums) != 1:
        raise SystemExit(f"the loaders disagree on the weights: checksums {sorted(sums)}")
    print(f"Video Swin-{args.arch.upper()}, {args.repeats} runs each, median time, max peak\n")
    print("| loader | file | weights MB | load s | load+touch s | peak MB | unaligned | file-mapped |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, fmt), rs in runs.items():
        first = rs[0]
        print(
            f"| {name} | .{fmt} | {first['weights_mb']:.0f} "
            f"| {statistics.median(r['load_s'] for r in rs):.2f} "
            f"| {statistics.median(r['touch_s'] for r in rs):.2f} "
            f"| {max(r['peak_mb'] for r in rs):.0f} "
            f"| {first['unaligned']}/{first['tensors']} | {first['mapped']}/{first['tensors']} |"
        )


if __name__ == "__main__":
    main()
