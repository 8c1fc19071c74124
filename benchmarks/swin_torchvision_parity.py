"""Parity of stprune's Video Swin with torchvision's ``swin3d_*`` (needs torchvision installed).

torchvision is not a dependency of stprune: run this in a virtual environment of its own, with a
torch that torchvision was built for (GPU or CPU), from the repository root::

    python3.11 -m venv /work/tvvenv && source /work/tvvenv/bin/activate
    pip install torch==2.14.1 torchvision==0.29.1
    pip install 'transformers>=5,<6' safetensors numpy tqdm rich av matplotlib \
        torch==2.14.1 torchvision==0.29.1
    PYTHONPATH=. python benchmarks/swin_torchvision_parity.py     # swin3d_t, 16x224x224, writes the file
    PYTHONPATH=. python benchmarks/swin_torchvision_parity.py --arch b --dtype float64 --device cpu --no-save

1. Builds torchvision ``swin3d_{arch}`` with random weights (its own init, then every parameter
   perturbed so that no LayerNorm/bias is trivial), converts the state dict with
   :func:`stprune.models.load_video_swin`, runs both on the same clip and prints max |diff| of
   the logits.
2. Builds a small torchvision ``SwinTransformer3d`` (the config below: padding, shifted windows,
   shrunk windows and the shrunk-window bias-index case all occur on the two clips), runs it in
   float64 on CPU and saves its weights (torchvision key names), the clips and the logits to a
   safetensors file, by default ``tests/data/swin3d_torchvision_reference.safetensors``, which
   ``tests/test_video_swin_reference_data.py`` checks our Video Swin against.

The committed reference file was written by the first command above (defaults, seed 0) on
2026-12-01 on the 2-core x86_64 CPU sandbox, torch 2.14.1+cu130 and torchvision 0.29.1+cu130 on
CPU. Measured there (max |torchvision - stprune| of the logits, 1x3x16x224x224 unless noted):

    swin3d_t  float32 2.38e-07, float64 3.33e-16 (2x3x10x200x200: float32 2.38e-07, float64 5.00e-16)
    swin3d_s  float32 2.38e-07, float64 4.44e-16 (2x3x10x200x200: float32 2.98e-07, float64 7.77e-16)
    swin3d_b  float32 2.68e-07, float64 8.88e-16 (2x3x10x200x200: float32 3.58e-07, float64 7.22e-16)
    small     float64 5.55e-17 on both clips (max |logit| 0.20 and 0.27)

(max |logit| 1.4-1.7 for the full-size models; 2x3x10x200x200 is ``--batch 2 --frames 10 --size 200``.)

Exits with status 1 if a difference exceeds the tolerance, 2 if torchvision is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from stprune.models import VideoSwinConfig, load_video_swin

SMALL_CONFIG = {
    "embed_dim": 8,
    "depths": [2, 2, 2, 2],
    "num_heads": [1, 2, 2, 4],
    "window_size": [2, 3, 3],
    "patch_size": [2, 4, 4],
    "num_classes": 5,
}
SMALL_CLIPS = [(2, 3, 7, 44, 36), (1, 3, 2, 20, 20)]
DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "tests" / "data" / "swin3d_torchvision_reference.safetensors"
)


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Replace every parameter by seeded random values (LayerNorm weights around 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float64)
            if "relative_position_bias_table" in name:
                value = 0.5 * noise
            elif param.dim() == 1 and "norm" in name and name.endswith("weight"):
                value = 1.0 + 0.2 * noise
            else:
                value = 0.02 * noise if param.dim() > 1 else 0.1 * noise
            param.copy_(value.to(param.dtype))


def compare(
    tv_model: torch.nn.Module, clip: torch.Tensor, config: VideoSwinConfig | None
) -> tuple[float, float]:
    """(max |torchvision - stprune|, max |torchvision|) of the logits on ``clip``."""
    ours = load_video_swin(tv_model.state_dict(), config=config, dtype=clip.dtype).to(clip.device)
    with torch.no_grad():
        reference = tv_model(clip)
        logits = ours(clip)
    return (reference - logits).abs().max().item(), reference.abs().max().item()


def row(model: str, clip: str, scale: float, diff: float, note: str) -> str:
    return f"{model:<10} {clip:<18} {scale:10.4g}  {diff:10.3g}  {note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["t", "s", "b"], default="t")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tol", type=float, default=None, help="default 1e-3 (float32) / 1e-9 (float64)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reference data file to write")
    parser.add_argument("--no-save", action="store_true", help="do not write the reference data file")
    args = parser.parse_args(argv)

    try:
        import torchvision
        from torchvision.models import video as tv_video
    except ImportError as err:
        print(
            f"torchvision is not importable ({err}). This check needs torchvision built for torch "
            f"{torch.__version__}; install both into a separate virtual environment (see this "
            f"script's docstring), then rerun.",
            file=sys.stderr,
        )
        return 2

    dtype = getattr(torch, args.dtype)
    tol = args.tol if args.tol is not None else (1e-3 if dtype == torch.float32 else 1e-9)
    versions = f"torch {torch.__version__}, torchvision {torchvision.__version__}"
    print(f"{versions}, device {args.device}, {args.dtype}")
    print(f"{'model':<10} {'clip':<18} {'max|logit|':>10}  {'max|diff|':>10}  note")
    failed = False

    # 1. full-size model
    torch.manual_seed(args.seed)
    tv_model = getattr(tv_video, f"swin3d_{args.arch}")(weights=None).eval()
    perturb(tv_model, args.seed)
    tv_model.to(args.device, dtype)
    gen = torch.Generator().manual_seed(args.seed + 1)
    clip = torch.randn(args.batch, 3, args.frames, args.size, args.size, generator=gen, dtype=torch.float64)
    diff, scale = compare(tv_model, clip.to(args.device, dtype), None)
    failed |= diff > tol
    shape = f"{args.batch}x3x{args.frames}x{args.size}x{args.size}"
    print(row(f"swin3d_{args.arch}", shape, scale, diff, f"tol {tol:g}"))
    del tv_model

    # 2. small model in float64 on CPU: reference data for the test suite
    torch.manual_seed(args.seed)
    small = tv_video.SwinTransformer3d(
        patch_size=SMALL_CONFIG["patch_size"],
        embed_dim=SMALL_CONFIG["embed_dim"],
        depths=SMALL_CONFIG["depths"],
        num_heads=SMALL_CONFIG["num_heads"],
        window_size=SMALL_CONFIG["window_size"],
        stochastic_depth_prob=0.0,
        num_classes=SMALL_CONFIG["num_classes"],
    ).eval()
    perturb(small, args.seed + 2)
    small.double()
    config = VideoSwinConfig(**SMALL_CONFIG)
    tensors = {f"weights.{k}": v.detach().clone().contiguous() for k, v in small.state_dict().items()}
    worst = 0.0
    for i, clip_shape in enumerate(SMALL_CLIPS):
        clip = torch.randn(*clip_shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            logits = small(clip)
        diff, scale = compare(small, clip, config)
        worst = max(worst, diff)
        tensors[f"clip_{i}"] = clip
        tensors[f"logits_{i}"] = logits
        print(row("small", "x".join(map(str, clip_shape)), scale, diff, "float64, cpu, tol 1e-9"))
    failed |= worst > 1e-9

    if not args.no_save:
        from safetensors.torch import save_file

        args.out.parent.mkdir(parents=True, exist_ok=True)
        metadata = {
            "config": json.dumps(SMALL_CONFIG),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "max_abs_diff_stprune": f"{worst:.3e}",
            "created_by": "benchmarks/swin_torchvision_parity.py",
        }
        save_file(tensors, str(args.out), metadata=metadata)
        print(f"wrote {args.out}")
    print("FAILED: difference above tolerance" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
