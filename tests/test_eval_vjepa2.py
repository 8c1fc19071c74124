"""`stprune eval` preprocessing for V-JEPA 2: the resize of its Hugging Face video processor.

HF's ``VJEPA2VideoProcessor`` resizes the short side to ``int(crop_size * 256 / 224)`` (256 ->
292) with antialiased bilinear interpolation, centre-crops ``crop_size`` and normalises with the
ImageNet mean / std. ``tests/data/vjepa2_processor_reference.safetensors`` holds small synthetic
uint8 clips (downscaled 2x and 4.4x, upscaled, portrait, wide) and what that processor returned
for them (``VJEPA2VideoProcessor(crop_size=32)``: short side 36), plus the processor's short side
for crop sizes 256 and 384. The processor needs torchvision, which is not a dependency of
stprune, so the data was made in a virtual environment that has it (torch 2.14.1+cu130,
torchvision 0.29.1+cu130, transformers 5.24.0, run on the 2-core x86_64 CPU sandbox, AVX-512,
2026-12-02), from the repository root::

    /work/tvvenv/bin/python tests/test_eval_vjepa2.py   # = python tests/test_eval_vjepa2.py

Tolerance: torchvision resizes uint8 frames natively (on CPUs with AVX2 / AVX-512 and on ARM64),
with the same torch kernel stprune calls, so on such a machine the views are equal up to the
float32 rounding of the normalisation (measured: 2.4e-7 on every clip, with torch 2.13.0 against
the reference's 2.14.1); elsewhere torchvision resizes in float and rounds, and pixels may differ
by one 8-bit level. The test allows one level (1 / (255 std), about 0.0175) and no more: the
resize without antialiasing differs by 17 to 75 levels on the downscaled clips, the resize to
the crop size (VideoMAE's) by 95 to 198.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data" / "vjepa2_processor_reference.safetensors"
CROP = 32  # the reference's processor crop size: short side int(32 * 256 / 224) = 36
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _synthetic_clips() -> dict[str, np.ndarray]:
    """uint8 (T, H, W, 3) clips: smooth colour waves, a sharp bright box, and noise."""
    rng = np.random.default_rng(0)

    def clip(frames: int, h: int, w: int) -> np.ndarray:
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        out = []
        for t in range(frames):
            img = np.stack(
                [128 + 90 * np.sin((x + 3 * t) / (5.0 + c)) * np.cos(y / (7.0 - c)) for c in range(3)], -1
            )
            img[h // 3 : h // 2, w // 4 : w // 2] = 250
            out.append(img + rng.normal(0, 25, img.shape))
        return np.clip(np.stack(out), 0, 255).round().astype(np.uint8)

    return {
        "landscape": clip(2, 72, 96),  # 2x down
        "portrait": clip(1, 96, 72),
        "strong": clip(1, 160, 208),  # 4.4x down
        "upscale": clip(1, 30, 40),
        "wide": clip(1, 40, 120),
    }


def _generate() -> None:  # pragma: no cover - needs torchvision (see the module docstring)
    import platform

    import torchvision
    import transformers
    from safetensors.torch import save_file
    from transformers import VJEPA2VideoProcessor

    proc = VJEPA2VideoProcessor(crop_size=CROP)
    tensors: dict[str, torch.Tensor] = {}
    for name, clip in _synthetic_clips().items():
        tensors[f"clip_{name}"] = torch.from_numpy(clip).contiguous()
        tensors[f"out_{name}"] = proc(clip, return_tensors="pt")["pixel_values_videos"][0].contiguous()
    shorts = {c: int(VJEPA2VideoProcessor(crop_size=c).size.shortest_edge) for c in (CROP, 64, 256, 384)}
    meta = {
        "processor": json.dumps(proc.to_dict(), default=str),
        "short_side_by_crop": json.dumps(shorts),
        "versions": json.dumps(
            {
                "torch": torch.__version__,
                "torchvision": torchvision.__version__,
                "transformers": transformers.__version__,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "machine": platform.machine(),
            }
        ),
    }
    DATA.parent.mkdir(exist_ok=True)
    save_file(tensors, str(DATA), metadata=meta)
    print(f"wrote {DATA}: {sorted(tensors)}; short sides {shorts}")


def _reference() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    assert DATA.exists(), f"missing {DATA}: it is committed; regenerate it as this module's docstring says"
    with safe_open(str(DATA), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def _levels(x: torch.Tensor) -> torch.Tensor:
    """Normalised (T, 3, H, W) views back in 8-bit levels (x * std + mean) * 255."""
    m = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x * s + m) * 255


def _ours(clip: torch.Tensor, **kw) -> torch.Tensor:
    """stprune's one centre view of a whole clip (T, 3, CROP, CROP), normalised."""
    from stprune.eval.transforms import make_views, normalize

    views = make_views(clip, [list(range(clip.shape[0]))], CROP, 1, **kw)
    return normalize(views, IMAGENET_MEAN, IMAGENET_STD)[0]


NAMES = ("landscape", "portrait", "strong", "upscale", "wide")


@pytest.mark.parametrize("name", NAMES)
def test_views_match_the_hf_video_processor(name):
    tensors, _ = _reference()
    got = _ours(tensors[f"clip_{name}"], short_side=36, antialias=True)
    want = tensors[f"out_{name}"]
    assert got.shape == want.shape
    assert (_levels(got) - _levels(want)).abs().max().item() < 1.0 + 1e-3


def test_the_reference_tells_the_old_resizes_apart():
    """What the tolerance above excludes: no antialiasing, or VideoMAE's short side = crop."""
    tensors, _ = _reference()
    clip, want = tensors["clip_strong"], _levels(tensors["out_strong"])
    no_aa = _levels(_ours(clip, short_side=36, antialias=False))
    to_crop = _levels(_ours(clip))
    assert (no_aa - want).abs().max().item() > 5
    assert (to_crop - want).abs().max().item() > 5


def test_processor_short_side_formula_matches_hf():
    from stprune.architectures.loading import vjepa2_short_side

    _, meta = _reference()
    shorts = {int(k): v for k, v in json.loads(meta["short_side_by_crop"]).items()}
    assert shorts[256] == 292 and shorts[384] == 438
    assert {c: vjepa2_short_side(c) for c in shorts} == shorts
    processor = json.loads(meta["processor"])
    assert processor["image_mean"] == list(IMAGENET_MEAN) and processor["image_std"] == list(IMAGENET_STD)


# where the resize comes from ------------------------------------------------------------------------


def _vjepa2_config(crop: int = 256, frames: int = 16):
    from transformers import VJEPA2Config

    return VJEPA2Config(crop_size=crop, frames_per_clip=frames)


def _videomae_config(size: int = 224):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(image_size=size)


def _vivit_config():
    from transformers import VivitConfig

    return VivitConfig(image_size=224)


VJEPA2_PROC = {"video_processor_type": "VJEPA2VideoProcessor", "crop_size": {"height": 384, "width": 384}}


@pytest.mark.parametrize(
    ("config", "processor", "resize"),
    [
        (lambda: _vjepa2_config(256), {}, (292, True)),  # no processor config: V-JEPA 2's default
        (lambda: _vjepa2_config(384), {}, (438, True)),
        # VJEPA2VideoProcessor derives its size from the crop, whatever "size" says
        (lambda: _vjepa2_config(384), {**VJEPA2_PROC, "size": {"shortest_edge": 999}}, (438, True)),
        (lambda: _videomae_config(), {}, (None, False)),  # VideoMAE's test code
        (lambda: _videomae_config(), {"size": {"shortest_edge": 224}, "resample": 2}, (None, False)),
        (lambda: _videomae_config(), {"size": 224}, (None, False)),
        (lambda: _videomae_config(), {"size": {"height": 224, "width": 224}}, (None, False)),
        (
            lambda: _vivit_config(),
            {"image_processor_type": "VivitImageProcessor", "size": {"shortest_edge": 256}},
            (256, True),
        ),
    ],
    ids=[
        "vjepa2-256",
        "vjepa2-384",
        "vjepa2-processor",
        "videomae",
        "videomae-processor",
        "int-size",
        "fixed-size",
        "vivit-processor",
    ],
)
def test_resize_from_config_and_processor(config, processor, resize):
    from stprune.architectures.loading import preprocessing_from_config

    pre = preprocessing_from_config(config(), processor)
    assert (pre.short_side, pre.antialias) == resize
    if resize[0] is None:
        assert pre.resize is None
    else:
        assert pre.resize == {"short_side": resize[0], "interpolation": "bilinear", "antialias": True}


def test_bad_resizes_are_refused():
    from stprune.architectures.loading import Preprocessing, preprocessing_from_config
    from stprune.errors import InputError, SettingError

    with pytest.raises(SettingError, match=r"short_side 200 must be an integer >= image_size=224"):
        Preprocessing(image_size=224, num_frames=16, short_side=200)
    with pytest.raises(InputError, match="short side to 200, smaller than the crop 224"):
        preprocessing_from_config(_videomae_config(), {"size": {"shortest_edge": 200}})
    with pytest.warns(UserWarning, match="resamples with 3"):
        preprocessing_from_config(_videomae_config(), {"size": {"shortest_edge": 256}, "resample": 3})


def _tiny_vjepa2_dir(directory: Path, processor: dict | None = None) -> Path:
    from transformers import VJEPA2Config, VJEPA2ForVideoClassification

    torch.manual_seed(0)
    cfg = VJEPA2Config(
        crop_size=32, frames_per_clip=4, patch_size=16, tubelet_size=2, hidden_size=32, num_attention_heads=2,
        num_hidden_layers=2, mlp_ratio=2.0, num_pooler_layers=1, pred_hidden_size=16,
        pred_num_attention_heads=2, pred_num_hidden_layers=1, num_labels=3,
    )  # fmt: skip
    VJEPA2ForVideoClassification(cfg).eval().save_pretrained(directory)
    if processor is not None:
        (directory / "video_preprocessor_config.json").write_text(json.dumps(processor))
    return directory


def test_a_saved_vjepa2_resolves_with_its_processors_resize(tmp_path, recwarn):
    from stprune.architectures.loading import resolve_model

    pre = resolve_model(str(_tiny_vjepa2_dir(tmp_path / "plain"))).preprocessing
    assert (pre.image_size, pre.short_side, pre.antialias) == (32, 36, True)
    assert (pre.mean, pre.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert not [w for w in recwarn if "ImageNet" in str(w.message)]  # V-JEPA 2's processor default
    proc = {
        "video_processor_type": "VJEPA2VideoProcessor",
        "crop_size": {"height": 32, "width": 32},
        "size": {"shortest_edge": 36},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
        "resample": 2,
    }
    pre = resolve_model(str(_tiny_vjepa2_dir(tmp_path / "proc", proc))).preprocessing
    assert (pre.short_side, pre.antialias, pre.mean, pre.std) == (36, True, (0.5,) * 3, (0.25,) * 3)


def test_dataset_resizes_to_the_short_side(tmp_path):
    from eval_utils import write_video

    from stprune.errors import SettingError
    from stprune.eval.dataset import VideoViewsDataset
    from stprune.eval.decode import read_clips
    from stprune.eval.lists import VideoEntry
    from stprune.eval.sampling import ViewSpec, clip_indices
    from stprune.eval.transforms import make_views

    video = write_video(tmp_path / "v.mp4", frames=12, height=48, width=80)
    entry = VideoEntry(path="v.mp4", file=video, label=0, line=1)
    spec = ViewSpec(2, 3)
    item = VideoViewsDataset([entry], "kinetics", spec, 4, CROP, 2, short_side=36, antialias=True)[0]
    assert item.error is None and item.views.shape == (6, 4, 3, CROP, CROP)
    frames, positions = read_clips(video, lambda n: clip_indices("kinetics", n, 4, 2, 2))
    assert torch.equal(item.views, make_views(frames, positions, CROP, 3, short_side=36, antialias=True))
    old = VideoViewsDataset([entry], "kinetics", spec, 4, CROP, 2)[0]
    assert torch.equal(old.views, make_views(frames, positions, CROP, 3))
    assert not torch.equal(old.views, item.views)
    with pytest.raises(SettingError, match="short_side 30 must be >= the crop size 32"):
        VideoViewsDataset([entry], "kinetics", spec, 4, CROP, 2, short_side=30)


def test_eval_records_the_resize_and_refuses_to_resume_with_another(tmp_path):
    from eval_utils import write_video

    from stprune.eval.runner import run_eval

    model = _tiny_vjepa2_dir(tmp_path / "model")
    for i in range(2):
        write_video(tmp_path / "videos" / f"v{i}.mp4", frames=10, height=48, width=64 + 16 * i, seed=i)
    (tmp_path / "list.txt").write_text("v0.mp4 0\nv1.mp4 2\n")
    kw = dict(root=tmp_path / "videos", device="cpu", progress=False, workers=0, views="1x3", sampling_rate=2)
    out = tmp_path / "out"
    summary = run_eval(str(model), tmp_path / "list.txt", out, **kw)
    assert summary["num_evaluated"] == 2
    resize = {"short_side": 36, "interpolation": "bilinear", "antialias": True}
    assert json.loads((out / "run.json").read_text())["resize"] == resize
    assert summary["settings"]["resize"] == resize
    # the checkpoint's processor config now says VideoMAE's resize (short side = crop)
    (model / "video_preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "VideoMAEImageProcessor", "size": {"shortest_edge": 32}})
    )
    with pytest.raises(ValueError, match=r"resize: recorded \{'short_side': 36, .*\}, now None"):
        run_eval(str(model), tmp_path / "list.txt", out, **kw)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_generate())
