"""Loading torchvision and official Video Swin checkpoints.

The key lists below were written from the two sources (torchvision
``torchvision/models/video/swin_transformer.py`` + ``ops.MLP``; the official
``mmaction/models/backbones/swin_transformer.py`` + ``I3DHead``), not taken from stprune, and
the tensors are synthetic: nothing is downloaded.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stprune.architectures.video_swin.weights import (
    convert_state_dict,
    detect_layout,
    export_state_dict,
    infer_config,
    read_checkpoint,
)
from stprune.models import (
    VideoSwin,
    VideoSwinConfig,
    load_video_swin,
    video_swin_b,
    video_swin_s,
    video_swin_t,
)

SMALL = VideoSwinConfig(
    embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), num_classes=5, window_size=(2, 3, 3)
)
T_CONFIG = VideoSwinConfig(num_classes=400)


def torchvision_shapes(cfg: VideoSwinConfig) -> dict[str, tuple[int, ...]]:
    """Every entry of torchvision ``SwinTransformer3d.state_dict()`` (persistent buffers too)."""
    e, (wt, wh, ww) = cfg.embed_dim, cfg.window_size
    n = wt * wh * ww
    table = (2 * wt - 1) * (2 * wh - 1) * (2 * ww - 1)
    out = {
        "patch_embed.proj.weight": (e, 3, *cfg.patch_size),
        "patch_embed.proj.bias": (e,),
        "patch_embed.norm.weight": (e,),
        "patch_embed.norm.bias": (e,),
    }
    for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
        c = e * 2**i
        for j in range(depth):
            p = f"features.{2 * i}.{j}."
            out |= {
                p + "norm1.weight": (c,),
                p + "norm1.bias": (c,),
                p + "attn.relative_position_bias_table": (table, heads),
                p + "attn.relative_position_index": (n, n),
                p + "attn.qkv.weight": (3 * c, c),
                p + "attn.qkv.bias": (3 * c,),
                p + "attn.proj.weight": (c, c),
                p + "attn.proj.bias": (c,),
                p + "norm2.weight": (c,),
                p + "norm2.bias": (c,),
                p + "mlp.0.weight": (4 * c, c),
                p + "mlp.0.bias": (4 * c,),
                p + "mlp.3.weight": (c, 4 * c),
                p + "mlp.3.bias": (c,),
            }
        if i < len(cfg.depths) - 1:
            p = f"features.{2 * i + 1}."
            out |= {
                p + "reduction.weight": (2 * c, 4 * c),
                p + "norm.weight": (4 * c,),
                p + "norm.bias": (4 * c,),
            }
    c = e * 2 ** (len(cfg.depths) - 1)
    out |= {
        "norm.weight": (c,),
        "norm.bias": (c,),
        "head.weight": (cfg.num_classes, c),
        "head.bias": (cfg.num_classes,),
    }
    return out


def official_name(torchvision_key: str) -> str:
    """The official mmaction Recognizer3D name of a torchvision key."""
    parts = torchvision_key.split(".")
    if parts[0] == "features":
        index = int(parts[1])
        if index % 2 == 0:
            rest = ".".join(parts[3:]).replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
            return f"backbone.layers.{index // 2}.blocks.{parts[2]}.{rest}"
        return f"backbone.layers.{index // 2}.downsample.{'.'.join(parts[2:])}"
    if parts[0] == "head":
        return "cls_head.fc_cls." + parts[1]
    return "backbone." + torchvision_key


def synthetic(cfg: VideoSwinConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout state dict with random weights and the real index buffers."""
    gen = torch.Generator().manual_seed(seed)
    (wt, wh, ww) = cfg.window_size
    coords = torch.stack(torch.meshgrid(torch.arange(wt), torch.arange(wh), torch.arange(ww), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + torch.tensor([wt - 1, wh - 1, ww - 1])
    index = rel[..., 0] * (2 * wh - 1) * (2 * ww - 1) + rel[..., 1] * (2 * ww - 1) + rel[..., 2]
    out = {}
    for key, shape in torchvision_shapes(cfg).items():
        if key.endswith("relative_position_index"):
            out[key] = index.clone()
        elif "norm" in key and key.endswith("weight"):
            out[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=gen)
    return out


def to_official(torchvision_sd):
    return {official_name(k): v for k, v in torchvision_sd.items()}


CLIP = torch.randn(1, 3, 5, 30, 26, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def swin_t_tv() -> dict[str, torch.Tensor]:
    """A Swin-T torchvision checkpoint (28M random weights; tests copy the dict, not tensors)."""
    return synthetic(T_CONFIG, seed=3)


@pytest.mark.parametrize("build", ["t", "s", "b"])
def test_export_names_and_shapes_match_both_sources(build):
    make = {"t": video_swin_t, "s": video_swin_s, "b": video_swin_b}[build]
    with torch.device("meta"):
        model = make()
    expected = torchvision_shapes(model.config)
    exported = {k: tuple(v.shape) for k, v in export_state_dict(model, "torchvision").items()}
    assert exported == expected
    official = {k: tuple(v.shape) for k, v in export_state_dict(model, "official").items()}
    assert official == {official_name(k): s for k, s in expected.items()}


def test_torchvision_and_official_layouts_give_identical_models():
    tv = synthetic(SMALL, seed=2)
    a = load_video_swin(tv, config=SMALL)
    b = load_video_swin(to_official(tv), config=SMALL)
    with torch.no_grad():
        torch.testing.assert_close(a(CLIP), b(CLIP), rtol=0, atol=0)
    # values land where the sources put them
    assert torch.equal(a.stages[2].blocks[1].mlp.fc2.weight, tv["features.4.1.mlp.3.weight"])
    assert torch.equal(a.stages[2].blocks[1].mlp.fc1.bias, tv["features.4.1.mlp.0.bias"])
    assert torch.equal(a.stages[1].downsample.reduction.weight, tv["features.3.reduction.weight"])
    assert torch.equal(
        a.stages[3].blocks[0].attn.relative_position_bias_table,
        tv["features.6.0.attn.relative_position_bias_table"],
    )
    assert torch.equal(a.head.weight, tv["head.weight"])
    assert not a.training


def test_swin_t_inferred_from_either_layout_and_round_trips(swin_t_tv):
    tv = swin_t_tv
    model = load_video_swin(tv)
    assert model.config.depths == (2, 2, 6, 2) and model.config.num_classes == 400
    assert model.config.window_size == (8, 7, 7) and model.config.patch_size == (2, 4, 4)
    official = load_video_swin({"state_dict": to_official(tv), "meta": {"epoch": 30}})
    with torch.no_grad():
        torch.testing.assert_close(model(CLIP), official(CLIP), rtol=0, atol=0)
    back = export_state_dict(official, "torchvision")
    assert back.keys() == tv.keys() and all(torch.equal(back[k], tv[k]) for k in tv)


def test_dtype_is_kept_exactly():
    tv = {k: v.double() if v.is_floating_point() else v for k, v in synthetic(SMALL, seed=11).items()}
    model = load_video_swin(tv, config=SMALL, dtype=torch.float64)
    assert model.head.weight.dtype == torch.float64 and torch.equal(model.head.weight, tv["head.weight"])
    assert load_video_swin(tv, config=SMALL).head.weight.dtype == torch.float32
    with pytest.raises(TypeError, match="floating point"):
        load_video_swin(tv, config=SMALL, dtype=torch.int64)


def test_converted_dicts_load_strictly_with_plain_load_state_dict():
    tv = synthetic(SMALL, seed=4)
    for layout_sd in (tv, to_official(tv)):
        model = VideoSwin(SMALL)
        model.load_state_dict(convert_state_dict(layout_sd), strict=True)


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (``torch.equal`` would call 0.0 and -0.0, or two NaNs, unequal/equal)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def file_mapped(tensors: list[torch.Tensor]) -> list[int]:
    """Indices of the tensors whose memory lies in a mapping of a file (Linux: /proc/self/maps;
    elsewhere this cannot be seen and nothing is reported, the in-place overwrite checks still run)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    ranges = []
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) >= 5 and fields[4] != "0":  # inode 0: anonymous memory (heap, malloc'd mmap)
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    ranges.sort()
    starts = [lo for lo, _ in ranges]

    def mapped(ptr: int) -> bool:
        i = bisect.bisect_right(starts, ptr) - 1
        return i >= 0 and ptr < ranges[i][1]

    return [i for i, t in enumerate(tensors) if t.numel() and mapped(t.data_ptr())]


def assert_owned_aligned(model: torch.nn.Module) -> None:
    """Every parameter and buffer: contiguous, 64-byte aligned, not in a file mapping."""
    named = list(model.state_dict().items())
    unaligned = [k for k, v in named if v.data_ptr() % 64]
    assert not unaligned, f"{len(unaligned)} tensors not 64-byte aligned, e.g. {unaligned[:3]}"
    assert all(v.is_contiguous() for _, v in named)
    assert not [named[i][0] for i in file_mapped([v for _, v in named])]


def overwrite_in_place(path: Path) -> None:
    """Zero the file's bytes after the first 4 KiB without truncating it (what an in-place re-save
    does to pages a memory-mapped model still reads from)."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(bytes(size - 4096))


def test_files_pth_safetensors_wrappers(tmp_path):
    tv = synthetic(SMALL, seed=5)
    reference = load_video_swin(tv, config=SMALL)
    with torch.no_grad():
        expected = reference(CLIP)
    official = to_official(tv)
    torch.save({"meta": {"epoch": 3, "config": "swin"}, "state_dict": official}, tmp_path / "mm.pth")
    torch.save({"model": {"module." + k: v for k, v in tv.items()}}, tmp_path / "ddp.pt")
    save_file({k: v.contiguous() for k, v in tv.items()}, str(tmp_path / "tv.safetensors"))
    for name in ("mm.pth", "ddp.pt", "tv.safetensors"):
        model = load_video_swin(tmp_path / name, config=SMALL)
        # the weights are the checkpoint's, bit for bit
        got_sd = model.state_dict()
        assert all(bitwise_equal(got_sd[k], v) for k, v in reference.state_dict().items())
        with torch.no_grad():
            got = model(CLIP)
        # Outputs with a tolerance: both models hold the same bits in 64-byte aligned, contiguous
        # memory, but in different allocations, and a CPU GEMM library may still pick its code path
        # (and so its summation order) by address; fp32 rounding differences stay far below this.
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["tv.safetensors", "mm.pth", "ddp.pt"])
def test_loaded_weights_are_owned_aligned_and_independent_of_the_file(tmp_path, name):
    """A model loaded from a file holds its weights in its own 64-byte aligned memory: not at the
    4-byte offsets safetensors' memory map gives (other fp32 kernel paths, other results), and not
    in pages of the file (a re-save in place would change the weights of a model in use)."""
    tv = synthetic(SMALL, seed=12)
    path = tmp_path / name
    if name.endswith(".safetensors"):
        save_file(tv, str(path))
    elif name == "mm.pth":
        torch.save({"state_dict": to_official(tv)}, path)
    else:
        torch.save({"model": {"module." + k: v for k, v in tv.items()}}, path)
    model = load_video_swin(path, config=SMALL)
    assert_owned_aligned(model)
    overwrite_in_place(path)
    reference = load_video_swin(tv, config=SMALL)
    got = model.state_dict()
    assert all(bitwise_equal(got[k], v) for k, v in reference.state_dict().items())


def test_memory_mapped_or_unaligned_state_dicts_are_copied(tmp_path):
    """In-memory state dicts: tensors in a file mapping (safetensors' ``load_file``), at unaligned
    addresses or with non-contiguous strides are copied; aligned, contiguous tensors in ordinary
    memory are adopted without a copy (shared with the dict, as documented)."""
    tv = synthetic(SMALL, seed=13)
    save_file(tv, str(tmp_path / "tv.safetensors"))
    mapped = load_file(str(tmp_path / "tv.safetensors"))  # memory-mapped tensors, 4-byte aligned ones too
    model = load_video_swin(mapped, config=SMALL)
    assert_owned_aligned(model)
    overwrite_in_place(tmp_path / "tv.safetensors")
    got = model.state_dict()
    assert all(bitwise_equal(got[k], v) for k, v in load_video_swin(tv, config=SMALL).state_dict().items())

    state = dict(tv)
    weight = tv["features.4.0.mlp.0.weight"]
    buffer = torch.empty(weight.numel() + 1)
    buffer[1:] = weight.reshape(-1)
    state["features.4.0.mlp.0.weight"] = buffer[1:].view(weight.shape)  # 4 bytes past an aligned start
    state["features.4.0.mlp.3.weight"] = tv["features.4.0.mlp.3.weight"].t().contiguous().t()  # strided
    model = load_video_swin(state, config=SMALL)
    assert_owned_aligned(model)
    fc1, fc2 = model.stages[2].blocks[0].mlp.fc1.weight, model.stages[2].blocks[0].mlp.fc2.weight
    assert bitwise_equal(fc1, weight) and bitwise_equal(fc2, tv["features.4.0.mlp.3.weight"])
    head = model.head.weight
    assert head.data_ptr() == tv["head.weight"].data_ptr()  # adopted: no copy where it is safe


def test_safetensors_reader_matches_the_library(tmp_path):
    """``read_checkpoint`` reads .safetensors into fresh aligned tensors, bitwise equal to what
    safetensors itself returns, for every dtype a checkpoint may hold (and 0-d / empty tensors)."""
    gen = torch.Generator().manual_seed(14)
    tensors = {
        "f32": torch.randn(3, 5, generator=gen),
        "f16": torch.randn(7, generator=gen).half(),
        "bf16": torch.randn(2, 3, generator=gen).bfloat16(),
        "f64": torch.randn(4, generator=gen).double(),
        "i64": torch.arange(-3, 6),
        "i32": torch.arange(5, dtype=torch.int32),
        "i8": torch.arange(-4, 3, dtype=torch.int8),
        "u8": torch.arange(9, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.empty(0, 4),
        "odd": torch.randn(1, generator=gen).half(),  # moves the next tensor 2 bytes off
        "after_odd": torch.randn(6, generator=gen),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    ours, theirs = read_checkpoint(path), load_file(str(path))
    assert ours.keys() == theirs.keys() == tensors.keys()
    assert all(bitwise_equal(ours[k], theirs[k]) for k in tensors)
    assert all(v.data_ptr() % 64 == 0 for v in ours.values())
    assert not file_mapped(list(ours.values()))


def test_damaged_safetensors_files_are_named(tmp_path):
    path = tmp_path / "cut.safetensors"
    save_file(synthetic(SMALL, seed=15), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*(ends|short|offsets)"):
        load_video_swin(path, config=SMALL)
    path.write_bytes(b"\xff" * 8 + data[8:])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*header"):
        load_video_swin(path, config=SMALL)
    path.write_bytes(data[:8] + b"x" + data[9:])  # the header JSON starts with "{"
    with pytest.raises(ValueError, match=r"cut\.safetensors.*header"):
        load_video_swin(path, config=SMALL)


class _NotAllowed:
    pass


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({"state_dict": synthetic(SMALL), "extra": _NotAllowed()}, tmp_path / "unsafe.pth")
    with pytest.raises(ValueError, match="weights_only"):
        load_video_swin(tmp_path / "unsafe.pth", config=SMALL)
    with pytest.raises(FileNotFoundError):
        load_video_swin(tmp_path / "absent.pth")


def test_missing_and_unexpected_keys_are_listed_in_the_checkpoint_names(swin_t_tv):
    tv = dict(swin_t_tv)
    del tv["features.4.3.attn.qkv.weight"]
    tv["features.4.9.attn.qkv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as err:
        load_video_swin(tv)
    msg = str(err.value)
    assert "Swin-T" in msg and "missing keys [features.4.3.attn.qkv.weight]" in msg
    assert "unexpected keys [features.4.9.attn.qkv.weight]" in msg

    official = to_official(swin_t_tv)
    del official["cls_head.fc_cls.bias"]
    with pytest.raises(ValueError, match=r"missing keys \[cls_head\.fc_cls\.bias\]"):
        load_video_swin(official)


def test_wrong_architecture_is_named(swin_t_tv):
    tv = swin_t_tv
    with pytest.raises(ValueError) as err:
        load_video_swin(tv, arch="s")
    msg = str(err.value)
    assert (
        "Swin-S" in msg and "missing keys [features.4.10" in msg and "(156 in all)" in msg
    )  # 12 blocks x 13
    with pytest.raises(ValueError, match=r"Swin-B .*wrong shapes \[features\.0\.0\.attn\.proj\.bias"):
        load_video_swin(tv, arch="b")
    with pytest.raises(ValueError, match="arch must be one of"):
        load_video_swin(tv, arch="l")


def test_uninferable_architecture_says_why():
    tv = synthetic(SMALL, seed=8)
    with pytest.raises(ValueError, match="cannot infer the Video Swin architecture: .*embed_dim=8"):
        load_video_swin(tv)
    # width 96 fits T and S; 12 stage-3 blocks are 6 away from both
    with torch.device("meta"):
        state = export_state_dict(video_swin_t(), "native")
    for j in range(6, 12):
        state[f"stages.2.blocks.{j}.norm1.weight"] = state["stages.2.blocks.0.norm1.weight"]
    with pytest.raises(ValueError, match="12 blocks in stage 3"):
        load_video_swin(state)


def test_head_and_num_classes_checks(swin_t_tv):
    tv = synthetic(SMALL, seed=9)
    with pytest.raises(ValueError, match="contradicts"):
        load_video_swin(tv, num_classes=7, config=SMALL)
    headless = {k: v for k, v in swin_t_tv.items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match="no classification head"):
        load_video_swin(headless)
    with pytest.raises(ValueError, match=r"missing keys \[head\.bias, head\.weight\]"):
        load_video_swin(headless, num_classes=400)
    with pytest.raises(ValueError, match="num_classes=10 but the checkpoint's head has 400"):
        load_video_swin(swin_t_tv, num_classes=10)


def test_index_buffer_from_another_window_is_rejected():
    tv = synthetic(SMALL, seed=10)
    tv["features.2.1.attn.relative_position_index"] = tv["features.2.1.attn.relative_position_index"].flip(0)
    with pytest.raises(
        ValueError, match=r"features\.2\.1\.attn\.relative_position_index .*another window size"
    ):
        load_video_swin(tv, config=SMALL)


def test_window_size_inferred_from_bias_table():
    with torch.device("meta"):
        model = video_swin_t(window_size=(16, 7, 7))  # the Something-Something V2 setting
    state = export_state_dict(model, "native")
    arch, cfg = infer_config(state)
    assert (arch, cfg.window_size, cfg.num_classes) == ("t", (16, 7, 7), 400)
    state["stages.0.blocks.0.attn.relative_position_bias_table"] = torch.empty(100, 3, device="meta")
    with pytest.raises(ValueError, match="window_size="):
        infer_config(state)


def test_unknown_or_mixed_layouts():
    with pytest.raises(ValueError, match="matches no known layout"):
        detect_layout({"encoder.layer.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="mixes the layouts"):
        detect_layout({"features.0.0.norm1.weight": torch.zeros(1), "backbone.norm.weight": torch.zeros(1)})
    with pytest.raises(TypeError, match="checkpoint path or a state dict"):
        load_video_swin(42)


def test_save_pretrained_directories_load_into_memory_of_their_own(tmp_path):
    """``--model DIR`` (transformers' from_pretrained, which memory-maps safetensors at 4-byte
    offsets) gives a model whose weights are aligned, in anonymous memory and bitwise those saved;
    tied weights stay tied."""
    from conftest import tiny_videomae

    from stprune.architectures.loading import resolve_model

    saved = tiny_videomae(depth=2)
    saved.save_pretrained(tmp_path / "m")
    model = resolve_model(str(tmp_path / "m")).model
    assert_owned_aligned(model)
    overwrite_in_place(tmp_path / "m" / "model.safetensors")
    got = model.state_dict()
    assert all(bitwise_equal(got[k], v) for k, v in saved.state_dict().items())


def test_own_memory_keeps_tied_weights_tied():
    from stprune.architectures.video_swin.weights import own_memory

    lin = torch.nn.Linear(4, 4)
    seq = torch.nn.Sequential(lin, torch.nn.Linear(4, 4))
    seq[1].weight = lin.weight
    storage = torch.empty(16 + 1)[1:].view(4, 4)  # 4-byte offset: must be copied
    with torch.no_grad():
        storage.copy_(lin.weight)
    seq[0].weight = seq[1].weight = torch.nn.Parameter(storage)
    assert own_memory(seq) >= 1
    assert seq[0].weight is seq[1].weight and seq[0].weight.data_ptr() % 64 == 0
