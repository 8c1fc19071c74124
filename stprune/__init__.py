"""stprune: training-free spatio-temporal token pruning (STA) for video transformers.

import stprune
model, pre = stprune.load_model("videomae-b")      # a preset, directory, hub id or checkpoint
stprune.patch(model, method="sta", r=64)            # in place, returns model
stprune.export(model, None, "videomae-b-r64.onnx")  # ONNX / .pt2, checked against PyTorch
stprune.unpatch(model)                              # back to the original
"""

from stprune.api import (
    PatchInfo,
    is_patched,
    last_macs,
    last_trace,
    patch,
    patch_info,
    prompt_cost,
    restore_tokens,
    unpatch,
)
from stprune.architectures.loading import Preprocessing, ResolvedModel, load_model
from stprune.core.schedule import Stage
from stprune.deploy import ExportResult, export
from stprune.pruning.trace import GridTrace, SequenceTrace, StageTrace, Trace, VideoLLMTrace, VideoTrace

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "ResolvedModel",
    "Preprocessing",
    "export",
    "ExportResult",
    "patch",
    "unpatch",
    "is_patched",
    "patch_info",
    "last_trace",
    "last_macs",
    "restore_tokens",
    "prompt_cost",
    "PatchInfo",
    "Stage",
    "Trace",
    "StageTrace",
    "SequenceTrace",
    "GridTrace",
    "VideoLLMTrace",
    "VideoTrace",
    "__version__",
]
