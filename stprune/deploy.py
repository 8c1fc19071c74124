"""Deployment: export a (pruned) video model to ONNX or to a ``torch.export`` program, and check it.

:func:`export` writes what the file's extension names: ``.onnx`` (the PyTorch dynamo exporter,
``torch.onnx.export(..., dynamo=True)``, run by ONNX Runtime and other ONNX runtimes) or ``.pt2``
(``torch.export.save`` of an ``ExportedProgram``: ``torch.export.load(path).module()(clip)``,
AOTInductor). The exported model takes the clip (the adapter's input: ``(B, T, 3, H, W)`` for the
Hugging Face families, ``(B, 3, T, H, W)`` for Video Swin) and returns one tensor: the logits of a
classifier, or an encoder's output tokens. Pruning is part of the graph: the scores, the
selection and the gathers are ordinary operators, and every block runs on the planned number of
tokens, fixed in the graph (only the batch size may vary, ``dynamic_batch=True``).

What can be exported: every family and method whose token counts do not depend on the data (the
ViT families with a fixed ``r`` / ``flops_target``, Video Swin in its static layout
``shifted_windows="static"``), and every unpruned model. What cannot is refused before any work,
in one line (:func:`export_refusal`): RLT's threshold mode (a token count per clip), Video Swin's
padded layout (a window size read on the host per forward), the video LLMs, and, to ONNX only,
random pruning (its draw is keyed by the bit pattern of the clip's values, a float-to-int bit
cast that ONNX has only from opset 26, above what the exporter writes; ``.pt2`` works).

Two things the exporter needs, both scoped to the export call: attention is traced with the math
SDPA backend (the fused CPU kernel's output strides differ from what the exporter's decomposition
produces, which breaks views after it; the exported graph is the same attention), and Hugging Face
models that build an all-true bidirectional mask while being exported (ViViT) skip it, as they do
in eager mode when no padding mask is given (a pruned block has fewer tokens than such a mask).
One operator gets a translation of our own: ``aten.sort.stable`` (RLT's fixed budget) becomes ONNX
``TopK``, which breaks ties by the lower index, as a stable sort does.

:func:`export` checks what it wrote (``verify=True``): it runs the export on the example clip
(ONNX Runtime for ``.onnx``, the loaded program for ``.pt2``), compares the output with the
PyTorch model's (``atol``: 1e-4 in float32), and reads the number of tokens entering every block's
attention (the input of its key projection; Video Swin: of its first norm) from the export: at run time in
ONNX Runtime, with those tensors added to the graph's outputs, and from the traced shapes of the
program for ``.pt2``. A mismatch raises :class:`ExportCheckError`.

``onnx``, ``onnxscript`` and ``onnxruntime`` are an optional extra: ``pip install 'stprune[export]'``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stprune.errors import SettingError, SettingTypeError, StpruneError, UnsupportedModelError

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "ExportCheckError",
    "MissingDependencyError",
    "export",
    "export_refusal",
    "check_exportable",
    "onnx_session",
    "run_onnx",
]

#: file extension -> format
EXPORT_FORMATS: dict[str, str] = {".onnx": "onnx", ".pt2": "pt2"}

_EXTRA = "pip install 'stprune[export]'"
# weights above this go to an external data file next to the .onnx (protobuf's limit is 2 GiB)
_EXTERNAL_DATA_BYTES = 1536 * 2**20
_METADATA_KEY = "stprune"


class MissingDependencyError(StpruneError, ImportError):
    """An optional dependency (the ``export`` extra) is not installed."""


class ExportCheckError(StpruneError, RuntimeError):
    """The exported model does not compute what the PyTorch model computes (output or token counts)."""


@dataclass
class ExportResult:
    """What :func:`export` wrote.

    Attributes:
        path: the file (an ONNX model may have its weights in ``path + ".data"`` when large).
        format: ``"onnx"`` or ``"pt2"``.
        input_name: the graph's input (the clip), ``"pixel_values"`` / ``"pixel_values_videos"``
            / ``"x"``.
        input_shape: the example's shape; with ``dynamic_batch`` the batch size may differ.
        output_name: ``"logits"`` (a classifier) or ``"last_hidden_state"`` (an encoder).
        dynamic_batch: whether the batch dimension is dynamic.
        method: the pruning method, or None for an unpruned model.
        r_per_stage: r of every stage (empty when unpruned).
        planned_tokens: tokens entering every block's attention, as planned (protected tokens
            included; Video Swin: active tokens of each block).
        graph_tokens: the same, read from the export by the check (None without ``verify``).
        max_abs_diff: largest |exported - PyTorch| of the output on the example (None without
            ``verify``).
    """

    path: Path
    format: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    dynamic_batch: bool
    method: str | None
    r_per_stage: list[int] = field(default_factory=list)
    planned_tokens: list[int] = field(default_factory=list)
    graph_tokens: list[int] | None = None
    max_abs_diff: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "input_name": self.input_name,
            "input_shape": list(self.input_shape),
            "output_name": self.output_name,
            "dynamic_batch": self.dynamic_batch,
            "method": self.method,
            "r_per_stage": self.r_per_stage,
            "planned_tokens": self.planned_tokens,
            "graph_tokens": self.graph_tokens,
            "max_abs_diff": self.max_abs_diff,
        }


# --------------------------------------------------------------------------------------------
# what can be exported
# --------------------------------------------------------------------------------------------


def _format(path: str | os.PathLike) -> str:
    suffix = Path(os.fspath(path)).suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise SettingError(
            f"export path {os.fspath(path)!r}: the extension says the format; use .onnx (ONNX, the dynamo "
            "exporter) or .pt2 (a torch.export program)"
        )
    return EXPORT_FORMATS[suffix]


def _unwrap(model: Any) -> nn.Module:
    inner = getattr(model, "model", None)  # a ResolvedModel from stprune.load_model
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    if not isinstance(model, nn.Module):
        raise SettingTypeError(
            f"model must be a torch.nn.Module (or stprune.load_model's result); got {type(model).__name__}"
        )
    return model


def export_refusal(model: nn.Module, fmt: str = "onnx") -> str | None:
    """Why ``model`` (patched or not) cannot be exported to ``fmt`` (``"onnx"`` / ``"pt2"``), in one
    line; None if it can. Decided from the model and its patch alone, before any tracing."""
    from stprune import api
    from stprune.adapters import get_adapter
    from stprune.adapters.video_llm import VideoLLMAdapter

    model = _unwrap(model)
    name = type(model).__name__
    original = getattr(model, "_orig_mod", None)
    if isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule":
        inner = type(original).__name__
        return f"got a torch.compile wrapper of {inner}: export the module itself (compiled._orig_mod)"
    try:
        adapter = get_adapter(model)
    except UnsupportedModelError as err:
        return str(err)
    if isinstance(adapter, VideoLLMAdapter):
        return (
            f"{name} is a video LLM: its prompt length and the video tokens it keeps change per call "
            "(generate, a KV cache), so it has no static graph to export; export a video classifier or "
            "encoder"
        )
    if any(p.device.type == "meta" for p in model.parameters()):
        return f"{name} is on the meta device: it has no weights to export"
    if not api.is_patched(model):
        return None
    pruner = api._pruner(model)
    method = pruner.method
    if getattr(pruner, "adaptive", False):
        return (
            f"method {method.name!r} in its threshold mode keeps a token count per clip (a data-dependent "
            "sequence length), which a static graph cannot hold; patch with a fixed budget (r= or "
            "flops_target=)"
        )
    if getattr(pruner, "shifted_windows", "static") != "static":
        return (
            f"Video Swin's shifted_windows={pruner.shifted_windows!r} layout pads each shifted window to a "
            "count read on the host every forward; patch with shifted_windows='static' (static shapes) to "
            "export"
        )
    if fmt == "onnx" and getattr(method, "uses_sample_key", False):
        return (
            f"method {method.name!r} keys each clip's draw by the bit pattern of its values (a float-to-int "
            "bit cast), which ONNX has only from opset 26, above what torch's exporter writes; a .pt2 "
            "(torch.export) program takes it, or use an index-pruning method such as 'sta'"
        )
    return None


def check_exportable(model: nn.Module, fmt: str = "onnx") -> None:
    """Raise :class:`~stprune.errors.UnsupportedModelError` with :func:`export_refusal`'s reason."""
    why = export_refusal(model, fmt)
    if why is not None:
        raise UnsupportedModelError(why)


def _require(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependencyError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: {_EXTRA}"
        )


# --------------------------------------------------------------------------------------------
# the exported forward
# --------------------------------------------------------------------------------------------


class _ClipForward(nn.Module):
    """``model(**{input_name: clip})`` -> one tensor (``output``), the module that is exported."""

    def __init__(self, model: nn.Module, input_name: str, output: str | None) -> None:
        super().__init__()
        self.model = model
        self.input_name = input_name
        self.output = output

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        out = self.model(**{self.input_name: clip})
        return out if self.output is None else getattr(out, self.output)


def _output_name(out: Any) -> str | None:
    if isinstance(out, torch.Tensor):
        return None
    for key in ("logits", "last_hidden_state"):
        if isinstance(getattr(out, key, None), torch.Tensor):
            return key
    raise UnsupportedModelError(f"the model returns {type(out).__name__} without logits or last_hidden_state")


@contextlib.contextmanager
def _tracing_context() -> Iterator[None]:
    """The export call's environment: math SDPA, HF's all-true masks skipped, no autograd."""
    import warnings

    from torch.nn.attention import SDPBackend, sdpa_kernel

    math_sdpa = sdpa_kernel(SDPBackend.MATH)
    # (warnings: torch's own deprecation inside its exporter)
    with torch.no_grad(), math_sdpa, _no_full_bidirectional_masks(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        yield


@contextlib.contextmanager
def _no_full_bidirectional_masks() -> Iterator[None]:
    """While exporting, transformers materialises the all-true mask it skips in eager mode when no
    padding mask is given (``_ignore_bidirectional_mask_sdpa`` refuses to skip under export); the
    mask has the full sequence length, so blocks after a pruning point could not take it. Skip it
    as in eager mode: without a padding mask it masks nothing."""
    try:
        from transformers import masking_utils
    except ImportError:  # pragma: no cover - transformers is a dependency
        yield
        return
    original = getattr(masking_utils, "_ignore_bidirectional_mask_sdpa", None)
    if original is None:
        yield
        return

    def ignore(padding_mask: Any, kv_length: int, local_attention_size: int | None = None) -> Any:
        if padding_mask is None and local_attention_size is None:
            return True
        return original(padding_mask, kv_length, local_attention_size)

    masking_utils._ignore_bidirectional_mask_sdpa = ignore
    try:
        yield
    finally:
        masking_utils._ignore_bidirectional_mask_sdpa = original


def _sort_stable(self: Any, *, stable: Any = None, dim: int = -1, descending: bool = False) -> Any:
    """``aten.sort.stable`` as ONNX ``TopK`` over the whole axis: ONNX TopK breaks ties by the lower
    index, which is what a stable sort does (ascending and descending)."""
    from onnxscript import opset18 as op

    size = op.Reshape(op.Gather(op.Shape(self), dim, axis=0), op.Constant(value_ints=[1]))
    return op.TopK(self, size, axis=dim, largest=descending, sorted=True)


def _translations() -> dict:
    return {torch.ops.aten.sort.stable: _sort_stable}


# --------------------------------------------------------------------------------------------
# where the tokens are: the input of every block's key projection
# --------------------------------------------------------------------------------------------


def _probe_modules(model: nn.Module) -> list[nn.Module]:
    """Per block, the module whose input holds the tokens entering the block's attention: the key
    projection of a ViT-family block (its input: the normalised tokens), the first norm of a Video
    Swin block (its input: the stage's grid, or the active tokens of a pruned stage)."""
    from stprune.adapters import get_adapter
    from stprune.adapters.base import SequenceAdapter

    adapter = get_adapter(model)
    if isinstance(adapter, SequenceAdapter):
        return list(adapter.layout().key_modules)
    from stprune.architectures.video_swin.model import VideoSwinBlock

    return [m.norm1 for m in model.modules() if isinstance(m, VideoSwinBlock)]


def _planned(model: nn.Module) -> tuple[str | None, list[int], list[int]]:
    """(method, r per stage, tokens per block as planned)."""
    from stprune import api
    from stprune.adapters import get_adapter

    if api.is_patched(model):
        info = api.patch_info(model)
        return info.method, [s.r for s in info.stages], list(info.plan.tokens_per_block)
    return None, [], list(get_adapter(model).unpruned_tokens_per_block())


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


def export(
    model: nn.Module,
    example: torch.Tensor | None,
    path: str | os.PathLike,
    *,
    dynamic_batch: bool = True,
    verify: bool = True,
    atol: float | None = None,
) -> ExportResult:
    """Export ``model`` (patched with stprune or not) to ``path``: ONNX for ``.onnx``, a
    ``torch.export`` program for ``.pt2``.

    Args:
        model: a supported video model, or :func:`stprune.load_model`'s result. Exported in eval
            mode (its mode is restored afterwards).
        example: a clip as the model takes it (``(B, T, 3, H, W)``; Video Swin ``(B, 3, T, H, W)``),
            or None for a random one of batch 1. It fixes every dimension but the batch.
        path: the file to write; its extension names the format. Missing folders are created.
        dynamic_batch: let the exported model take any batch size (False: exactly the example's).
        verify: run the export on the example and compare with the PyTorch model: the output
            within ``atol`` and the tokens entering every block's attention as planned, read from
            the export (see the module docstring). Needs ``onnxruntime`` for ``.onnx``.
        atol: tolerance of that comparison (default 1e-4 in float32, 1e-8 in float64).

    Returns:
        an :class:`ExportResult` (what was written, planned and found).

    Raises:
        UnsupportedModelError: a setting that cannot be exported (:func:`export_refusal`), before any
            work; or the exporter failed (the message gives its reason; the cause is chained).
        SettingError: an unknown extension, an example that is not a floating-point tensor.
        MissingDependencyError: ``onnx`` / ``onnxscript`` (``.onnx``) or ``onnxruntime`` (its check)
            is not installed: ``pip install 'stprune[export]'``.
        ExportCheckError: the check found a different output or token count.
    """
    from stprune.adapters import get_adapter

    fmt = _format(path)
    model = _unwrap(model)
    check_exportable(model, fmt)
    if fmt == "onnx":
        _require("onnx", "onnxscript", *(["onnxruntime"] if verify else []))
    adapter = get_adapter(model)
    if example is None:
        example = next(iter(adapter.example_inputs(1).values()))
        example = example.to(next(model.parameters()).dtype)
    if not isinstance(example, torch.Tensor) or not example.is_floating_point():
        raise SettingError(f"example must be a floating-point clip tensor; got {type(example).__name__}")
    input_name = next(iter(adapter.example_inputs(1, device="meta")))
    method, r_per_stage, planned = _planned(model)
    out_path = Path(os.fspath(path)).expanduser()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(**{input_name: example})
        output = _output_name(out)
        reference = out if output is None else getattr(out, output)
        wrapper = _ClipForward(model, input_name, output).eval()
        traced = example
        if dynamic_batch and example.shape[0] < 2:  # a batch of 1 would be specialised
            traced = example.expand(2, *example.shape[1:]).contiguous()
        dynamic = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
        meta = {
            "method": method,
            "r_per_stage": r_per_stage,
            "planned_tokens": planned,
            "input_name": input_name,
            "input_shape": list(example.shape),
            "dynamic_batch": dynamic_batch,
            "probes": _probe_paths(wrapper, model),
        }
        program = None
        try:
            with _tracing_context():
                if fmt == "onnx":
                    onnx_program = _to_onnx(wrapper, traced, input_name, output or "output", dynamic)
                else:
                    program = torch.export.export(wrapper, (traced,), dynamic_shapes=dynamic, strict=False)
        except StpruneError:
            raise
        except Exception as err:  # noqa: BLE001 - the exporters raise many kinds; one line, cause chained
            raise UnsupportedModelError(
                f"exporting {type(model).__name__} ({method or 'unpruned'}) to {fmt} failed: "
                f"{_first_line(err)}"
            ) from err
        out_path.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        if fmt == "onnx":
            onnx_program.model.metadata_props[_METADATA_KEY] = json.dumps(meta)
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            onnx_program.save(str(out_path), external_data=weights > _EXTERNAL_DATA_BYTES)
        else:
            torch.export.save(program, str(out_path), extra_files={f"{_METADATA_KEY}.json": json.dumps(meta)})
    finally:
        model.train(was_training)

    result = ExportResult(
        out_path, fmt, input_name, tuple(example.shape), output or "output", dynamic_batch, method,
        r_per_stage, planned,
    )  # fmt: skip
    if verify:
        if fmt == "onnx":
            got, tokens = run_onnx(out_path, example, with_tokens=True)
        else:
            with torch.no_grad():
                got = program.module()(example)
            tokens = _program_tokens(program, meta["probes"], traced.shape[0])
        _check(result, reference, torch.as_tensor(got), tokens, atol)
    return result


def _first_line(err: BaseException) -> str:
    """The innermost cause's first line (the exporters wrap the real reason several times)."""
    while err.__cause__ is not None:
        err = err.__cause__
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _probe_paths(wrapper: nn.Module, model: nn.Module) -> list[str]:
    names = {id(m): n for n, m in wrapper.named_modules()}
    return [names[id(m)] for m in _probe_modules(model)]


def _to_onnx(wrapper: nn.Module, clip: torch.Tensor, input_name: str, output_name: str, dynamic: Any) -> Any:
    import io
    import logging

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" and the like
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            return torch.onnx.export(
                wrapper,
                (clip,),
                dynamo=True,
                input_names=[input_name],
                output_names=[output_name],
                dynamic_shapes=dynamic,
                custom_translation_table=_translations(),
                optimize=True,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def _check(
    result: ExportResult,
    reference: torch.Tensor,
    got: torch.Tensor,
    tokens: list[int],
    atol: float | None,
) -> None:
    if atol is None:
        atol = 1e-8 if reference.dtype == torch.float64 else 1e-4
    result.graph_tokens = tokens
    if tuple(got.shape) != tuple(reference.shape):
        raise ExportCheckError(
            f"{result.path}: the export returns {tuple(got.shape)}, the PyTorch model "
            f"{tuple(reference.shape)}"
        )
    diff = (got.to(reference.dtype).cpu() - reference.cpu()).abs().max().item() if reference.numel() else 0.0
    result.max_abs_diff = diff
    if not diff <= atol:
        hint = (
            "; on random weights pruning can amplify float rounding (two scores that tie keep other "
            "tokens; vid-TLDR's entropy normalisation): if another clip or a trained model passes, that "
            "is what happened here"
            if result.method
            else ""
        )
        raise ExportCheckError(
            f"{result.path}: the export's {result.output_name} differ from the PyTorch model's by up to "
            f"{diff:.3g} (tolerance {atol:g}){hint}"
        )
    if tokens != result.planned_tokens:
        raise ExportCheckError(
            f"{result.path}: tokens entering each block in the export {tokens} differ from the plan "
            f"{result.planned_tokens}"
        )


def _program_tokens(program: Any, probes: Sequence[str], batch: int) -> list[int]:
    """Tokens entering every probe module in an ``ExportedProgram``, from its traced shapes."""
    found: dict[str, int] = {}
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        paths = {path for path, _ in stack.values()}
        for probe in probes:
            if probe in found or probe not in paths or node.op != "call_function":
                continue
            first = node.args[0] if node.args else None
            val = getattr(first, "meta", {}).get("val")
            if isinstance(val, torch.Tensor):
                found[probe] = _tokens(tuple(_hint(d) for d in val.shape), batch)
    return [found.get(p, -1) for p in probes]


def _hint(dim: Any) -> int:
    try:
        return int(dim)
    except (TypeError, ValueError, RuntimeError):  # a symbolic batch: the traced example's value
        return int(dim.node.hint)


def _tokens(shape: Sequence[int], batch: int) -> int:
    """Tokens in a (..., C) activation of ``batch`` clips: every dimension but the channels, per clip."""
    return math.prod(shape[:-1]) // batch


# --------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------


def onnx_session(path: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU for an exported model (a file or its bytes),
    every graph optimisation on; ``threads``: intra-op threads (default: ONNX Runtime's)."""
    _require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])


def _onnx_metadata(model: Any) -> dict[str, Any]:
    for prop in model.metadata_props:
        if prop.key == _METADATA_KEY:
            return json.loads(prop.value)
    return {}


def _probe_values(model: Any, probes: Sequence[str]) -> list[str]:
    """Per probe module, the graph value entering it: consumed by the nodes of that module's scope
    (``pkg.torch.onnx.name_scopes``), produced outside it, not a weight or constant, of rank >= 3."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    tokens_like = {v.name for v in graph.value_info if len(v.type.tensor_type.shape.dim) >= 3}
    scoped: dict[str, list[Any]] = {p: [] for p in probes}
    for node in graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes is None:
            continue
        names = set(ast.literal_eval(scopes))
        for probe in probes:
            if probe in names:
                scoped[probe].append(node)
    values = []
    for i, probe in enumerate(probes):
        nodes = scoped[probe]
        inside = {o for n in nodes for o in n.output}
        inputs = [v for n in nodes for v in n.input if v and v not in inside and v not in constants]
        inputs = list(dict.fromkeys(v for v in inputs if v in tokens_like))
        if len(inputs) != 1:
            raise ExportCheckError(
                f"cannot find the tokens entering block {i} ({probe}) in the ONNX graph: candidates {inputs}"
            )
        values.append(inputs[0])
    return values


def run_onnx(
    path: str | os.PathLike, clip: torch.Tensor, with_tokens: bool = False, threads: int | None = None
) -> Any:
    """Run an exported ``.onnx`` in ONNX Runtime on ``clip``; returns the output as a tensor, and with
    ``with_tokens`` also the tokens entering every block at run time (those tensors are added to
    the graph's outputs for this run; the file is not changed)."""
    _require("onnx", "onnxruntime")
    import onnx

    if not with_tokens:
        session = onnx_session(path, threads)
        out = session.run(None, {session.get_inputs()[0].name: clip.cpu().numpy()})
        return torch.from_numpy(out[0])
    model = onnx.load(str(path))
    meta = _onnx_metadata(model)
    if "probes" not in meta:
        raise ExportCheckError(f"{path} was not written by stprune.export (no '{_METADATA_KEY}' metadata)")
    values = _probe_values(model, meta["probes"])
    infos = {v.name: v for v in model.graph.value_info}
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(infos[v] for v in dict.fromkeys(values) if v not in present)
    session = onnx_session(model.SerializeToString(), threads)
    names = [o.name for o in session.get_outputs()]
    outs = dict(
        zip(names, session.run(None, {session.get_inputs()[0].name: clip.cpu().numpy()}), strict=True)
    )
    tokens = [_tokens(outs[v].shape, clip.shape[0]) for v in values]
    return torch.from_numpy(outs[names[0]]), tokens
