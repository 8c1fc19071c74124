"""Reference tensors for DyCoke's TTM and vLLM's EVS, from the authors' code run outside this repository.

Neither function's code is in this repository. This script reads it at run time from clones the
user gives and runs it on seeded inputs; the tensors it writes are what
``tests/test_core_dycoke.py`` and ``tests/test_core_evs.py`` check ``stprune.core.dycoke`` and
``stprune.core.evs`` against::

    git clone https://github.com/KD-TAO/DyCoke /tmp/DyCoke
    git clone https://github.com/vllm-project/vllm /tmp/vllm      # or any folder holding
                                                                  # vllm/multimodal/evs.py
    PYTHONPATH=. python benchmarks/make_llm_pruning_reference.py \
        --dycoke-repo /tmp/DyCoke --vllm-repo /tmp/vllm           # writes tests/data/*.safetensors

* **DyCoke** (``--dycoke-repo``, a git clone, bare or not): the source of
  ``llava/model/llava_arch.py`` is read with ``git show REV:...`` at ``--dycoke-rev`` (default
  ``HEAD``) and at ``--dycoke-legacy-rev`` (default the first public commit 26dc6f4, whose pair
  indexing differs), parsed with :mod:`ast`, and only the function ``dycole_ttm`` is compiled
  and run (the rest of the file imports the LLaVA package). For F <= 4 frames the published
  function raises ``RuntimeError`` (``torch.stack`` of its empty list of window similarities);
  the script records that it raises, then runs it once more with ``torch`` replaced, in that
  function's globals only, by a namespace whose ``stack`` returns an empty tensor for an empty
  list (everything else is torch's own), i.e. "the window stage has no window"; those cases are
  marked ``published_raises`` in the file.
* **vLLM EVS** (``--vllm-repo``): ``vllm/multimodal/evs.py`` is imported as a module on its own
  (it imports only ``typing`` and ``torch``); the commit is ``git rev-parse HEAD`` of the folder,
  or ``--vllm-commit`` when the folder is not a git work tree.

The file's git blob hash is recorded next to each commit, so a file can be checked against
``git ls-tree COMMIT PATH`` of the upstream repository.

Cases: DyCoke: random tokens (F in {2, 3, 4, 5, 8, 9, 16}; N = 16, C = 32 stored in float64 and
run in float64, float32 and bfloat16 (``x.to(dtype)`` of the stored tensor); N = 196, C = 8
stored in float32 and run in float32 and float64 (upcast, exact)), merging_ratio in
{0.7, 0.5, 0.3}; the first public version on the N = 16 float64 inputs; exact ties (frames
bitwise repeated; and "scaled" frames, each token a power-of-two multiple of its frame's one
vector, so all N similarities of a pair are exactly equal and the order is torch.topk's tie
order); near-static clips (a fixed frame plus 1e-6 or 1e-3 noise). A table of the published
keep count ``(len(output) - N) / 3`` on F = 5 frames over merging ratios and N. EVS: random
embeddings (T in {1, 2, 4, 7}; (H, W, merge) in {(4, 4, 1), (4, 6, 2), (8, 8, 2), (6, 10, 2)};
C = 16, float64 stored, run in float64, float32, bfloat16), q in {0, 0.3, 0.5, 0.75, 0.9}; ties
(repeated frames, constant frames, values on a coarse grid) and near-static clips; a table of
``compute_retained_tokens_count``.

Each DyCoke output is stored as ``idx``, the first input row bitwise equal to each output row
(checked: ``x[idx]`` bitwise equals the published output), with ``unique`` true when no output
row equals two input rows (then ``idx`` is the only possible answer; with bitwise repeated
frames it is not, and only ``x[idx]`` can be compared). EVS outputs are the boolean masks.

The committed files were written on 2026-12-02 on the 2-core x86_64 CPU sandbox, torch
2.13.0+cpu, Python 3.11, with ``--dycoke-repo`` a clone of KD-TAO/DyCoke at
dd7463498203479d0ff6f2d29c4e72928c0af244 (2025-11-22; ``llava_arch.py`` last changed in
35cc532c16f74a04b3f653c3bf50f59d8e505154, 2025-03-01) and legacy rev
26dc6f4ffa825b9ee4d8a2f11dee9a9ebe31a294 (2024-12-19), and ``--vllm-repo`` a folder holding
only ``vllm/multimodal/evs.py`` of vllm-project/vllm as published at commit
926c71f6f25f8fe0a71ba4b168205e64bef24a36 (the whole vLLM repository was too large to clone in
the sandbox; the copied file's blob hash is 8a36ea415da4d0f5eb9a286a2ff081b7c827efb9, compare
``git ls-tree 926c71f6 vllm/multimodal/evs.py``), with ``--vllm-commit`` that hash. Defaults
otherwise (seed 0). Both files are < 1 MB. Running it again gives the same tensors and metadata
(only the order of the metadata keys in the file header can differ).

Exits with status 1 if stprune's functions disagree with a reference just computed (``--no-check``
skips that comparison).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
DYCOKE_FILE = "llava/model/llava_arch.py"
DYCOKE_FUNCTION = "dycole_ttm"
DYCOKE_LEGACY_REV = "26dc6f4ffa825b9ee4d8a2f11dee9a9ebe31a294"
EVS_FILE = "vllm/multimodal/evs.py"
RATIOS = (0.7, 0.5, 0.3)
FRAMES = (2, 3, 4, 5, 8, 9, 16)
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True, text=True).stdout


def blob_hash(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _EmptyStackTorch(types.ModuleType):
    """``torch`` as seen by the published function, except that stacking [] gives an empty tensor."""

    def __getattr__(self, name: str) -> object:
        return getattr(torch, name)

    @staticmethod
    def stack(tensors, *args, **kwargs):
        return torch.stack(tensors, *args, **kwargs) if len(tensors) else torch.empty(0)


def load_dycoke(repo: str, rev: str, empty_stack: bool = False) -> Callable:
    """The published ``dycole_ttm`` of ``rev``, compiled on its own from the file's source."""
    source = git(repo, "show", f"{rev}:{DYCOKE_FILE}")
    tree = ast.parse(source)
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == DYCOKE_FUNCTION]
    if len(found) != 1:
        raise SystemExit(f"{DYCOKE_FILE} at {rev} has no single top-level {DYCOKE_FUNCTION}")
    namespace = {"torch": _EmptyStackTorch("torch") if empty_stack else torch}
    code = compile(ast.Module(body=found, type_ignores=[]), f"{rev}:{DYCOKE_FILE}", "exec")
    exec(code, namespace)
    return namespace[DYCOKE_FUNCTION]


def load_evs(repo: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_evs_reference", Path(repo) / EVS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def match_rows(x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(idx, unique): idx[i] is the first row of x bitwise equal to out[i] (so x[idx] == out,
    checked); unique: no output row matches more than one row of x (idx is then the only answer)."""
    rows: dict[bytes, list[int]] = {}
    for i, row in enumerate(_bits(x).numpy()):
        rows.setdefault(row.tobytes(), []).append(i)
    idx, unique = [], True
    for row in _bits(out).numpy():
        hits = rows.get(row.tobytes(), [])
        if not hits:
            raise SystemExit("an output row of the published function matches no input row")
        idx.append(hits[0])
        unique = unique and len(hits) == 1
    idx_t = torch.tensor(idx, dtype=torch.int64)
    if not torch.equal(_bits(x[idx_t]), _bits(out)):
        raise SystemExit("x[idx] differs from the published output")
    return idx_t, unique


def dycoke_inputs(gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Stored inputs, (F * N, C) each."""
    inputs = {}
    for f in FRAMES:
        inputs[f"rand_n16_f{f}"] = torch.randn(f * 16, 32, generator=gen, dtype=torch.float64)
    for f in FRAMES:
        inputs[f"rand_n196_f{f}"] = torch.randn(f * 196, 8, generator=gen, dtype=torch.float32)
    for f in (5, 8, 9):
        # frames bitwise repeated: pairs of equal frames, then every frame the same
        base = torch.randn(f * 16, 8, generator=gen, dtype=torch.float64).view(f, 16, 8)
        inputs[f"repeat_pairs_f{f}"] = base[torch.arange(f) // 2].reshape(f * 16, 8)
        inputs[f"repeat_all_f{f}"] = base[:1].expand(f, 16, 8).reshape(f * 16, 8).clone()
        # each token a power-of-two multiple of its frame's vector: equal similarities in a frame
        vectors = torch.randn(f, 1, 8, generator=gen, dtype=torch.float64)
        scale = 2.0 ** (torch.arange(16, dtype=torch.float64) - 8).view(1, 16, 1)
        inputs[f"scaled_f{f}"] = (vectors * scale).reshape(f * 16, 8)
    for f, eps in itertools.product((8, 9, 16), (1e-6, 1e-3)):
        frame = torch.randn(1, 16, 8, generator=gen, dtype=torch.float64)
        noise = torch.randn(f, 16, 8, generator=gen, dtype=torch.float64)
        inputs[f"static_{eps:g}_f{f}"] = (frame + eps * noise).reshape(f * 16, 8)
    return inputs


def dycoke_cases(inputs: dict[str, torch.Tensor]) -> list[dict]:
    cases = []
    for name, x in inputs.items():
        n = 196 if "n196" in name else 16
        frames = x.shape[0] // n
        if name.startswith("rand_n16"):
            dtypes = ("float64", "float32", "bfloat16")
        elif name.startswith("rand_n196"):
            dtypes = ("float32", "float64")
        else:
            dtypes = ("float64", "float32")
        for dtype, ratio in itertools.product(dtypes, RATIOS):
            cases.append(dict(input=name, frames=frames, tokens_per_frame=n, dtype=dtype,
                              merging_ratio=ratio, legacy=False))
        if name.startswith("rand_n16") or name.startswith("scaled"):
            for ratio in RATIOS:
                cases.append(dict(input=name, frames=frames, tokens_per_frame=n, dtype="float64",
                                  merging_ratio=ratio, legacy=True))
    return cases


def make_dycoke(args: argparse.Namespace, meta: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    repo = args.dycoke_repo
    head = git(repo, "rev-parse", args.dycoke_rev).strip()
    legacy = git(repo, "rev-parse", args.dycoke_legacy_rev).strip()
    functions = {
        (False, False): load_dycoke(repo, head),
        (False, True): load_dycoke(repo, head, empty_stack=True),
        (True, False): load_dycoke(repo, legacy),
        (True, True): load_dycoke(repo, legacy, empty_stack=True),
    }
    meta.update(
        source="https://github.com/KD-TAO/DyCoke",
        file=DYCOKE_FILE,
        function=DYCOKE_FUNCTION,
        commit=head,
        commit_date=git(repo, "show", "-s", "--format=%cI", head).strip(),
        file_last_changed=git(repo, "log", "-1", "--format=%H %cI", head, "--", DYCOKE_FILE).strip(),
        blob=blob_hash(git(repo, "show", f"{head}:{DYCOKE_FILE}")),
        legacy_commit=legacy,
        legacy_commit_date=git(repo, "show", "-s", "--format=%cI", legacy).strip(),
        legacy_blob=blob_hash(git(repo, "show", f"{legacy}:{DYCOKE_FILE}")),
    )
    gen = torch.Generator().manual_seed(args.seed)
    inputs = dycoke_inputs(gen)
    tensors = {f"input.{name}": x for name, x in inputs.items()}
    cases = dycoke_cases(inputs)
    for i, case in enumerate(cases):
        x = inputs[case["input"]].to(DTYPES[case["dtype"]])
        n, ratio = case["tokens_per_frame"], case["merging_ratio"]
        try:
            out = functions[(case["legacy"], False)](x, n, ratio)
            case["published_raises"] = None
        except RuntimeError as e:
            case["published_raises"] = f"RuntimeError: {e}"
            out = functions[(case["legacy"], True)](x, n, ratio)
        case["length"] = out.shape[0]
        idx, case["unique"] = match_rows(x, out)
        case["key"] = f"case{i:03d}"
        tensors[f"{case['key']}.idx"] = idx.to(torch.int16)
    # the published keep count: F = 5 frames keep N + 3 * keep tokens (frames 1, 2, 3 pruned)
    ratios = torch.tensor([i / 20 for i in range(21)] + [0.33, 2 / 3, 0.95, 0.99], dtype=torch.float64)
    sizes = torch.tensor([1, 7, 10, 16, 49, 100, 144, 196, 576, 729])
    keep = torch.empty(len(ratios), len(sizes), dtype=torch.int64)
    for (a, r), (b, n) in itertools.product(enumerate(ratios.tolist()), enumerate(sizes.tolist())):
        length = functions[(False, False)](torch.randn(5 * n, 1, generator=gen), n, r).shape[0]
        keep[a, b] = (length - n) // 3
    tensors.update({"keep_table.ratios": ratios, "keep_table.sizes": sizes, "keep_table.keep": keep})
    return tensors, cases


def evs_inputs(gen: torch.Generator) -> dict[str, tuple[torch.Tensor, tuple[int, int, int]]]:
    inputs = {}
    for t, (h, w, m) in itertools.product((1, 2, 4, 7), ((4, 4, 1), (4, 6, 2), (8, 8, 2), (6, 10, 2))):
        n = (h // m) * (w // m)
        x = torch.randn(t * n, 16, generator=gen, dtype=torch.float64)
        inputs[f"rand_t{t}_{h}x{w}m{m}"] = (x, (h, w, m))
    for t in (4, 7):
        base = torch.randn(t, 15, 16, generator=gen, dtype=torch.float64)
        inputs[f"repeat_pairs_t{t}"] = (base[torch.arange(t) // 2].reshape(t * 15, 16), (6, 10, 2))
        inputs[f"repeat_all_t{t}"] = (base[:1].expand(t, 15, 16).reshape(t * 15, 16).clone(), (6, 10, 2))
        vectors = torch.randn(t, 1, 16, generator=gen, dtype=torch.float64)
        inputs[f"constant_t{t}"] = (vectors.expand(t, 15, 16).reshape(t * 15, 16).clone(), (6, 10, 2))
        coarse = torch.randint(-1, 2, (t * 16, 3), generator=gen).to(torch.float64)
        inputs[f"coarse_t{t}"] = (coarse, (8, 8, 2))
        frame = torch.randn(1, 16, 16, generator=gen, dtype=torch.float64)
        noise = torch.randn(t, 16, 16, generator=gen, dtype=torch.float64)
        inputs[f"static_t{t}"] = ((frame + 1e-6 * noise).reshape(t * 16, 16), (4, 4, 1))
    return inputs


def make_evs(args: argparse.Namespace, meta: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    repo = args.vllm_repo
    source = (Path(repo) / EVS_FILE).read_text()
    commit = args.vllm_commit
    if commit is None:
        try:
            commit = git(repo, "rev-parse", "HEAD").strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            raise SystemExit(f"{repo} is not a git work tree: give its commit with --vllm-commit") from None
    evs = load_evs(repo)
    meta.update(source="https://github.com/vllm-project/vllm", file=EVS_FILE,
                function="compute_retention_mask, compute_retained_tokens_count", commit=commit,
                blob=blob_hash(source))
    gen = torch.Generator().manual_seed(args.seed + 1)
    inputs = evs_inputs(gen)
    tensors = {f"input.{name}": x for name, (x, _) in inputs.items()}
    cases = []
    for name, (x, (h, w, m)) in inputs.items():
        t = x.shape[0] // ((h // m) * (w // m))
        for dtype, q in itertools.product(DTYPES, (0.0, 0.3, 0.5, 0.75, 0.9)):
            key = f"case{len(cases):03d}"
            mask = evs.compute_retention_mask(x.to(DTYPES[dtype]), (t, h, w), m, q)
            tensors[f"{key}.mask"] = mask
            cases.append(dict(input=name, key=key, frames=t, height=h, width=w, merge=m,
                              tokens_per_frame=(h // m) * (w // m), dtype=dtype, q=q,
                              retain=int(mask.sum())))
    qs = torch.tensor([i / 20 for i in range(20)] + [0.33, 2 / 3, 0.95, 0.99, 0.999], dtype=torch.float64)
    sizes = torch.tensor([1, 6, 10, 15, 16, 64, 196, 1024])
    frames = torch.tensor([1, 2, 3, 4, 7, 8, 10, 16, 32])
    table = torch.empty(len(qs), len(sizes), len(frames), dtype=torch.int64)
    for (a, q), (b, n), (c, t) in itertools.product(
        enumerate(qs.tolist()), enumerate(sizes.tolist()), enumerate(frames.tolist())
    ):
        table[a, b, c] = evs.compute_retained_tokens_count(n, t, q)
    tensors.update({"count_table.q": qs, "count_table.tokens_per_frame": sizes,
                    "count_table.num_frames": frames, "count_table.retained": table})
    return tensors, cases


def check_dycoke(tensors: dict[str, torch.Tensor], cases: list[dict]) -> int:
    from stprune.core.dycoke import dycoke_keep_from_ratio, dycoke_ttm_keep

    bad = 0
    for case in cases:
        x = tensors[f"input.{case['input']}"].to(DTYPES[case["dtype"]])
        keep = dycoke_keep_from_ratio(case["merging_ratio"], case["tokens_per_frame"])
        idx = dycoke_ttm_keep(x, case["tokens_per_frame"], keep, legacy_pair_index=case["legacy"])
        ref_idx = tensors[f"{case['key']}.idx"].long()
        same = idx.shape == ref_idx.shape and torch.equal(_bits(x[idx]), _bits(x[ref_idx]))
        if case["unique"]:
            same = same and torch.equal(idx, ref_idx)
        bad += not same
    return bad


def check_evs(tensors: dict[str, torch.Tensor], cases: list[dict]) -> int:
    from stprune.core.evs import evs_retained_count, evs_retention_mask

    bad = 0
    for case in cases:
        x = tensors[f"input.{case['input']}"].to(DTYPES[case["dtype"]])
        n = case["tokens_per_frame"]
        retain = evs_retained_count(n, case["frames"], case["q"])
        bad += not torch.equal(evs_retention_mask(x, n, retain), tensors[f"{case['key']}.mask"])
    return bad


def write(path: Path, tensors: dict[str, torch.Tensor], meta: dict, cases: list[dict]) -> None:
    metadata = {key: str(value) for key, value in meta.items()}
    metadata["cases"] = json.dumps(cases)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB, {len(cases)} cases)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dycoke-repo", help="a git clone of github.com/KD-TAO/DyCoke")
    parser.add_argument("--dycoke-rev", default="HEAD")
    parser.add_argument("--dycoke-legacy-rev", default=DYCOKE_LEGACY_REV)
    parser.add_argument("--vllm-repo", help=f"a clone of github.com/vllm-project/vllm (holds {EVS_FILE})")
    parser.add_argument("--vllm-commit", help="the commit of --vllm-repo when it is not a git work tree")
    parser.add_argument("--out-dir", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-check", action="store_true", help="do not compare stprune's functions")
    args = parser.parse_args(argv)
    if not (args.dycoke_repo or args.vllm_repo):
        parser.error("give --dycoke-repo and/or --vllm-repo")
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # the published code calls torch.tensor(tensor)
    common = {
        "generated": datetime.date.today().isoformat(),
        "generator": "benchmarks/make_llm_pruning_reference.py",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "seed": args.seed,
    }
    status = 0
    jobs = []
    if args.dycoke_repo:
        jobs.append(("dycoke_ttm_reference.safetensors", make_dycoke, check_dycoke))
    if args.vllm_repo:
        jobs.append(("evs_reference.safetensors", make_evs, check_evs))
    for filename, make, check in jobs:
        meta = dict(common)
        tensors, cases = make(args, meta)
        raised = sum(1 for c in cases if c.get("published_raises"))
        note = f", {raised} where the published function raises" if raised else ""
        print(f"{filename}: {len(cases)} cases{note}")
        if not args.no_check:
            bad = check(tensors, cases)
            print(f"  stprune: {len(cases) - bad}/{len(cases)} cases equal")
            status |= bad > 0
        if not args.no_save:
            write(args.out_dir / filename, tensors, meta, cases)
    return status


if __name__ == "__main__":
    sys.exit(main())
