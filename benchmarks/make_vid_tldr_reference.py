"""Reference tensors for vid-TLDR, from the authors' code run outside this repository.

The authors' code is not in this repository. This script reads ``multi_modality/utils/vid_TLDR.py``
at run time from a clone the user gives (``git show REV:...``, so a bare mirror works too), runs
its functions on seeded inputs, and writes what ``tests/test_vid_tldr.py`` checks
``stprune.core.vid_tldr`` and ``stprune.patch(model, "vid_tldr", ...)`` against::

    git clone https://github.com/mlvlab/vid-TLDR /tmp/vid-TLDR
    PYTHONPATH=. python benchmarks/make_vid_tldr_reference.py --repo /tmp/vid-TLDR
        # writes tests/data/vid_tldr_reference.safetensors

The file is executed as a module on its own. It imports ``einops`` (unused by its functions); if
einops is not installed, an empty stand-in module is put in ``sys.modules`` for that import.

What is run, all with the published functions unchanged except where said:

* ``objective``: ``get_objective_score(attn)`` on softmax attention maps (B, H, N, N), float64,
  logits ``randn * scale`` (scale 1 and 4), several (B, H, N).
* ``chain``: ``vidTLDR(x, attn, info, layer)`` called layer after layer with ``info["r"]`` a per-layer
  list (as in the authors' ViT, ``info["size"]`` carried from call to call; each layer gets a fresh
  random attention map of its token count), several (B, N, C, H) and r lists (r = 0, 1, the
  largest r = N // 2; odd N; a case with bitwise repeated tokens, i.e. tied similarities). For every
  call the output tokens, the sizes, and the plan (``unm_idx``, ``src_idx``, ``dst_idx`` read from
  the cells of the ``merge`` closure that ``merging`` returns) are stored. Two modes:
  ``float32``: float32 inputs, the code exactly as published (its ``merge`` works in float32);
  ``float64``: float64 inputs, with the ``dtype`` argument of ``merge`` (default ``torch.float32``)
  set to ``torch.float64`` on the closure (``__defaults__``): as published, float64 inputs raise
  ``RuntimeError`` (``scatter(): Expected self.dtype to be equal to src.dtype``: the float32 tokens
  meet float64 saliency), which the script checks and records.
* ``model``: a tiny Hugging Face ``VideoMAEModel`` (float64, weights stored in the file) run block
  by block as the authors' ViT block runs (``multi_modality/models/backbones/vit/vit.py``, ``Block``
  and ``Attention``; restated here with the HF modules, not copied): attention with
  ``q * scale @ k^T``, the softmax before the size bias is the map handed to ``vidTLDR``, the
  logits get ``log(size)`` added (proportional attention), then the residual, then ``vidTLDR``
  (float64 mode), then the MLP with its residual on the merged tokens. Stored: the input clip,
  the encoder output and the sizes, for r per layer ``MODEL_R``.

Metadata: the repository URL, the commit (``git rev-parse REV``) and its date, the file's git blob
hash (compare ``git ls-tree COMMIT multi_modality/utils/vid_TLDR.py``), torch and transformers
versions, the generation date, the cases (JSON). The committed file was written on 2026-12-02 on
the 2-core x86_64 CPU sandbox, torch 2.13.0+cpu, transformers 5.24.0, Python 3.11, from
mlvlab/vid-TLDR at a25051d4a4808ce2b480bd1a80a96f68c21aa5cb (2024-05-07), seed 0. Running it again
gives the same tensors.

Exits with status 1 if stprune's functions disagree with a reference just computed (``--no-check``
skips that comparison).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import platform
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "vid_tldr_reference.safetensors"
FILE = "multi_modality/utils/vid_TLDR.py"
SOURCE = "https://github.com/mlvlab/vid-TLDR"

#: (B, H, N, logit scale) of the objective-score cases
OBJECTIVE = [(1, 1, 8, 1.0), (2, 3, 20, 1.0), (2, 4, 33, 4.0), (2, 2, 48, 1.0), (1, 6, 40, 4.0)]
#: (name, B, N, C, H, r per layer, repeated tokens)
CHAINS = [
    ("n16", 2, 16, 8, 2, [4, 3, 2], False),
    ("n33-odd", 1, 33, 16, 3, [16, 8, 0, 4], False),
    ("n64", 2, 64, 8, 1, [1, 31, 15], False),
    ("n20-max", 2, 20, 4, 1, [10, 5], False),
    ("n24-ties", 1, 24, 4, 2, [6, 4], True),
]
#: the tiny VideoMAE of the model case, and its r per layer (0: no merge in that layer)
MODEL_CONFIG = dict(
    image_size=16, patch_size=4, num_frames=8, tubelet_size=2, hidden_size=16, num_hidden_layers=4,
    num_attention_heads=2, intermediate_size=32, layer_norm_eps=1e-6,
)  # fmt: skip
MODEL_R = [12, 8, 0, 6]
MODEL_BATCH = 2


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def blob_hash(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def load_vid_tldr(repo: str, rev: str) -> tuple[types.ModuleType, str]:
    """The published module (executed from its source at ``rev``) and that source."""
    source = git(repo, "show", f"{rev}:{FILE}")
    try:
        import einops  # noqa: F401
    except ImportError:
        sys.modules["einops"] = types.ModuleType("einops")  # the file imports rearrange and never calls it
        sys.modules["einops"].rearrange = None
    module = types.ModuleType("vid_tldr_reference")
    module.__file__ = f"{rev}:{FILE}"
    exec(compile(source, f"{rev}:{FILE}", "exec"), module.__dict__)
    return module, source


class Recorder:
    """Wraps the module's ``merging`` (looked up as a global by ``vidTLDR`` at every call) to keep
    the plan of every call and, in float64 mode, to set the working dtype of its ``merge``."""

    def __init__(self, module: types.ModuleType, dtype: torch.dtype | None) -> None:
        self.original: Callable = module.merging
        self.dtype = dtype
        self.plans: list[dict[str, torch.Tensor]] = []
        module.merging = self

    def __call__(self, *args, **kwargs):
        merge = self.original(*args, **kwargs)
        cells = dict(
            zip(merge.__code__.co_freevars, (c.cell_contents for c in merge.__closure__), strict=True)
        )
        self.plans.append({k: cells[k][..., 0].clone() for k in ("unm_idx", "src_idx", "dst_idx")})
        if self.dtype is not None:
            mode, _ = merge.__defaults__
            merge.__defaults__ = (mode, self.dtype)
        return merge

    def restore(self, module: types.ModuleType) -> None:
        module.merging = self.original


def softmax_maps(g: torch.Generator, b: int, h: int, n: int, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(b, h, n, n, generator=g, dtype=torch.float64) * scale).softmax(dim=-1)


def make_objective(vt: types.ModuleType, g: torch.Generator) -> tuple[dict, list]:
    tensors, cases = {}, []
    for b, h, n, scale in OBJECTIVE:
        name = f"objective/b{b}_h{h}_n{n}_s{scale:g}"
        attn = softmax_maps(g, b, h, n, scale)
        tensors[f"{name}/attn"] = attn
        tensors[f"{name}/score"] = vt.get_objective_score(attn.clone())
        cases.append({"name": name, "batch": b, "heads": h, "tokens": n, "scale": scale})
    return tensors, cases


def _chain_inputs(g: torch.Generator, b: int, n: int, c: int, h: int, rs: list[int], ties: bool):
    x = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    if ties:  # every token repeated at the next position: A token i and B token i are equal
        x[:, 1::2] = x[:, 0::2]
    maps, length = [], n
    for r in rs:
        maps.append(softmax_maps(g, b, h, length))
        length -= r
    return x, maps


def run_chain(
    vt: types.ModuleType, x: torch.Tensor, maps: list[torch.Tensor], rs: list[int], dtype: torch.dtype
):
    """The published ``vidTLDR`` layer after layer; returns per layer (out, size, plan or None)."""
    rec = Recorder(vt, None if dtype == torch.float32 else dtype)
    info = {"use": True, "r": list(rs), "source_trace": False, "source": None, "size": None}
    steps, h = [], x.to(dtype)
    try:
        for layer, attn in enumerate(maps):
            before = len(rec.plans)
            h = vt.vidTLDR(h, attn.to(dtype), info, layer)
            plan = rec.plans[-1] if len(rec.plans) > before else None
            steps.append((h.clone(), None if info["size"] is None else info["size"].clone(), plan))
    finally:
        rec.restore(vt)
    return steps


def make_chains(vt: types.ModuleType, g: torch.Generator) -> tuple[dict, list, str]:
    tensors, cases = {}, []
    # as published, float64 inputs raise inside merge (float32 tokens, float64 saliency)
    x, maps = _chain_inputs(g, 1, 8, 4, 1, [2], False)
    info = {"use": True, "r": [2], "source_trace": False, "source": None, "size": None}
    try:
        vt.vidTLDR(x, maps[0], info, 0)
    except RuntimeError as err:
        float64_error = str(err)
    else:
        raise SystemExit("the published vidTLDR no longer raises on float64 inputs: update the docs")
    for name, b, n, c, h, rs, ties in CHAINS:
        x, maps = _chain_inputs(g, b, n, c, h, rs, ties)
        key = f"chain/{name}"
        tensors[f"{key}/x"] = x
        for i, m in enumerate(maps):
            tensors[f"{key}/attn{i}"] = m
        for mode, dtype in (("float64", torch.float64), ("float32", torch.float32)):
            for i, (out, size, plan) in enumerate(run_chain(vt, x, maps, rs, dtype)):
                tensors[f"{key}/{mode}/out{i}"] = out
                if size is not None:
                    tensors[f"{key}/{mode}/size{i}"] = size
                if plan is not None:
                    for k, v in plan.items():
                        tensors[f"{key}/{mode}/{k}{i}"] = v
        cases.append({"name": name, "batch": b, "tokens": n, "width": c, "heads": h, "r": rs, "ties": ties})
    return tensors, cases, float64_error


def tiny_videomae():
    from transformers import VideoMAEConfig, VideoMAEModel

    torch.manual_seed(0)
    model = VideoMAEModel(VideoMAEConfig(**MODEL_CONFIG)).double().eval()
    with torch.no_grad():  # non-zero biases, so every parameter matters
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def authors_block(vt: types.ModuleType, layer, x: torch.Tensor, info: dict, index: int) -> torch.Tensor:
    """One HF VideoMAE layer run the way the authors' ViT ``Block`` runs (see the module docstring)."""
    att = layer.attention.attention
    b, n, _ = x.shape
    heads, d = att.num_attention_heads, att.attention_head_size
    h = layer.layernorm_before(x)

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, n, heads, d).transpose(1, 2)

    q, k, v = split(att.query(h)), split(att.key(h)), split(att.value(h))
    logits = (q * d**-0.5) @ k.transpose(-2, -1)
    plain = logits.softmax(dim=-1)
    if info["size"] is not None:
        logits = logits + info["size"].log()[:, None, None, :, 0]
    out = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, heads * d)
    x = x + layer.attention.output.dense(out)
    x = vt.vidTLDR(x, plain, info, index)
    return layer.output(layer.intermediate(layer.layernorm_after(x)), x)


def make_model(vt: types.ModuleType, g: torch.Generator) -> tuple[dict, dict]:
    model = tiny_videomae()
    cfg = model.config
    shape = (MODEL_BATCH, cfg.num_frames, cfg.num_channels, cfg.image_size, cfg.image_size)
    clip = torch.randn(shape, generator=g).double()  # float32 values: stored as float32, exactly
    rec = Recorder(vt, torch.float64)
    info = {"use": True, "r": list(MODEL_R), "source_trace": False, "source": None, "size": None}
    try:
        with torch.no_grad():
            x = model.embeddings(clip, None)
            for i, layer in enumerate(model.encoder.layer):
                x = authors_block(vt, layer, x, info, i)
            if model.layernorm is not None:
                x = model.layernorm(x)
    finally:
        rec.restore(vt)
    tensors = {f"model/state/{k}": v.clone() for k, v in model.state_dict().items()}
    tensors.update({"model/clip": clip.float(), "model/hidden": x, "model/size": info["size"]})
    return tensors, {"config": MODEL_CONFIG, "r": MODEL_R, "batch": MODEL_BATCH}


def check(tensors: dict, chains: list) -> list[str]:
    """What stprune computes for the same inputs, compared with the references (float64 exact to
    1e-12, float32 to 1e-5); returns the disagreements."""
    from stprune.core.vid_tldr import attention_saliency, saliency_merge, saliency_plan

    bad = []
    for key in [k[: -len("/attn")] for k in tensors if k.startswith("objective/") and k.endswith("/attn")]:
        got = attention_saliency(tensors[f"{key}/attn"].mean(dim=1))
        if not torch.allclose(got, tensors[f"{key}/score"], rtol=0, atol=1e-12):
            bad.append(key)
    for case in chains:
        key = f"chain/{case['name']}"
        for mode, dtype, tol in (("float64", torch.float64, 1e-12), ("float32", torch.float32, 1e-5)):
            x, size = tensors[f"{key}/x"].to(dtype), None
            for i, r in enumerate(case["r"]):
                if r == 0:
                    continue
                attn = tensors[f"{key}/attn{i}"].to(dtype)
                size = torch.ones_like(x[..., :1]) if size is None else size
                plan = saliency_plan(x, r, attention_saliency(attn.mean(dim=1)))
                x, size = saliency_merge(x, size, plan)
                ok = torch.allclose(x, tensors[f"{key}/{mode}/out{i}"], rtol=0, atol=tol)
                ok = ok and torch.allclose(size, tensors[f"{key}/{mode}/size{i}"], rtol=0, atol=tol)
                if not ok:
                    bad.append(f"{key}/{mode}/step{i}")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repo", required=True, help="a git clone (bare or not) of github.com/mlvlab/vid-TLDR"
    )
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-check", action="store_true", help="do not compare stprune's functions")
    args = parser.parse_args(argv)

    import transformers

    vt, source = load_vid_tldr(args.repo, args.rev)
    commit = git(args.repo, "rev-parse", args.rev).strip()
    g = torch.Generator().manual_seed(args.seed)
    tensors, objective = make_objective(vt, g)
    chain_tensors, chains, float64_error = make_chains(vt, g)
    tensors.update(chain_tensors)
    model_tensors, model_case = make_model(vt, g)
    tensors.update(model_tensors)
    meta = {
        "source": SOURCE,
        "file": FILE,
        "commit": commit,
        "commit_date": git(args.repo, "show", "-s", "--format=%cI", commit).strip(),
        "blob": blob_hash(source),
        "functions": "get_objective_score, vidTLDR (merging, merge_wavg)",
        "published_float64_raises": float64_error,
        "generated": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "seed": str(args.seed),
        "objective": json.dumps(objective),
        "chains": json.dumps(chains),
        "model": json.dumps(model_case),
    }
    if not args.no_save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out), metadata=meta)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB, {len(tensors)} tensors)")
    if not args.no_check:
        bad = check(tensors, chains)
        if bad:
            print("stprune disagrees with the reference:", ", ".join(bad))
            return 1
        print("stprune agrees with every reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
