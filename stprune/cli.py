"""Command-line interface: thin. Each sub-command parses its arguments, calls library functions
and prints. Register a sub-command by adding a ``_add_<name>(sub)`` function below and listing it
in ``_COMMANDS``.

A user's mistake fails in one line, ``stprune <command>: error: ...``, with exit code 2: option
values are checked while parsing (the ``type=`` functions below, shared by every command), and
the library's own errors (:class:`stprune.errors.StpruneError`) are caught in :func:`main`.
Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from stprune.argtypes import OneLineParser as _Parser
from stprune.argtypes import keep_ratio, nonnegative_int, positive_int

# --------------------------------------------------------------------------------------------
# option types: every command checks its values the same way, before any work (the shared ones
# live in stprune.argtypes, also used by the developer scripts)
# --------------------------------------------------------------------------------------------


def device_arg(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``, where CUDA must exist on this machine."""
    import torch

    name = text.strip().lower()
    if name == "cpu":
        return name
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device stprune runs on; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r}: no CUDA device is available (torch {torch.__version__}); use cpu"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {count} CUDA device(s), cuda:0..{count - 1}"
        )
    return name


def _as_argument_error(check: Callable[[str, str], object], text: str, what: str) -> str:
    """``text`` if ``check(text, what)`` passes; its SettingError as argparse's one-line error."""
    from stprune.errors import SettingError

    try:
        check(text, what)
    except SettingError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def output_file(text: str) -> str:
    """argparse type: a file path that can be written (checked before the run; folders are created)."""
    from stprune.bench.report import check_writable

    return _as_argument_error(check_writable, text, "output file")


def plot_file(text: str) -> str:
    """argparse type: a writable image path whose extension matplotlib can save (.png, .pdf, .svg...)."""
    import os

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())
    ext = os.path.splitext(text)[1].lower().lstrip(".")
    if ext not in formats:
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in an image format matplotlib writes: {', '.join('.' + f for f in formats)}"
        )
    return output_file(text)


def output_dir(text: str) -> str:
    """argparse type: a folder files can be written in, or one that can be created."""
    from stprune.bench.report import check_writable_dir

    return _as_argument_error(check_writable_dir, text, "output folder")


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def export_file(text: str) -> str:
    """argparse type: a writable path ending in .onnx or .pt2 (the export format)."""
    import os

    from stprune.deploy import EXPORT_FORMATS

    if os.path.splitext(text)[1].lower() not in EXPORT_FORMATS:
        raise argparse.ArgumentTypeError(
            f"{text!r} must end in .onnx (ONNX, the dynamo exporter) or .pt2 (a torch.export program)"
        )
    return output_file(text)


def _add_progress(p: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress``: by default progress is shown only when stderr is a terminal."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress on stderr even when it is not a terminal (default: only on a terminal)",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="no progress display"
    )


def _progress(args: argparse.Namespace) -> bool:
    """Whether to show progress: as asked, else only when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


class _NoStatus:
    def update(self, *args: object, **kwargs: object) -> None:
        pass


def _status(args: argparse.Namespace, text: str) -> object:
    """A one-line status display on stderr (rich), or a silent stand-in without progress."""
    import contextlib

    if not _progress(args):
        return contextlib.nullcontext(_NoStatus())
    from rich.console import Console

    return Console(stderr=True, force_terminal=True if not sys.stderr.isatty() else None).status(text)


def _add_version(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "version",
        help="print the stprune version",
        description="Print the stprune version (as stprune --version).",
    )
    p.set_defaults(func=_run_version)


def _run_version(args: argparse.Namespace) -> int:
    from stprune import __version__

    print(__version__)
    return 0


def _add_r_and_target(p: argparse.ArgumentParser, r_help: str, target_help: str) -> None:
    """``--r R ...`` and ``--flops-target X ...``, each repeatable (values add up)."""
    p.add_argument("--r", type=int, nargs="+", action="extend", default=[], metavar="R", help=r_help)
    p.add_argument(
        "--flops-target", type=float, nargs="+", action="extend", default=[], metavar="X", help=target_help
    )


def _add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads N``: torch CPU threads (bench, demo)."""
    p.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        default=None,
        help="torch CPU threads, >= 1 (default: torch's choice)",
    )


def _add_geometry(p: argparse.ArgumentParser) -> None:
    """``--num-heads``, ``--num-frames``, ``--image-size``: what a checkpoint file does not record
    (eval, flops, bench, show)."""
    p.add_argument(
        "--num-heads",
        metavar="H",
        type=positive_int,
        default=None,
        help="attention heads of a zoo .pth (default from width)",
    )
    p.add_argument(
        "--num-frames",
        metavar="T",
        type=positive_int,
        default=None,
        help="frames per clip of a zoo .pth / Video Swin checkpoint (default: what the file records, else "
        "16 for a zoo .pth, 32 for Video Swin), or another frame count for V-JEPA 2; for a video LLM: "
        "the frames of the prompt's video",
    )
    p.add_argument(
        "--image-size",
        metavar="S",
        type=positive_int,
        default=None,
        help="input size of a zoo .pth / Video Swin checkpoint (default: what the file records, else 224); "
        "for a video LLM: the side of the prompt's square frames",
    )


def _resolve(args: argparse.Namespace, weights: bool = True) -> object:
    """``--model`` with ``--num-heads / --num-frames / --image-size``, as a ResolvedModel (the caller
    prints its ``clip`` once the setting is known to be valid, so an error comes alone)."""
    from stprune.architectures.loading import load_model

    resolved = load_model(
        args.model,
        num_heads=args.num_heads,
        num_frames=args.num_frames,
        image_size=args.image_size,
        weights=weights,
    )
    return resolved


def _add_setting_args(p: argparse.ArgumentParser) -> None:
    from stprune.architectures.loading import MODEL_HELP
    from stprune.methods import METHODS

    p.add_argument("--model", required=True, metavar="M", help=MODEL_HELP)
    _add_geometry(p)
    p.add_argument("--method", default="sta", choices=sorted(METHODS), help="pruning method (default: sta)")
    _add_r_and_target(
        p,
        "tokens dropped per group; several values compare several settings",
        "FLOPs ratio(s) in (0, 1]: r is chosen to reach each",
    )
    p.add_argument(
        "--keep-ratio",
        type=keep_ratio,
        nargs="+",
        action="extend",
        default=[],
        metavar="X",
        help="video LLMs: fraction(s) of each video's tokens kept, in (0, 1] (--r: tokens dropped per "
        "temporal slot); --num-frames / --image-size give the video, --prompt-tokens the text around it",
    )
    p.add_argument(
        "--prompt-tokens",
        metavar="N",
        type=positive_int,
        default=None,
        help="video LLMs: text tokens around the video in the prompt (default 64)",
    )
    p.add_argument("--json", metavar="PATH", type=output_file, help="also write the results as JSON")


def _settings(args: argparse.Namespace) -> list:
    from stprune.bench.compare import make_settings

    return make_settings(args.r, args.flops_target, methods=[args.method])


def _add_flops(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "flops",
        help="GFLOPs before/after pruning and tokens per block",
        description="Count a model's GFLOPs per clip unpruned and at every --r / --flops-target (a video "
        "LLM: per prompt, at every --keep-ratio / --r), with the tokens each block sees, from the plan "
        "(presets and model directories are built on the meta device: nothing runs).",
    )
    _add_setting_args(p)
    p.set_defaults(func=_run_flops)


def _measure_flops(model: object, args: argparse.Namespace) -> list:
    """The rows of every setting the model can take; the others are warned about (one line each),
    and a run where none of the asked-for settings can run fails (exit 2)."""
    from stprune.bench.compare import measure_flops_rows
    from stprune.errors import SettingError

    settings = _settings(args)
    notes: list[str] = []
    rows = measure_flops_rows(model, settings, on_skip=notes.append)
    if len(settings) > 1 and len(rows) == 1:
        raise SettingError(notes[0][len("skipped ") :])
    for note in notes:
        print(f"stprune {args.command}: warning: {note}", file=sys.stderr)
    return rows


def _video_llm_model(args: argparse.Namespace, weights: bool) -> object | None:
    """A video-LLM preset named by ``--model`` (meta device without weights), or ``None``; refuses
    --keep-ratio for another model."""
    from stprune.architectures.loading import load_model
    from stprune.architectures.presets import is_video_llm_preset
    from stprune.errors import SettingError

    if not is_video_llm_preset(args.model):
        if args.keep_ratio:
            raise SettingError(
                f"--keep-ratio is for video LLMs; {args.model} takes --r (tokens dropped per group) or "
                "--flops-target"
            )
        if args.prompt_tokens is not None:
            raise SettingError(
                f"--prompt-tokens is for video LLMs (text around the video); {args.model} takes a clip only"
            )
        return None
    if args.num_heads is not None:
        raise SettingError(f"--num-heads is for a VideoMAE zoo .pth; {args.model} is built from its config")
    return load_model(args.model, weights=weights).model  # its video: --num-frames / --image-size


def _video_llm_prompt(args: argparse.Namespace, model: object) -> object:
    """The prompt a video LLM's costs are counted on: --num-frames / --image-size, else a preset's
    reference clip (``VIDEO_LLM_CLIPS``), else the family's example; a frame count or size the model
    cannot take is refused naming the option."""
    from stprune.architectures.presets import VIDEO_LLM_CLIPS
    from stprune.bench.video_llm import Prompt
    from stprune.errors import SettingError
    from stprune.models import get_adapter

    frames, side = VIDEO_LLM_CLIPS.get(args.model, (None, None))
    frames = frames if args.num_frames is None else args.num_frames
    side = side if args.image_size is None else args.image_size
    size = None if side is None else (side, side)
    prompt = Prompt(frames, size, 64 if args.prompt_tokens is None else args.prompt_tokens)
    try:
        get_adapter(model).prompt_layout(prompt.num_frames, prompt.size, prompt.text_tokens)
    except SettingError as err:
        given = [
            f"{o} {v}" for o, v in (("--num-frames", args.num_frames), ("--image-size", args.image_size)) if v
        ]
        raise SettingError(f"{', '.join(given)}: {err}" if given else str(err)) from None
    return prompt


def _run_video_llm(args: argparse.Namespace, model: object, timed: bool) -> int:
    """``flops`` / ``bench`` on a video LLM: one prompt, unpruned and every --keep-ratio / --r."""
    from stprune.bench.report import write_json
    from stprune.bench.video_llm import print_video_llm_rows, time_video_llm_rows, video_llm_rows
    from stprune.errors import SettingError
    from stprune.models import get_adapter

    if args.flops_target:
        raise SettingError(
            "--flops-target is not defined for a video LLM (a prefill's FLOPs depend on the prompt); give "
            "--keep-ratio X (fraction of the video's tokens kept) or --r R (tokens dropped per temporal slot)"
        )
    prompt = _video_llm_prompt(args, model)
    notes: list[str] = []
    rows = video_llm_rows(model, [args.method], args.keep_ratio, args.r, prompt, on_skip=notes.append)
    if len(rows) == 1:
        raise SettingError(notes[0][len("skipped ") :])
    for note in notes:
        print(f"stprune {args.command}: warning: {note}", file=sys.stderr)
    print(f"prompt: {prompt.describe(rows[0].cost)}")
    title = f"{args.model} - {get_adapter(model).describe()} - one prompt"
    if timed:
        import torch

        with _status(args, "timing") as status:
            rows = time_video_llm_rows(
                model,
                rows,
                prompt,
                batch_size=args.batch_size,
                warmup=args.warmup,
                iters=args.iters,
                rounds=args.rounds,
                progress=status.update,
            )
        title += f", {args.device}, batch {args.batch_size}, {torch.get_num_threads()} threads"
    print_video_llm_rows(rows, title)
    if args.json:
        results = [r.as_dict() for r in rows]
        write_json(args.json, {"model": args.model, "prompt": vars(prompt), "results": results})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _run_flops(args: argparse.Namespace) -> int:
    from stprune.bench.report import print_rows, write_json
    from stprune.models import get_adapter

    llm = _video_llm_model(args, weights=False)
    if llm is not None:
        return _run_video_llm(args, llm, timed=False)

    resolved = _resolve(args, weights=False)  # presets and model directories on the meta device
    model = resolved.model
    rows = _measure_flops(model, args)
    print(f"clip: {resolved.clip}")
    print_rows(rows, f"{args.model} - {get_adapter(model).describe()} - GFLOPs per clip (1 MAC = 1 FLOP)")
    if args.json:
        write_json(
            args.json, {"model": args.model, "clip": resolved.clip, "results": [r.as_dict() for r in rows]}
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="throughput, latency and forward memory, unpruned vs pruned",
        description="Time a model unpruned and at every --r / --flops-target (a video LLM: the prefill at "
        "every --keep-ratio / --r), the settings interleaved round by round, in PyTorch or (--runtime "
        "onnxruntime) as exported ONNX; prints throughput, latency, speed-up vs 1 / FLOPs ratio and forward "
        "memory.",
    )
    _add_setting_args(p)
    p.add_argument(
        "--batch-size", metavar="B", type=positive_int, default=1, help="clips per forward, >= 1 (default 1)"
    )
    p.add_argument(
        "--warmup",
        metavar="N",
        type=nonnegative_int,
        default=2,
        help="untimed forwards per setting and round, >= 0",
    )
    p.add_argument(
        "--iters",
        metavar="N",
        type=positive_int,
        default=5,
        help="timed forwards per setting and round, >= 1",
    )
    p.add_argument(
        "--rounds",
        metavar="N",
        type=positive_int,
        default=3,
        help="interleaved rounds over all settings, >= 1",
    )
    p.add_argument(
        "--device",
        metavar="DEV",
        type=device_arg,
        default="cuda" if _cuda() else "cpu",
        help="cpu, cuda or cuda:N (default: cuda if available)",
    )
    p.add_argument(
        "--amp",
        choices=["none", "bf16", "fp16"],
        default="none",
        help="autocast dtype (fp16 needs --device cuda, as eval --precision fp16)",
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnxruntime"],
        default="torch",
        help="what runs the forwards: PyTorch, or ONNX Runtime on the CPU (every setting exported to ONNX "
        "with stprune.export and checked against PyTorch first; needs the export extra)",
    )
    _add_threads(p)
    _add_progress(p)
    p.set_defaults(func=_run_bench)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_bench(args: argparse.Namespace) -> int:
    import torch

    from stprune.bench.compare import measure_speed_rows
    from stprune.bench.report import print_rows, write_json
    from stprune.core.schedule import plural
    from stprune.errors import SettingError
    from stprune.models import get_adapter

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.amp == "fp16" and args.device == "cpu":  # as eval --precision fp16, before any work
        raise SettingError("--amp fp16 needs --device cuda; on CPU use bf16 or none (float32)")
    ort = args.runtime == "onnxruntime"
    if ort:
        from stprune.deploy import _require

        if args.device != "cpu":
            raise SettingError(f"--runtime onnxruntime runs on the CPU; got --device {args.device}")
        if args.amp != "none":
            raise SettingError("--runtime onnxruntime times the float32 export; leave --amp none")
        _require("onnx", "onnxscript", "onnxruntime")
    llm = _video_llm_model(args, weights=True)
    if llm is not None:
        if args.amp != "none":
            raise SettingError("--amp is for the encoders; a video LLM is timed in float32 here")
        if ort:
            raise SettingError("--runtime onnxruntime is for the video encoders; a video LLM is not exported")
        return _run_video_llm(args, llm.to(args.device), timed=True)
    resolved = _resolve(args)
    model = resolved.model.to(args.device)
    rows = _measure_flops(model, args)
    if ort:
        from stprune.bench.ort import check_ort_rows

        check_ort_rows(model, rows)  # a refusal is the only output
    print(f"clip: {resolved.clip}")
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    with _status(args, "timing") as status:
        if ort:
            from stprune.bench.ort import measure_ort_rows

            rows = measure_ort_rows(
                model,
                rows,
                batch_size=args.batch_size,
                warmup=args.warmup,
                iters=args.iters,
                rounds=args.rounds,
                progress=status.update,
            )
        else:
            rows = measure_speed_rows(
                model,
                rows,
                batch_size=args.batch_size,
                warmup=args.warmup,
                iters=args.iters,
                rounds=args.rounds,
                autocast_dtype=amp,
                progress=status.update,
            )
    where = f"onnxruntime {args.device}" if ort else args.device
    title = (
        f"{args.model} - {get_adapter(model).describe()} - {where}, batch {args.batch_size}, "
        f"{plural(torch.get_num_threads(), 'thread')}, amp {args.amp}"
    )
    print_rows(rows, title)
    if args.json:
        write_json(
            args.json,
            {
                "model": args.model,
                "clip": resolved.clip,
                "device": args.device,
                "batch_size": args.batch_size,
                "threads": torch.get_num_threads(),
                "amp": args.amp,
                "runtime": args.runtime,
                "results": [r.as_dict() for r in rows],
            },
        )
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    from stprune.architectures.loading import MODEL_HELP
    from stprune.methods import encoder_methods

    p = sub.add_parser(
        "export",
        help="export a (pruned) model to ONNX (.onnx) or a torch.export program (.pt2), checked against "
        "PyTorch",
        description="Patch the model (without --r / --flops-target: the unpruned model), export it to --out "
        "(the extension names the format: .onnx, the PyTorch dynamo exporter; .pt2, torch.export), then run "
        "the export on a random clip: its output must be within 1e-4 of the PyTorch model's and every block "
        "must see the planned number of tokens (ONNX: in ONNX Runtime). Video Swin is exported in its static "
        "shifted-window layout. Settings whose token counts depend on the data are refused before any work.",
    )
    p.add_argument("--model", required=True, metavar="M", help=MODEL_HELP)
    _add_geometry(p)
    p.add_argument(
        "--method",
        default=None,
        choices=sorted(encoder_methods()),
        help="pruning method (default: sta); needs --r or --flops-target",
    )
    prune = p.add_mutually_exclusive_group()
    prune.add_argument(
        "--r",
        metavar="R",
        type=int,
        nargs="+",
        default=None,
        help="tokens dropped per group (one, or one per stage)",
    )
    prune.add_argument("--flops-target", metavar="X", type=float, default=None, help="FLOPs ratio in (0, 1]")
    p.add_argument(
        "--batch-size",
        metavar="B",
        type=positive_int,
        default=1,
        help="clips in the example, >= 1 (default 1)",
    )
    p.add_argument(
        "--static-batch",
        action="store_true",
        help="the export takes exactly --batch-size clips (default: any batch size; every other size is "
        "fixed)",
    )
    p.add_argument("--no-check", action="store_true", help="do not run the export against PyTorch")
    p.add_argument("--out", metavar="FILE", required=True, type=export_file, help="a .onnx or .pt2 path")
    p.add_argument("--json", metavar="PATH", type=output_file, help="also write what was exported as JSON")
    _add_progress(p)
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    import os

    import stprune
    from stprune.adapters import VideoSwinAdapter
    from stprune.bench.report import compact_tokens, write_json
    from stprune.deploy import EXPORT_FORMATS, _require, check_exportable, export
    from stprune.models import get_adapter

    fmt = EXPORT_FORMATS[os.path.splitext(args.out)[1].lower()]
    if fmt == "onnx":
        _require("onnx", "onnxscript", *([] if args.no_check else ["onnxruntime"]))
    if args.method is not None and args.r is None and args.flops_target is None:
        from stprune.errors import SettingError

        raise SettingError(
            f"--method {args.method} needs --r R or --flops-target X (an export has static token counts; "
            "without either, the unpruned model is exported)"
        )
    resolved = _resolve(args)
    model = resolved.model
    adapter = get_adapter(model)
    if args.r is not None or args.flops_target is not None:
        # Video Swin: the shifted-window layout with static shapes (the padded one reads a count on the host)
        options = {"shifted_windows": "static"} if isinstance(adapter, VideoSwinAdapter) else {}
        r = args.r if args.r is None or len(args.r) > 1 else args.r[0]
        stprune.patch(model, method=args.method or "sta", r=r, flops_target=args.flops_target, **options)
    check_exportable(model, fmt)  # a refusal is the only output
    print(f"clip: {resolved.clip}")
    example = next(iter(adapter.example_inputs(args.batch_size).values()))
    with _status(args, f"exporting to {args.out}"):
        result = export(
            model, example, args.out, dynamic_batch=not args.static_batch, verify=not args.no_check
        )
    what = "ONNX" if fmt == "onnx" else "torch.export program"
    batch = "any batch size" if result.dynamic_batch else f"batch {result.input_shape[0]} only"
    shape = "x".join(map(str, result.input_shape[1:]))
    print(
        f"wrote {result.path} ({what}): input {result.input_name} (B, {shape}), {batch}; "
        f"output {result.output_name}"
    )
    setting = "unpruned"
    if result.method is not None:
        options = " shifted_windows=static" if isinstance(adapter, VideoSwinAdapter) else ""
        setting = f"{result.method} r={','.join(map(str, result.r_per_stage))}{options}"
    print(f"{setting}: tokens entering each block as planned: {compact_tokens(result.planned_tokens)}")
    if result.graph_tokens is not None:
        runtime = "in ONNX Runtime" if fmt == "onnx" else "in the exported program"
        print(
            f"checked {runtime}: the same tokens; {result.output_name} within {result.max_abs_diff:.1e} of "
            "PyTorch"
        )
    if args.json:
        write_json(args.json, {"model": args.model, **result.as_dict()})
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy of a (pruned) video classifier on a video list (resumable, torchrun-ready)",
        description="Evaluate a video classifier with the VideoMAE multi-view test protocol. Rows are "
        "written to --out as each video finishes; rerunning with the same --out resumes. Several "
        "methods or values make a sweep: the unpruned model and every method x value on the same "
        "decoded views. Under torchrun the list is sharded across ranks. See docs/eval.md.",
    )
    from stprune.architectures.loading import MODEL_HELP

    p.add_argument("--model", required=True, metavar="M", help=MODEL_HELP)
    p.add_argument(
        "--data",
        required=True,
        metavar="LIST",
        help="video list: 'path label' lines, or CSV with header path|video,label",
    )
    p.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="folder relative paths are resolved against (default: the list's folder)",
    )
    p.add_argument(
        "--out",
        required=True,
        type=output_dir,
        metavar="DIR",
        help="results folder (predictions.rank*.jsonl, summary.json; a sweep: a folder per setting, "
        "sweep.json, sweep.png)",
    )
    p.add_argument(
        "--protocol",
        choices=["kinetics", "ssv2"],
        default="kinetics",
        help="test sampling (default kinetics)",
    )
    p.add_argument(
        "--views",
        default=None,
        metavar="TxS",
        help="T temporal clips x S spatial crops (default 5x3 kinetics, 2x3 ssv2; a value starting with "
        "'-' needs '=': --views=-1x3)",
    )
    p.add_argument(
        "--sampling-rate",
        type=int,
        default=None,
        metavar="S",
        help="kinetics frame stride (default: the model's own when its checkpoint records it, e.g. 1 for "
        "the demo model; else 4, VideoMAE's Kinetics test)",
    )
    from stprune.methods import encoder_methods

    p.add_argument(
        "--method",
        nargs="+",
        action="extend",
        choices=sorted(encoder_methods()),
        default=None,
        metavar="M",
        help=f"pruning method(s): {', '.join(sorted(encoder_methods()))}; several run at every value "
        "(default sta)",
    )
    _add_r_and_target(
        p,
        "tokens dropped per group at each pruning point; several values make a sweep (default: neither "
        "--r nor --flops-target: the unpruned model)",
        "target FLOPs ratio(s) in (0, 1]; several values make a sweep",
    )
    p.add_argument(
        "--rlt-threshold",
        type=float,
        nargs="+",
        action="extend",
        default=[],
        metavar="TAU",
        help="RLT in its threshold mode (the paper's: 0.1), a token count per clip; adds RLT settings",
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="write the sweep layout (a folder per setting, the unpruned model included, sweep.json and "
        "sweep.png) even for one setting; several settings always make a sweep",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, metavar="N", help="views per forward pass (default 8)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="decoding DataLoader workers (default: 4, or fewer when fewer CPUs are available per rank)",
    )
    p.add_argument(
        "--device", default=None, metavar="DEV", help="cpu, cuda or cuda:N (default: cuda if available)"
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "fp16", "bf16"],
        default="auto",
        help="autocast precision (auto: fp16 on cuda as VideoMAE tests, fp32 on cpu)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate only the first N videos of the list (default: all)",
    )
    _add_geometry(p)
    p.add_argument("--overwrite", action="store_true", help="discard results already in --out")
    _add_progress(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json
    import warnings
    from pathlib import Path

    from tqdm.auto import tqdm

    from stprune.core.schedule import plural
    from stprune.eval.plan import clip_description
    from stprune.eval.runner import run_eval

    package = str(Path(__file__).resolve().parent)
    show_other = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        # stprune's own warnings as one line above the progress bar; others as Python shows them
        if issubclass(category, UserWarning) and str(Path(filename).resolve()).startswith(package):
            tqdm.write(f"stprune eval: warning: {message}", file=sys.stderr)
        else:
            show_other(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.showwarning = show
        summary = run_eval(
            model=args.model,
            data=args.data,
            out=args.out,
            root=args.root,
            protocol=args.protocol,
            views=args.views,
            sampling_rate=args.sampling_rate,
            r=args.r or None,
            flops_target=args.flops_target or None,
            method=args.method or "sta",
            rlt_threshold=args.rlt_threshold or None,
            sweep=True if args.sweep else None,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            limit=args.limit,
            overwrite=args.overwrite,
            num_heads=args.num_heads,
            num_frames=args.num_frames,
            image_size=args.image_size,
            precision=args.precision,
            progress=_progress(args),
            on_start=lambda settings: tqdm.write(f"clip per view: {clip_description(settings)}"),
        )
    if summary is None:  # not rank 0
        return 0
    if "sweep" in summary:
        return _print_sweep(summary, args.out)

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f}%"

    failed = summary["num_failed"]
    counts = f"{summary['num_evaluated']} of {summary['num_videos']} videos evaluated, {failed} failed"
    if failed and summary["num_evaluated"]:
        counts += (
            f"; counting failures as wrong: top-1 {pct(summary['top1_errors_as_wrong'])}, "
            f"top-5 {pct(summary['top5_errors_as_wrong'])};"
        )
    else:
        counts += ","
    views = f"{plural(summary['num_views'], 'view')} each"
    ci = summary.get("top1_ci95")
    ci_text = f" [95% CI {ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    print(f"top-1 {pct(summary['top1'])}{ci_text}  top-5 {pct(summary['top5'])}  ({counts} {views})")
    if summary["gflops_per_view"] is not None:
        from stprune.bench.report import gflops_text

        print(f"GFLOPs per view: {gflops_text(summary['gflops_per_view'])}")
    merged = f"{args.out}/predictions.jsonl"
    print(f"results: {args.out}/summary.json, {merged}")
    if summary["num_evaluated"] == 0:  # nothing could be evaluated: a failed run, whatever the cause
        with open(merged, encoding="utf-8") as f:
            first = next((row for row in map(json.loads, f) if row.get("error")), None)
        example = ""
        if first is not None:
            example = f"; first: {first['video']!r}: {' '.join(str(first['error']).split())}"
        print(
            f"stprune eval: error: no video could be evaluated ({failed} of {summary['num_videos']} failed"
            f"{example}); every error is in {merged}",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_sweep(result: dict, out: str) -> int:
    """A sweep's table (a row per setting), where its files are; exit code 1 if no video could be
    evaluated."""
    from rich.console import Console

    from stprune.bench.report import print_table
    from stprune.core.schedule import plural
    from stprune.eval.report import sweep_table

    rows = [r for r in result["sweep"] if r["skipped"] is None]
    columns, cells, notes = sweep_table(result)  # with each setting's 95% intervals and paired tests
    console = Console()
    title = (
        f"sweep: {plural(result['num_videos'], 'video')}, {plural(result['num_views'], 'view')} each "
        "(top-1 / top-5 over the videos evaluated)"
    )
    print_table(title, columns, cells, console, notes=notes)
    print(f"results: {out}/sweep.json, {out}/sweep.png; each setting's files in {out}/<folder>/")
    if not any(r["num_evaluated"] for r in rows):
        merged = f"{out}/{rows[0]['dir']}/predictions.jsonl"
        print(
            f"stprune eval: error: no video could be evaluated (every error is in {merged})",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from stprune.demo.benchmark import DEFAULT_CLIPS, DEFAULT_TASK, FAST_CLIPS, TASK_CHOICES
    from stprune.methods import encoder_methods

    p = sub.add_parser(
        "demo",
        help="offline demo: the bundled trained models, accuracy vs GFLOPs of every pruning method",
        description="Evaluate the bundled demo classifiers (an easy and a hard synthetic task) unpruned "
        "and with every encoder method at matched FLOPs, on the same clips, with top-1 intervals and "
        "paired tests against the unpruned model and STA. Offline; about 10 minutes on 2 CPU cores "
        "for both tasks.",
    )
    p.add_argument("--fast", action="store_true", help="a quick smoke run: 48 clips, one FLOPs target")
    p.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default=DEFAULT_TASK,
        help="the synthetic task and its bundled model: easy (which object moves which way), hard (which "
        f"colour of small, brief spark darts which way) or both (default {DEFAULT_TASK})",
    )
    p.add_argument(
        "--clips",
        metavar="N",
        type=positive_int,
        default=None,
        help="validation clips per task, >= 1 (default "
        + ", ".join(f"{n} {t}" for t, n in DEFAULT_CLIPS.items())
        + f"; {FAST_CLIPS} with --fast)",
    )
    p.add_argument(
        "--targets",
        type=float,
        nargs="+",
        default=None,
        metavar="X",
        help="FLOPs ratios every method is evaluated at (default 0.9 0.8 0.7 0.6 0.5 0.4 0.3; a target "
        "a method cannot reach is skipped with a note)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=None,
        choices=list(encoder_methods()),
        metavar="M",
        help=f"methods compared at every target, of {', '.join(encoder_methods())} (default: all of them)",
    )
    p.add_argument(
        "--rlt-threshold",
        type=float,
        nargs="+",
        default=None,
        metavar="TAU",
        help="RLT's thresholds (its paper's mode, a token count per clip), as rows besides its FLOPs "
        "targets (default: 0.1 when rlt is among --methods)",
    )
    p.add_argument(
        "--batch-size",
        metavar="B",
        type=positive_int,
        default=32,
        help="clips per forward, >= 1 (default 32)",
    )
    _add_threads(p)
    p.add_argument("--json", metavar="PATH", type=output_file, help="write the results as JSON")
    p.add_argument(
        "--plot",
        metavar="PATH",
        type=plot_file,
        help="save the accuracy-vs-GFLOPs curve (.png, .pdf, .svg, ...)",
    )
    _add_progress(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from stprune.demo.benchmark import DEFAULT_TARGETS, FAST_CLIPS, FAST_TARGETS, main_demo

    clips = args.clips if args.clips is not None else (FAST_CLIPS if args.fast else None)
    targets = args.targets or (FAST_TARGETS if args.fast else DEFAULT_TARGETS)
    main_demo(
        clips,
        targets,
        args.methods,
        args.batch_size,
        args.threads,
        args.json,
        args.plot,
        progress=_progress(args),
        thresholds=args.rlt_threshold,
        task=args.task,
    )
    return 0


def _add_show(sub: argparse._SubParsersAction) -> None:
    from stprune.architectures.loading import MODEL_HELP

    p = sub.add_parser(
        "show",
        help="draw which tokens are kept at every pruning point, on the frames of one clip",
        description="Prune one clip and save a PNG: a row for the input and one per pruning point, "
        "a column per temporal slot; pruned tokens are white. Works for every video encoder family stprune "
        "supports (Video Swin: each row on the grid of the Swin stage it prunes in).",
    )
    p.add_argument("--model", metavar="M", default="demo", help=MODEL_HELP + " (default: demo)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--clip",
        metavar="N",
        type=nonnegative_int,
        default=None,
        help="synthetic demo validation clip N >= 0 (default 0; of the hard task for --model demo-hard, "
        "else the easy task), resampled to the model's frames and size",
    )
    src.add_argument(
        "--video", metavar="FILE", default=None, help="a video file (PyAV), the model's frames spread over it"
    )
    p.add_argument(
        "--method",
        default=None,
        choices=["sta", "random", "rlt"],
        help="pruning method (default: sta; rlt with --rlt-threshold)",
    )
    prune = p.add_mutually_exclusive_group()
    prune.add_argument(
        "--r",
        metavar="R",
        type=int,
        nargs="+",
        default=None,
        help="tokens dropped per group (one value, or one per stage)",
    )
    prune.add_argument(
        "--flops-target",
        metavar="X",
        type=float,
        default=None,
        help="FLOPs ratio in (0, 1] (default 0.7 when no --r or --rlt-threshold; --method rlt alone: "
        "threshold 0.1)",
    )
    prune.add_argument(
        "--rlt-threshold",
        metavar="TAU",
        type=float,
        default=None,
        help="RLT in its threshold mode (the paper's: 0.1), the tokens kept follow the clip",
    )
    p.add_argument(
        "--out", metavar="PNG", required=True, type=plot_file, help="image path (.png, .pdf, .svg, ...)"
    )
    _add_geometry(p)
    p.set_defaults(func=_run_show)


def _run_show(args: argparse.Namespace) -> int:
    from stprune.architectures.presets import is_video_llm_preset
    from stprune.demo.show import show

    if is_video_llm_preset(args.model):
        from stprune.errors import SettingError

        raise SettingError(
            f"show draws a video encoder's kept tokens on a clip; {args.model} is a video LLM: after a "
            "forward, stprune.last_trace(model).videos gives each video's kept tokens (docs/video_llm.md)"
        )

    if args.rlt_threshold is not None and args.method not in (None, "rlt"):
        from stprune.errors import SettingError

        raise SettingError(f"--rlt-threshold is RLT's setting; got --method {args.method}")
    method = args.method or ("rlt" if args.rlt_threshold is not None else "sta")

    r = args.r if args.r is None or len(args.r) > 1 else args.r[0]
    res = show(
        args.model,
        args.out,
        clip=args.clip,
        video=args.video,
        method=method,
        r=r,
        flops_target=args.flops_target,
        threshold=args.rlt_threshold,
        num_heads=args.num_heads,
        num_frames=args.num_frames,
        image_size=args.image_size,
    )
    print(f"clip: {res.clip}")
    print(f"wrote {res.path}")
    print(res.title.replace("\n", "; "))
    for sm in res.stages:
        print(f"  {sm.label}: kept {sm.kept}/{sm.total} tokens")
    return 0


def _add_make_demo_videos(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-videos",
        help="write synthetic demo clips as mp4 files plus a '<split>.txt' list (path label per line)",
        description="Write clips 0 .. N-1 of a synthetic demo split as lossless mp4 files and a "
        "VideoMAE-style list ('path label' per line), so stprune eval runs on them like on any dataset.",
    )
    p.add_argument("--out", metavar="DIR", required=True, type=output_dir, help="output directory")
    p.add_argument("--num", metavar="N", type=positive_int, required=True, help="number of clips, >= 1")
    p.add_argument(
        "--seed",
        metavar="S",
        type=nonnegative_int,
        default=0,
        help="split seed (default 0, the demo's validation set)",
    )
    p.add_argument(
        "--split",
        choices=["val", "train"],
        default="val",
        help="synthetic split the clips come from: 'val' (the clips the demo evaluates) or 'train' (the "
        "training split's, disjoint from val); files videos/<split>_00000.mp4 ..., list <split>.txt",
    )
    p.add_argument(
        "--task",
        choices=["easy", "hard"],
        default="easy",
        help="demo task the clips come from (default easy, the 'demo' model's; hard: the 'demo-hard' "
        "model's, written as videos/hard_<split>_00000.mp4 ... and hard_<split>.txt)",
    )
    _add_progress(p)
    p.set_defaults(func=_run_make_demo_videos)


def _run_make_demo_videos(args: argparse.Namespace) -> int:
    from stprune.demo.videos import make_demo_videos

    list_path = make_demo_videos(
        args.out, args.num, split=args.split, seed=args.seed, progress=_progress(args), task=args.task
    )
    print(f"wrote {args.num} clips and {list_path}")
    return 0


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_version,
    _add_flops,
    _add_bench,
    _add_export,
    _add_eval,
    _add_demo,
    _add_show,
    _add_make_demo_videos,
]


class _HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless it has no default or already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})" if text else f"(default: {shown})"


def _library_progress(show: bool) -> None:
    """The libraries' own progress bars (transformers' "Loading weights") follow ours: off unless shown."""
    if show:
        return
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub / transformers load
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``stprune`` parser with every registered sub-command."""
    from stprune import __version__

    parser = _Parser(
        prog="stprune", description="Training-free spatio-temporal token pruning for video transformers."
    )
    parser.add_argument("--version", action="version", version=__version__, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _COMMANDS:
        add(sub)
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stprune`` command; returns the process exit code.

    A user's mistake prints one line ``stprune <command>: error: ...`` and returns 2, like
    argparse's own usage errors: bad option values while parsing, and every
    :class:`stprune.errors.StpruneError` the library raises. Other exceptions are bugs and
    propagate with their traceback.
    """
    from stprune.errors import StpruneError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error already printed in one line
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    _library_progress(_progress(args) if hasattr(args, "progress") else sys.stderr.isatty())
    try:
        return int(args.func(args) or 0)
    except StpruneError as err:
        message = " ".join(str(err).split("\n"))
        print(f"stprune {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = (
            " (finished rows are kept: rerun the same command to resume)" if args.command == "eval" else ""
        )
        print(f"stprune {args.command}: interrupted{again}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
