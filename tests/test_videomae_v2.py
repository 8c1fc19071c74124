"""VideoMAE V2 model-zoo checkpoints -> HF VideoMAE, checked against the official model code.

Reference data (``tests/data/videomae_v2_reference.safetensors``): made outside this repository by
running the official fine-tuning model, ``models/modeling_finetune.py`` of OpenGVLab/VideoMAEv2 at
commit 29eab1e8a588d1b3ec0cdec7b03a86cca491b74b (timm's ``drop_path`` / ``to_2tuple`` /
``trunc_normal_`` / ``register_model`` stubbed; they play no part in an eval forward), torch
2.13.0 CPU, seed 20261201. Three small ``VisionTransformer`` configs (``norm_layer`` LayerNorm eps
1e-6 and ``qkv_bias=True`` as in every registry function), each with random weights (every
parameter drawn anew: LayerNorm weights 1 + 0.2 N(0, 1), biases 0.1 N(0, 1), layer-scale gammas
U(0.05, 1.05), other weights N(0, 1/fan_in); all rounded to float32, as checkpoints are):

* ``g14``: the ViT-g/14 code path: patch 14, ``mlp_ratio=48/11`` (giant's 1408 -> 6144; here
  44 -> 192), width 44, depth 3, 4 heads, layer scale (``init_values=0.1``), mean pooling,
  4 frames (tubelet 2) of 56 x 56, 7 classes.
* ``s16``: the distilled ViT-S/16 / ViT-B/16 code path: patch 16, ``mlp_ratio=4``, width 32,
  depth 2, 4 heads, no layer scale, mean pooling, 4 frames of 32 x 32, 5 classes.
* ``cls16``: ``--use_cls`` (first-token head through ``norm``, no ``fc_norm``), layer scale
  (``init_values=0.5``), width 24, depth 2, 3 heads, patch 16, 4 frames of 32 x 32, 6 classes.

For each, the file holds the official state dict (its own key names, float32), two clips
(B, C, T, H, W) with float32 values and the official model's float64 logits. The metadata also
holds, for the registry functions ``vit_giant_patch14_224`` (400, 710 and 174 classes),
``vit_small_patch16_224`` and ``vit_base_patch16_224`` (710 classes), the key -> shape table of
their state dicts (built on the meta device), so the loader's config inference is checked on the
released sizes without their weights. The official code is not part of this repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import stprune
from stprune.architectures.loading import load_model, resolve_model
from stprune.architectures.videomae_zoo import (
    fold_layer_scale,
    load_videomae_zoo,
    missing_zoo_keys,
    videomae_from_zoo_state_dict,
    zoo_config,
)
from stprune.errors import InputError, UnsupportedModelError

DATA = Path(__file__).parent / "data" / "videomae_v2_reference.safetensors"
COMMIT = "29eab1e8a588d1b3ec0cdec7b03a86cca491b74b"
NAMES = ("g14", "s16", "cls16")


def _reference(name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, dict]:
    """(official state dict, clips (B, C, T, H, W) float64, official float64 logits, config)."""
    with safe_open(str(DATA), "pt") as f:
        prefix = f"{name}/state_dict/"
        sd = {k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118
        clips = f.get_tensor(f"{name}/clips").double()
        logits = f.get_tensor(f"{name}/logits")
        config = json.loads(f.metadata()[f"{name}/config"])
    return sd, clips, logits, config


def _registry_shapes() -> dict[str, dict[str, list[int]]]:
    with safe_open(str(DATA), "pt") as f:
        return json.loads(f.metadata()["registry_shapes"])


def _save(tmp_path: Path, sd: dict[str, torch.Tensor], wrapper: str = "module", **extra) -> Path:
    """Write ``sd`` as the zoo distributes it: a ``.pth`` of a dict wrapping the state dict."""
    path = tmp_path / "checkpoint.pth"
    torch.save({wrapper: sd, **extra}, path)
    return path


def _hf_logits(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=clips.transpose(1, 2).to(model.dtype)).logits  # HF takes BTCHW


def test_reference_file_says_where_it_came_from():
    with safe_open(str(DATA), "pt") as f:
        meta = f.metadata()
    assert meta["source"] == f"OpenGVLab/VideoMAEv2@{COMMIT}:models/modeling_finetune.py"
    sd, _, logits, config = _reference("g14")
    assert config["patch_size"] == 14 and config["init_values"] > 0
    gammas = [v for k, v in sd.items() if k.endswith(("gamma_1", "gamma_2"))]
    assert len(gammas) == 6 and all((g - 1).abs().min() > 1e-3 for g in gammas)  # layer scale is not 1
    assert logits.dtype == torch.float64 and logits.abs().max() > 0.5


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_official_code_float64(tmp_path, name):
    sd, clips, ref, cfg = _reference(name)
    path = _save(tmp_path, sd)
    model = load_videomae_zoo(
        path,
        num_heads=cfg["num_heads"],
        num_frames=cfg["all_frames"],
        image_size=cfg["img_size"],
        dtype=torch.float64,
    )
    c = model.config
    assert (c.patch_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (
        cfg["patch_size"],
        cfg["embed_dim"],
        cfg["depth"],
        cfg["num_heads"],
    )
    assert c.intermediate_size == int(cfg["embed_dim"] * cfg["mlp_ratio"])
    assert (c.use_mean_pooling, c.num_labels, c.tubelet_size) == (
        cfg["use_mean_pooling"],
        cfg["num_classes"],
        cfg["tubelet_size"],
    )
    assert all(p.dtype == torch.float64 for p in model.parameters())
    out = _hf_logits(model, clips)
    diff = (out - ref).abs().max().item()
    assert diff < 1e-9, diff


@pytest.mark.parametrize("name", NAMES)
def test_float32_default_close_to_official(tmp_path, name):
    sd, clips, ref, cfg = _reference(name)
    args = argparse.Namespace(num_frames=cfg["all_frames"], input_size=cfg["img_size"], model="vit_x")
    path = _save(tmp_path, sd, wrapper="model", args=args, epoch=3)
    resolved = resolve_model(str(path), num_heads=cfg["num_heads"])  # the CLI's --model path
    assert resolved.preprocessing.num_frames == cfg["all_frames"]
    assert all(p.dtype == torch.float32 for p in resolved.model.parameters())
    with torch.no_grad():
        out = resolved.logits(clips.transpose(1, 2).float())
    assert (out.double() - ref).abs().max().item() < 1e-4


def test_layer_scale_is_folded_into_proj_and_fc2():
    sd, clips, ref, cfg = _reference("g14")
    model = videomae_from_zoo_state_dict(sd, num_heads=4, num_frames=4, image_size=56, dtype=torch.float64)
    assert not any("gamma" in k for k in model.state_dict())
    layer = model.videomae.encoder.layer[1]
    g1, g2 = sd["blocks.1.gamma_1"].double(), sd["blocks.1.gamma_2"].double()
    exp_w = g1[:, None] * sd["blocks.1.attn.proj.weight"].double()
    assert torch.equal(layer.attention.output.dense.weight.detach(), exp_w)
    assert torch.equal(
        layer.attention.output.dense.bias.detach(), g1 * sd["blocks.1.attn.proj.bias"].double()
    )
    assert torch.equal(
        layer.output.dense.weight.detach(), g2[:, None] * sd["blocks.1.mlp.fc2.weight"].double()
    )
    assert torch.equal(layer.output.dense.bias.detach(), g2 * sd["blocks.1.mlp.fc2.bias"].double())
    # the gammas matter: the same weights with layer scale dropped give other logits
    plain = {k: v for k, v in sd.items() if "gamma" not in k}
    other = videomae_from_zoo_state_dict(plain, num_heads=4, num_frames=4, image_size=56, dtype=torch.float64)
    assert (_hf_logits(other, clips) - ref).abs().max() > 1e-2
    # folding alone, on the zoo keys: no gamma left, nothing else touched, input not modified
    folded = fold_layer_scale(sd)
    assert "blocks.0.gamma_1" in sd and not any("gamma" in k for k in folded)
    assert folded["blocks.0.norm1.weight"] is sd["blocks.0.norm1.weight"]
    assert folded["blocks.0.attn.proj.weight"].dtype == torch.float32
    assert fold_layer_scale(sd, torch.float64)["blocks.0.attn.proj.weight"].dtype == torch.float64


def test_released_sizes_inferred_from_registry_shapes():
    shapes = _registry_shapes()
    expect = {  # name -> (width, depth, heads, mlp, patch, classes)
        "vit_giant_patch14_224/400": (1408, 40, 16, 6144, 14, 400),
        "vit_giant_patch14_224/710": (1408, 40, 16, 6144, 14, 710),
        "vit_giant_patch14_224/174": (1408, 40, 16, 6144, 14, 174),
        "vit_small_patch16_224/710": (384, 12, 6, 1536, 16, 710),
        "vit_base_patch16_224/710": (768, 12, 12, 3072, 16, 710),
    }
    assert set(shapes) == set(expect)
    for name, sizes in expect.items():
        sd = {k: torch.empty(s, device="meta") for k, s in shapes[name].items()}
        assert missing_zoo_keys(sd) == []
        c = zoo_config(sd)  # heads from the standard table
        got = (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size)
        assert got + (c.patch_size, c.num_labels) == sizes, name
        assert (c.image_size, c.num_frames, c.tubelet_size, c.use_mean_pooling, c.qv_bias) == (
            224,
            16,
            2,
            True,
            True,
        )
        assert c.layer_norm_eps == 1e-6
    # the presets are these models (v2-g: K400 head; distilled v2-s / v2-b: K710 head)
    for preset, name in [
        ("videomae-v2-g", "vit_giant_patch14_224/400"),
        ("videomae-v2-s", "vit_small_patch16_224/710"),
        ("videomae-v2-b", "vit_base_patch16_224/710"),
    ]:
        model = load_model(preset, weights=False).model  # meta device
        sd = {k: torch.empty(s, device="meta") for k, s in shapes[name].items()}
        want = zoo_config(sd)
        for field in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "patch_size",
            "image_size",
            "num_frames",
            "tubelet_size",
            "use_mean_pooling",
            "qv_bias",
            "num_labels",
            "layer_norm_eps",
        ):
            assert getattr(model.config, field) == getattr(want, field), (preset, field)


def test_sta_on_converted_v2_model(tmp_path):
    sd, _, _, _ = _reference("g14")
    # 8 frames (T0 = 4 slots of 4 x 4 patches): the paper schedule needs T0 divisible by 4
    model = load_videomae_zoo(_save(tmp_path, sd), num_heads=4, num_frames=8, image_size=56)
    x = torch.randn(2, 8, 3, 56, 56, generator=torch.Generator().manual_seed(3))
    before = _hf_logits(model, x.transpose(1, 2))
    stprune.patch(model, r=3)
    after = _hf_logits(model, x.transpose(1, 2))
    info, trace = stprune.patch_info(model), stprune.last_trace(model)
    assert info.plan.tokens_per_block == trace.tokens_per_block == [64, 52, 46]
    assert [s.r for s in info.stages] == [3, 3, 3] and info.flops_ratio < 1
    assert after.shape == before.shape and not torch.allclose(after, before)
    stprune.unpatch(model)
    assert torch.equal(_hf_logits(model, x.transpose(1, 2)), before)


def test_missing_keys_named_in_one_line(tmp_path):
    sd, _, _, _ = _reference("g14")
    broken = {
        k: v for k, v in sd.items() if k not in ("blocks.1.mlp.fc2.bias", "fc_norm.bias", "blocks.2.gamma_2")
    }
    assert missing_zoo_keys(broken) == ["blocks.1.mlp.fc2.bias", "blocks.2.gamma_2", "fc_norm.bias"]
    with pytest.raises(InputError) as err:
        load_videomae_zoo(_save(tmp_path, broken), num_heads=4)
    msg = str(err.value)
    assert "\n" not in msg
    for key in ("blocks.1.mlp.fc2.bias", "blocks.2.gamma_2", "fc_norm.bias"):
        assert key in msg
    # the CLI's resolver gives the same error
    with pytest.raises(InputError, match="fc_norm.bias"):
        resolve_model(str(tmp_path / "checkpoint.pth"), num_heads=4)


def test_heads_override_and_table():
    sd, clips, ref, _ = _reference("g14")
    with pytest.raises(InputError, match="num-heads"):  # width 44 is no released size
        zoo_config(fold_layer_scale(sd))
    right = videomae_from_zoo_state_dict(sd, num_heads=4, num_frames=4, image_size=56, dtype=torch.float64)
    wrong = videomae_from_zoo_state_dict(sd, num_heads=2, num_frames=4, image_size=56, dtype=torch.float64)
    assert right.config.num_attention_heads == 4 and wrong.config.num_attention_heads == 2
    assert (_hf_logits(right, clips) - ref).abs().max() < 1e-9
    assert (_hf_logits(wrong, clips) - ref).abs().max() > 1e-3


def test_cosine_attention_refused():
    sd, _, _, _ = _reference("s16")
    cos = dict(sd, **{f"blocks.{i}.attn.scale": torch.zeros(4, 1, 1) for i in range(2)})
    with pytest.raises(UnsupportedModelError, match="cos_attn"):
        videomae_from_zoo_state_dict(cos, num_heads=4, num_frames=4, image_size=32)


def test_compiled_model_prefix_stripped(tmp_path):
    sd, clips, ref, _ = _reference("s16")
    path = _save(tmp_path, {"_orig_mod." + k: v for k, v in sd.items()}, wrapper="model")
    model = load_videomae_zoo(path, num_heads=4, num_frames=4, image_size=32, dtype=torch.float64)
    assert (_hf_logits(model, clips) - ref).abs().max() < 1e-9


def test_flops_cli_on_giant_preset(tmp_path, capsys):
    from stprune.cli import main

    out = tmp_path / "flops.json"
    assert main(["flops", "--model", "videomae-v2-g", "--r", "64", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "videomae-v2-g" in text and "8 temporal slots x 256 tokens" in text
