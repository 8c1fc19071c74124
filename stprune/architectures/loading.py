"""Turn a ``--model`` argument into a model plus the preprocessing it expects.

One function, :func:`resolve_model`, understands every spelling (every CLI command uses it):

* a preset (``videomae-s/b/l/h``, ``vivit-b``, ...): a standard-size model with random weights,
  built offline from its config (:mod:`stprune.architectures.presets`).
* ``demo`` / ``demo-hard``: the bundled demo models of the easy / hard synthetic task
  (``stprune/demo/demo_model.safetensors`` / ``demo_hard_model.safetensors``, read as data) with the
  normalisation and frame sampling their ``.json`` records.
* a checkpoint *file* (``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors``): a VideoMAE model-zoo ViT
  (converted to HF, :mod:`stprune.architectures.videomae_zoo`) or a Video Swin checkpoint (via
  ``stprune.models.load_video_swin``), told apart by their keys.
* a *directory* saved with ``save_pretrained`` (``config.json``), or a Hugging Face hub id:
  ``AutoModelForVideoClassification.from_pretrained``. Mean / std come from
  ``preprocessor_config.json`` (``image_mean`` / ``image_std``) when there is one.

Input size and frame count come from the model config (``image_size``, ``num_frames``; V-JEPA 2:
``crop_size``, ``frames_per_clip``, or ``num_frames=`` for V-JEPA 2, whose RoPE runs any count),
the clip goes in as the adapter's input name (V-JEPA 2: ``pixel_values_videos``); mean /
std default to the ImageNet values VideoMAE's training and test code normalises with (the Hugging
Face ``VideoMAEImageProcessor``'s own default is 0.5 / 0.5: checkpoints say theirs in their
processor config).

Resize: the VideoMAE test code's (short side to the crop size, bilinear without antialiasing),
except where the model's processor resizes the short side to another size: V-JEPA 2's
``VJEPA2VideoProcessor`` (always ``int(crop * 256 / 224)``, also for a V-JEPA 2 without a
processor config), or a processor config whose ``size.shortest_edge`` differs from the crop;
then that short side with antialiased bilinear interpolation, as HF's processors resize.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stprune.architectures.checkpoints import own_memory
from stprune.architectures.presets import PRESETS, build_preset, is_video_llm_preset, preset_names
from stprune.errors import InputError, MissingFileError, SettingError, StpruneError, UnsupportedModelError

# ImageNet statistics, as VideoMAE's own training / test code normalises (not the HF processor default 0.5)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = [
    "Preprocessing",
    "ResolvedModel",
    "resolve_model",
    "resolve_module",
    "load_model",
    "vjepa2_short_side",
    "MODEL_HELP",
    "CHECKPOINT_SUFFIXES",
]

MODEL_HELP = (
    f"preset ({', '.join(preset_names())}; random weights, offline), 'demo' / 'demo-hard' (the bundled "
    "trained models of the easy / hard demo task), "
    "a local Hugging Face model directory, a checkpoint file (VideoMAE zoo .pth, Video Swin), or a hub id"
)

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")
_LAYOUTS = ("BTCHW", "BCTHW")


def vjepa2_short_side(crop: int) -> int:
    """The short side V-JEPA 2's video processor resizes frames to before its ``crop`` centre crop:
    ``int(crop * 256 / 224)`` (256 -> 292, 384 -> 438), as ``VJEPA2VideoProcessor`` computes it."""
    return int(crop * 256 / 224)


@dataclass(frozen=True)
class Preprocessing:
    """What a model's input must look like.

    ``image_size``: square crop side; ``num_frames``: frames per clip; ``mean`` / ``std``:
    per-channel normalisation of [0, 1] RGB; ``layout``: axis order of the batch the model takes,
    ``"BTCHW"`` (HF VideoMAE / ViViT) or ``"BCTHW"`` (Video Swin, 3D CNNs); ``sampling_rate``:
    the frame stride the model was trained with when its checkpoint records it (the demo model:
    1, every frame), else None (evaluation then uses its protocol's default); ``short_side``: the
    short side frames are resized to before cropping, >= ``image_size`` (None: ``image_size``,
    the VideoMAE test code's resize; V-JEPA 2: ``int(crop * 256 / 224)``); ``antialias``: resize
    with antialiased bilinear interpolation (HF's processors) rather than plain bilinear (OpenCV's
    ``INTER_LINEAR`` in the VideoMAE test code).
    """

    image_size: int
    num_frames: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "BTCHW"
    sampling_rate: int | None = None
    short_side: int | None = None
    antialias: bool = False

    @property
    def resize(self) -> dict[str, Any] | None:
        """How frames are resized, for records: None for the VideoMAE test code's resize (short side
        to ``image_size``, bilinear without antialiasing), else ``{"short_side", "interpolation",
        "antialias"}``."""
        if self.short_side is None and not self.antialias:
            return None
        short = self.image_size if self.short_side is None else self.short_side
        return {"short_side": short, "interpolation": "bilinear", "antialias": self.antialias}

    def __post_init__(self) -> None:
        if self.layout not in _LAYOUTS:
            raise ValueError(f"layout {self.layout!r} must be one of {_LAYOUTS}")
        if self.image_size < 1 or self.num_frames < 1:
            raise SettingError(f"image_size={self.image_size} and num_frames={self.num_frames} must be >= 1")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise InputError(f"mean {self.mean} / std {self.std} must have 3 entries, std > 0")
        rate = self.sampling_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise InputError(f"sampling_rate {self.sampling_rate!r} must be an integer >= 1 (or None)")
        short = self.short_side
        if short is not None and (
            isinstance(short, bool) or not isinstance(short, int) or short < self.image_size
        ):
            raise SettingError(
                f"short_side {short!r} must be an integer >= image_size={self.image_size} (or None: the "
                "image size), so that the square crop fits"
            )


@dataclass
class ResolvedModel:
    """A loaded model and what its input must look like (:func:`load_model`'s result).

    ``model``: in eval mode, on the CPU; ``preprocessing``: its clip size, normalisation and axis
    order (:class:`Preprocessing`), None for a video LLM (its processor takes any video);
    ``description`` / ``source``: what was loaded, for records; ``logits(views)`` takes normalised
    (B, T, 3, H, W) views. Unpacks as ``model, preprocessing = stprune.load_model(...)``.
    """

    model: nn.Module
    preprocessing: Preprocessing | None
    description: str
    source: dict[str, Any] = field(default_factory=dict)
    #: why the clip size is what it is, when stprune chose it for a file that does not record it
    clip_note: str | None = None

    @property
    def clip(self) -> str:
        """The clip every count assumes, e.g. ``"16 frames x 224x224"``, with :attr:`clip_note`."""
        pre = self.preprocessing
        if pre is None:
            return "any video (a video LLM: the prompt gives it)"
        text = f"{pre.num_frames} frames x {pre.image_size}x{pre.image_size}"
        return f"{text} ({self.clip_note})" if self.clip_note else text

    def __iter__(self) -> Iterator[Any]:
        """``model, preprocessing = stprune.load_model(...)``."""
        return iter((self.model, self.preprocessing))

    def logits(self, views: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) float views -> (B, num_classes) logits."""
        if self.preprocessing is None:
            raise UnsupportedModelError(f"{self.description} is a video LLM, not a video classifier")
        x = views if self.preprocessing.layout == "BTCHW" else views.transpose(1, 2)
        if self.preprocessing.layout == "BTCHW" and hasattr(self.model, "config"):
            out = self.model(**{model_input_name(self.model): x})
        else:
            out = self.model(x)
        if hasattr(out, "logits"):
            out = out.logits
        elif isinstance(out, tuple | list):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != views.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UnsupportedModelError(
                f"model output {shape} is not (batch={views.shape[0]}, classes) logits"
            )
        return out


def _norm_stats(values: Any, default: tuple[float, float, float], name: str) -> tuple[float, float, float]:
    if values is None:
        return default
    if isinstance(values, int | float):
        values = [values] * 3
    values = tuple(float(v) for v in values)
    if len(values) != 3:
        raise InputError(f"{name} {values} must have 3 entries (RGB)")
    return values  # type: ignore[return-value]


def _folded_rescale(
    processor: Mapping[str, Any], mean: tuple[float, float, float], std: tuple[float, float, float]
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The processor's rescale step folded into mean / std, so that ``(x / 255 - mean') / std'``
    equals what it computes, ``(x * rescale_factor - offset - mean) / std`` on uint8 ``x``.

    ViViT's processors rescale with ``1/127.5`` and subtract 1 (``offset``) before their 0.5 / 0.5
    normalisation, so its input is ``[-3, 1]``, not ``[-1, 1]``: mean' 0.75, std' 0.25. A
    processor that rescales by 1/255 without offset (VideoMAE's, V-JEPA 2's) is left as it is.
    """
    kind = str(processor.get("image_processor_type") or processor.get("video_processor_type") or "")
    do_rescale = bool(processor.get("do_rescale", True))
    default_factor = 1 / 127.5 if kind.startswith("Vivit") else 1 / 255
    factor = float(processor.get("rescale_factor", default_factor)) if do_rescale else 1.0
    if kind == "VivitImageProcessor":
        offset = do_rescale and bool(processor.get("offset", True))
    else:  # VivitVideoProcessor always subtracts 1 after rescaling
        offset = do_rescale and kind == "VivitVideoProcessor"
    if not processor.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    scale = 255.0 * factor
    if abs(scale - 1.0) < 1e-9 and not offset:
        return mean, std
    shift = 1.0 if offset else 0.0
    return (
        tuple((m + shift) / scale for m in mean),  # type: ignore[return-value]
        tuple(v / scale for v in std),  # type: ignore[return-value]
    )


def _int_size(value: Any) -> int:
    if isinstance(value, Mapping):
        value = value.get("height", value.get("shortest_edge"))
    if isinstance(value, list | tuple):
        value = value[0]
    return int(value)


# PIL's BILINEAR, the ``resample`` of V-JEPA 2's, VideoMAE's and ViViT's processors
_PIL_BILINEAR = 2


def _processor_resize(config: Any, processor: Mapping[str, Any], crop: int) -> tuple[int | None, bool]:
    """(short_side, antialias) of a model's processor; (None, False) for the VideoMAE test resize.

    ``VJEPA2VideoProcessor`` (named in the processor config, or any V-JEPA 2 whose processor
    config names no processor: HF builds that one for it) resizes to ``int(crop * 256 / 224)``
    whatever its ``size`` says; another processor to its ``size.shortest_edge`` (an int ``size``
    is the shortest edge too) when that differs from the crop. HF's processors antialias.
    """
    kind = processor.get("video_processor_type") or processor.get("image_processor_type")
    if kind == "VJEPA2VideoProcessor" or (kind is None and getattr(config, "model_type", None) == "vjepa2"):
        short: Any = vjepa2_short_side(crop)
    else:
        size = processor.get("size")
        short = size.get("shortest_edge") if isinstance(size, Mapping) else size
        if isinstance(short, bool) or not isinstance(short, int) or short == crop:
            return None, False
        if short < crop:
            raise InputError(
                f"the processor config resizes the short side to {short}, smaller than the crop {crop}"
            )
    resample = processor.get("resample")
    if resample is not None and resample != _PIL_BILINEAR:
        warnings.warn(
            f"the processor config resamples with {resample!r}; stprune resizes with bilinear "
            f"interpolation (PIL resample {_PIL_BILINEAR}), so pixels may differ from its processor's",
            stacklevel=3,
        )
    return short, True


def preprocessing_from_config(
    config: Any, processor: Mapping[str, Any] | None = None, layout: str = "BTCHW"
) -> Preprocessing:
    """Preprocessing from an HF-style config (``image_size``, ``num_frames``) and processor dict
    (``image_mean`` / ``image_std`` with the processor's rescale folded in, see
    :func:`_folded_rescale`; the resize: see :func:`_processor_resize`)."""
    processor = dict(processor or {})
    size = getattr(config, "image_size", None)
    if size is None:  # V-JEPA 2: crop_size is the model's input size
        size = getattr(config, "crop_size", None)
    if size is None and "crop_size" in processor:
        size = processor["crop_size"]
    frames = getattr(config, "num_frames", None)
    if frames is None:  # V-JEPA 2
        frames = getattr(config, "frames_per_clip", None)
    if size is None or frames is None:
        raise InputError(
            "cannot tell the model's input size / frame count: its config lacks image_size or num_frames"
        )
    crop = _int_size(size)
    short, antialias = _processor_resize(config, processor, crop)
    mean, std = _folded_rescale(
        processor,
        _norm_stats(processor.get("image_mean"), IMAGENET_MEAN, "image_mean"),
        _norm_stats(processor.get("image_std"), IMAGENET_STD, "image_std"),
    )
    return Preprocessing(
        image_size=crop,
        num_frames=int(frames),
        mean=mean,
        std=std,
        layout=layout,
        short_side=short,
        antialias=antialias,
    )


_PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub's host resolves and accepts a TCP connection (False also when
    ``HF_HUB_OFFLINE`` is set). One quick check instead of the hub client's retries."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _read_processor_json(source: str) -> dict[str, Any]:
    """The image / video processor config of a local dir or hub repo (fetched like the weights), else {}."""
    for name in _PROCESSOR_FILES:
        local = Path(source) / name
        if local.is_file():
            return json.loads(local.read_text(encoding="utf-8"))
    if Path(source).is_dir():
        return {}
    local_only = not hub_reachable()
    for name in _PROCESSOR_FILES:
        try:  # hub id: from the HF cache, or the hub when it is reachable
            from transformers.utils import cached_file

            path = cached_file(
                source, name, _raise_exceptions_for_missing_entries=False, local_files_only=local_only
            )
        except Exception:  # noqa: BLE001 - a missing processor file means defaults (warned below)
            path = None
        if path is not None:
            return json.loads(Path(path).read_text(encoding="utf-8"))
    return {}


# The bundled demo checkpoints, read as data: the library never imports stprune.demo.
_DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
#: ``--model`` spec -> the bundled demo checkpoint it names (``<stem>.safetensors`` + ``<stem>.json``)
DEMO_SPECS: dict[str, str] = {"demo": "demo_model", "demo-hard": "demo_hard_model"}


def _demo_info(spec: str) -> dict:
    return json.loads((_DEMO_DIR / f"{DEMO_SPECS[spec]}.json").read_text(encoding="utf-8"))


def _load_demo(spec: str = "demo") -> ResolvedModel:
    """A bundled demo classifier (``demo``: the easy task's, ``demo-hard``: the hard task's) with the
    normalisation and frame sampling its ``.json`` records (``mean``, ``std``, ``sampling.sampling_rate``)."""
    import dataclasses

    from safetensors.torch import load_file
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    info = _demo_info(spec)
    weights = _DEMO_DIR / f"{DEMO_SPECS[spec]}.safetensors"
    model = VideoMAEForVideoClassification(VideoMAEConfig(**info["config"]))
    model.load_state_dict({k: v.to(torch.float32) for k, v in load_file(str(weights)).items()})
    pre = preprocessing_from_config(model.config, {"image_mean": info["mean"], "image_std": info["std"]})
    rate = (info.get("sampling") or {}).get("sampling_rate")
    pre = dataclasses.replace(pre, sampling_rate=None if rate is None else int(rate))
    return ResolvedModel(model.eval(), pre, spec, {"kind": "demo", "path": spec})


# Video Swin's K400 test input (Liu et al.): 32 frames of 224 px, ImageNet mean / std, (B, C, T, H, W).
_SWIN_DEFAULT = {"image_size": 224, "num_frames": 32, "layout": "BCTHW"}


def _load_swin(
    path: Path,
    num_frames: int | None = None,
    image_size: int | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> ResolvedModel:
    """A Video Swin checkpoint (torchvision or official layout), set up for its test clip size."""
    import dataclasses

    from stprune.models import load_video_swin

    try:
        model = load_video_swin(path if state is None else state)
    except StpruneError:
        raise
    except (ValueError, KeyError, RuntimeError) as err:  # a checkpoint that does not fit
        raise InputError(f"model {str(path)!r}: not a loadable Video Swin checkpoint: {err}") from err
    recorded = dict(getattr(model, "stprune_meta", None) or {})
    meta = {**_SWIN_DEFAULT, **recorded}
    note = None
    if num_frames is None and "num_frames" not in recorded:
        note = (
            f"{meta['num_frames']} frames: Video Swin's Kinetics-400 test clip (Liu et al.), which this file "
            "does not record; the video-swin-* presets and video_swin_t() are set up for 16; --num-frames "
            "to change"
        )
    if num_frames is not None:
        meta["num_frames"] = num_frames
    if image_size is not None:
        meta["image_size"] = image_size
    # the config's clip size is what pruning plans (patch_info, flops_target) refer to
    model.config = dataclasses.replace(
        model.config, num_frames=int(meta["num_frames"]), image_size=int(meta["image_size"])
    )
    pre = Preprocessing(
        image_size=int(meta["image_size"]),
        num_frames=int(meta["num_frames"]),
        mean=_norm_stats(meta.get("image_mean"), IMAGENET_MEAN, "image_mean"),
        std=_norm_stats(meta.get("image_std"), IMAGENET_STD, "image_std"),
        layout=str(meta["layout"]),
    )
    return ResolvedModel(
        model.eval(), pre, f"video-swin:{path.name}", {"kind": "video_swin", "path": str(path)}, note
    )


def _load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The checkpoint's state dict and saved args, read once (the one reader for every family)."""
    from stprune.architectures.checkpoints import read_checkpoint

    return read_checkpoint(path)


def resolve_model(
    spec: str,
    num_heads: int | None = None,
    num_frames: int | None = None,
    image_size: int | None = None,
    weights: bool = True,
) -> ResolvedModel:
    """Load the model named by ``spec`` (see module doc) in eval mode on CPU, with its preprocessing.

    ``weights=False`` builds presets and local HF directories on the meta device from their config
    alone (exact FLOP counts without memory or compute); other sources load normally.

    ``num_heads`` / ``num_frames`` / ``image_size`` are for checkpoint files whose weights do not
    say them: VideoMAE zoo ``.pth`` (all three) and Video Swin (frames, size); ``num_frames`` also
    sets a V-JEPA 2's ``config.frames_per_clip`` (preset, directory or hub id: its RoPE runs any
    count that is a multiple of its tubelet). Giving them for another kind of model is an error.
    """
    zoo_overrides = {"--num-heads": num_heads, "--num-frames": num_frames, "--image-size": image_size}
    given = ", ".join(f"{k} {v}" for k, v in zoo_overrides.items() if v is not None)
    not_frames = ", ".join(
        f"{k} {v}" for k, v in zoo_overrides.items() if v is not None and k != "--num-frames"
    )
    path = Path(os.path.expanduser(spec))

    if is_video_llm_preset(spec) and not path.exists():
        if given:
            raise _geometry_refused(
                given,
                f"preset {spec!r} is a video LLM, which takes any video: its frames and size come with the "
                "prompt (stprune flops / bench --num-frames / --image-size)",
            )
        with torch.device("cpu" if weights else "meta"):
            model = build_preset(spec)
        return ResolvedModel(model, None, f"preset:{spec}", {"kind": "preset", "path": spec})

    if spec in PRESETS and not path.exists():
        vjepa2 = PRESETS[spec][0] == "vjepa2"
        if vjepa2 and not_frames:
            raise _geometry_refused(not_frames, f"V-JEPA 2 preset {spec!r} takes --num-frames only")
        if given and not vjepa2:
            raise _geometry_refused(given, f"preset {spec!r} is built from its config, which fixes its clip")
        with torch.device("cpu" if weights else "meta"):
            model = build_preset(spec)
        if vjepa2 and num_frames is not None:
            _set_vjepa2_frames(model, num_frames)
        # HF presets take (B, T, C, H, W); our Video Swin (it has a config too) takes (B, C, T, H, W)
        layout = "BCTHW" if PRESETS[spec][0] == "video_swin" or not hasattr(model, "config") else "BTCHW"
        pre = _preset_preprocessing(model, layout)
        return ResolvedModel(model, pre, f"preset:{spec}", {"kind": "preset", "path": spec})

    if spec in DEMO_SPECS and not path.exists():
        if given:
            cfg = _demo_info(spec)["config"]
            clip = f"{cfg['num_frames']} frames of {cfg['image_size']}x{cfg['image_size']}"
            raise _geometry_refused(given, f"the {spec} model takes {clip}, fixed by its config")
        return _load_demo(spec)

    if path.is_file():
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise InputError(
                f"model file {spec!r}: expected one of {CHECKPOINT_SUFFIXES}, or a model directory"
            )
        sd, saved_args = _load_checkpoint(path)
        from stprune.architectures.videomae_zoo import (
            is_zoo_state_dict,
            strip_zoo_prefixes,
            videomae_from_zoo_state_dict,
        )

        if is_zoo_state_dict(zoo := strip_zoo_prefixes(sd)):
            sd = zoo
            try:
                model = videomae_from_zoo_state_dict(sd, num_heads, num_frames, image_size, saved_args)
            except StpruneError:
                raise
            except NotImplementedError as err:
                raise UnsupportedModelError(f"model {spec!r}: {err}") from err
            except (ValueError, KeyError, RuntimeError) as err:  # shapes / settings that do not fit
                raise InputError(f"model {spec!r}: {err}") from err
            pre = preprocessing_from_config(model.config, {})
            defaults = [
                text
                for given, key, text in (
                    (num_frames, "num_frames", "16 frames"),
                    (image_size, "input_size", "224"),
                )
                if given is None and key not in saved_args
            ]
            note = None
            if defaults:
                note = (
                    f"{' x '.join(defaults)}: the released fine-tuned models' clip, which this file's saved "
                    "args do not record; --num-frames / --image-size to change"
                )
            source = {"kind": "videomae_zoo", "path": str(path.resolve())}
            return ResolvedModel(model, pre, f"videomae-zoo:{path.name}", source, note)
        keys = list(sd)
        if any("relative_position_bias_table" in k for k in keys):
            if num_heads is not None:
                raise SettingError(
                    f"--num-heads {num_heads}: Video Swin checkpoints take --num-frames and --image-size "
                    "only (their heads are in the weights)"
                )
            return _load_swin(path, num_frames, image_size, sd)  # the state dict read above, not re-read
        if given:
            raise _geometry_refused(
                given, f"model {spec!r} is neither a VideoMAE zoo nor a Video Swin checkpoint"
            )
        raise InputError(
            f"model {spec!r}: checkpoint keys match neither a VideoMAE zoo ViT "
            "(patch_embed.proj.weight, blocks.0.attn.qkv.weight) nor a Video Swin "
            f"(relative_position_bias_table); first keys: {keys[:5]}"
        )

    if not_frames:
        raise _geometry_refused(
            not_frames, f"model {spec!r} is a Hugging Face model, whose config fixes them"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise InputError(f"model directory {spec!r} has no config.json (save it with save_pretrained)")
    if num_frames is not None and path.is_dir():  # refused before loading the weights
        _frames_settable(_dir_model_type(path), spec, num_frames)
    if not path.is_dir() and (spec.startswith((".", "/", "~")) or spec.count("/") != 1):
        raise MissingFileError(
            f"model {spec!r}: no such file or directory, and not a preset or a hub id (owner/name); "
            f"use {MODEL_HELP}"
        )
    from transformers import AutoModelForVideoClassification

    source = str(path) if path.is_dir() else spec
    # without a route to the hub, the cache alone (an offline run fails at once, not after the
    # hub client's retries: about 25 s)
    offline = not path.is_dir() and not hub_reachable()
    try:
        if not weights and path.is_dir():
            from transformers import AutoConfig

            with torch.device("meta"):
                model = AutoModelForVideoClassification.from_config(AutoConfig.from_pretrained(path))
        else:
            model = AutoModelForVideoClassification.from_pretrained(source, local_files_only=offline)
            own_memory(model)  # safetensors maps the file at unaligned addresses: copy (see own_memory)
    except OSError as e:
        if path.is_dir():
            raise InputError(f"model directory {spec!r}: cannot load it with from_pretrained ({e})") from e
        if offline:
            raise MissingFileError(
                f"model {spec!r}: the Hugging Face hub cannot be reached from this machine and the model "
                "is not in the local cache; pass a local directory saved with save_pretrained"
            ) from e
        raise MissingFileError(
            f"model {spec!r}: cannot load it from the Hugging Face hub or cache ({e}); without network "
            "access pass a local directory saved with save_pretrained"
        ) from e
    except (ValueError, KeyError) as e:  # a config.json transformers does not understand
        raise InputError(f"model {spec!r}: cannot build a video classifier from it ({e})") from e
    if num_frames is not None:
        _frames_settable(model.config.model_type, spec, num_frames)
        _set_vjepa2_frames(model, num_frames)
    processor = _read_processor_json(source)
    # VideoMAE's test code and V-JEPA 2's processor normalise with the ImageNet values by default
    if "image_mean" not in processor and model.config.model_type not in ("videomae", "vjepa2"):
        warnings.warn(
            f"model {spec!r}: no image_mean/image_std in a processor config; normalising with the "
            "ImageNet defaults, which may not be what this model was trained with",
            stacklevel=2,
        )
    pre = preprocessing_from_config(model.config, processor)
    kind = "hf_dir" if path.is_dir() else "hf_hub"
    ref = str(path.resolve()) if path.is_dir() else spec
    return ResolvedModel(model.eval(), pre, f"{model.config.model_type}:{ref}", {"kind": kind, "path": ref})


def resolve_module(model: nn.Module, preprocessing: Preprocessing | None = None) -> ResolvedModel:
    """A model already in memory, with its preprocessing, as :func:`resolve_model` gives a loaded one.

    ``preprocessing``: what its input must look like; ``None`` reads it from the model as loading
    would: the clip size from its config (``image_size`` / ``num_frames``; V-JEPA 2's
    ``crop_size`` / ``frames_per_clip``; Video Swin's), the layout from its adapter, mean / std
    from the processor config of the directory or hub id it was loaded from
    (``config._name_or_path``: the local directory, else the Hugging Face cache; nothing is
    downloaded without a route to the hub), else the ImageNet values (warned about for model types
    other than VideoMAE and V-JEPA 2, whose own code uses them).

    The record of what was evaluated (``run.json``'s ``model``) is the class and a SHA-256 of the
    weights, so that resuming with another model is refused like resuming with another file.

    Raises:
        SettingTypeError for something that is not an ``nn.Module``; SettingError for a model on the
        meta device (no weights to run), or without a config when no ``preprocessing`` is given.
    """
    import hashlib

    from stprune.errors import SettingTypeError

    if not isinstance(model, nn.Module):
        raise SettingTypeError(
            f"model must be a --model spec (str), a torch.nn.Module or a ResolvedModel; "
            f"got {type(model).__name__}"
        )
    name = type(model).__name__
    tensors = list(model.state_dict().items())
    if any(t.is_meta for _, t in tensors):
        raise SettingError(f"{name} is on the meta device: it has no weights to evaluate")
    config = getattr(model, "config", None)
    if preprocessing is None:
        if config is None or not any(hasattr(config, k) for k in ("image_size", "crop_size")):
            raise SettingError(
                f"{name} has no config that says its clip size: pass preprocessing=Preprocessing("
                "image_size=..., num_frames=..., mean=..., std=..., layout='BTCHW' or 'BCTHW')"
            )
        layout = "BTCHW"
        try:
            from stprune.adapters import get_adapter  # the adapters import the architectures

            layout = get_adapter(model).input_grid().input_layout
        except StpruneError:
            pass  # a model stprune cannot prune: evaluated unpruned, in the HF layout
        source = str(getattr(config, "_name_or_path", "") or "")
        processor = _read_processor_json(source) if source else {}
        model_type = getattr(config, "model_type", None)
        if "image_mean" not in processor and model_type not in (None, "videomae", "vjepa2"):
            warnings.warn(
                f"{name}: no image_mean/image_std in a processor config of {source or 'its source'!r}; "
                "normalising with the ImageNet defaults (pass preprocessing= to give its own)",
                stacklevel=3,
            )
        preprocessing = preprocessing_from_config(config, processor, layout)
    elif not isinstance(preprocessing, Preprocessing):
        raise SettingTypeError(f"preprocessing must be a Preprocessing; got {type(preprocessing).__name__}")
    digest = hashlib.sha256()
    for key, t in tensors:
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    ref = f"in-memory {name}, weights sha256:{digest.hexdigest()[:16]}"
    return ResolvedModel(model, preprocessing, f"{name} (in memory)", {"kind": "module", "path": ref})


def _dir_model_type(path: Path) -> str | None:
    """``model_type`` of a ``save_pretrained`` directory's config.json (None if unreadable)."""
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


#: which models take --num-heads / --num-frames / --image-size, for the messages that refuse them
_GEOMETRY_OPTIONS = (
    "--num-heads, --num-frames and --image-size are for checkpoint files whose weights do not record "
    "them (VideoMAE zoo .pth; Video Swin: frames and size), --num-frames also for V-JEPA 2 models"
)


def _geometry_refused(flags: str, why: str) -> SettingError:
    """One line: the values given (``--num-frames 7``), why this model refuses them, which take them."""
    return SettingError(f"{flags}: {why}; {_GEOMETRY_OPTIONS}")


def _frames_settable(model_type: str | None, spec: str, num_frames: int) -> None:
    if model_type != "vjepa2":
        raise _geometry_refused(
            f"--num-frames {num_frames}",
            f"model {spec!r} is {model_type!r}, whose config fixes its frame count",
        )


def _set_vjepa2_frames(model: nn.Module, num_frames: int) -> None:
    """Run a V-JEPA 2 at ``num_frames`` frames per clip: its ``config.frames_per_clip`` (what the
    pruning plan and the eval clips read; HF's encoder itself takes any count, its RoPE ids come
    from the token index). Raises SettingError / SettingTypeError for a count that is not a
    multiple of the tubelet."""
    from stprune.adapters.hf_vjepa2 import check_num_frames  # the adapters import the architectures

    cfg = model.config
    cfg.frames_per_clip = check_num_frames(num_frames, int(cfg.tubelet_size))


def model_input_name(model: nn.Module) -> str:
    """The forward keyword that takes an HF model's (B, T, C, H, W) clip: its adapter's
    ``input_grid().input_name`` (``"pixel_values"``; V-JEPA 2: ``"pixel_values_videos"``), else
    ``"pixel_values"``."""
    from stprune.adapters import get_adapter  # the adapters import the architectures

    try:
        return get_adapter(model).input_grid().input_name
    except UnsupportedModelError:
        return "pixel_values"


def _preset_preprocessing(model: nn.Module, layout: str) -> Preprocessing:
    config = getattr(model, "config", None)
    if config is not None and (hasattr(config, "image_size") or hasattr(config, "crop_size")):
        return preprocessing_from_config(config, {}, layout)
    return Preprocessing(image_size=224, num_frames=16, layout=layout)


def load_model(
    spec: str | os.PathLike,
    *,
    num_frames: int | None = None,
    image_size: int | None = None,
    num_heads: int | None = None,
    weights: bool = True,
) -> ResolvedModel:
    """Load a model by name or path, with the preprocessing its input needs (``stprune.load_model``).

    The same loader as every ``stprune`` command's ``--model`` (:func:`resolve_model`).

    Args:
        spec: a preset (``"videomae-b"``, ``"video-swin-t"``, ``"qwen2.5-vl-7b"``, ...: standard
            sizes, random weights, built offline), ``"demo"`` / ``"demo-hard"`` (the bundled trained
            classifiers of the easy / hard demo task), a
            directory saved with ``save_pretrained``, a Hugging Face hub id (from the local cache
            when the hub cannot be reached), or a checkpoint file: a VideoMAE / VideoMAE V2
            model-zoo ``.pth``, a Video Swin checkpoint (torchvision or official layout).
        num_frames / image_size: the clip of a checkpoint file that does not record it (zoo
            ``.pth``: default 16 x 224; Video Swin: 32 x 224); ``num_frames`` also runs a V-JEPA 2 at
            another frame count. Refused for models whose config fixes them.
        num_heads: attention heads of a zoo ``.pth`` (default: width / 64).
        weights: False builds presets and local model directories on the meta device from their
            config alone (exact FLOP counts without memory or compute).

    Returns:
        a :class:`ResolvedModel`: ``.model`` (eval mode, CPU) and ``.preprocessing`` (a
        :class:`Preprocessing`: clip size, mean / std, axis order; None for a video LLM); it
        unpacks as ``model, preprocessing``.

    Raises:
        MissingFileError (a FileNotFoundError) for a path that does not exist or a hub id that is
        neither cached nor reachable; InputError for a file or directory that is not a model stprune
        can load; SettingError for geometry options the model does not take.
    """
    return resolve_model(os.fspath(spec), num_heads, num_frames, image_size, weights=weights)
