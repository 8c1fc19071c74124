"""VideoMAE model-zoo .pth -> HF conversion, checked against a hand-written zoo forward pass."""

import argparse
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from stprune.architectures.loading import resolve_model
from stprune.architectures.videomae_zoo import (
    convert_zoo_state_dict,
    load_videomae_zoo,
    load_zoo_checkpoint,
    videomae_from_zoo_state_dict,
    zoo_config,
)


def _zoo_state_dict(
    width=32, depth=2, heads=2, classes=5, tubelet=2, patch=8, mlp=64, seed=0, mean_pool=True
):
    """A zoo-layout state dict (modeling_finetune.VisionTransformer key names), random weights."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "patch_embed.proj.weight": rnd(width, 3, tubelet, patch, patch, scale=0.05),
        "patch_embed.proj.bias": rnd(width),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "norm1.weight": 1 + rnd(width),
                p + "norm1.bias": rnd(width),
                p + "attn.q_bias": rnd(width),
                p + "attn.v_bias": rnd(width),
                p + "attn.qkv.weight": rnd(3 * width, width),
                p + "attn.proj.weight": rnd(width, width),
                p + "attn.proj.bias": rnd(width),
                p + "norm2.weight": 1 + rnd(width),
                p + "norm2.bias": rnd(width),
                p + "mlp.fc1.weight": rnd(mlp, width),
                p + "mlp.fc1.bias": rnd(mlp),
                p + "mlp.fc2.weight": rnd(width, mlp),
                p + "mlp.fc2.bias": rnd(width),
            }
        )
    norm = "fc_norm" if mean_pool else "norm"
    sd.update(
        {
            norm + ".weight": 1 + rnd(width),
            norm + ".bias": rnd(width),
            "head.weight": rnd(classes, width),
            "head.bias": rnd(classes),
        }
    )
    return sd


def _sinusoid(n, d):
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(d, dtype=torch.float64)
    angle = pos / torch.pow(
        torch.tensor(10000.0, dtype=torch.float64), 2 * torch.div(j, 2, rounding_mode="floor") / d
    )
    return torch.where(j % 2 == 0, torch.sin(angle), torch.cos(angle))


def _zoo_forward(sd, x, heads, eps=1e-6, mean_pool=True):
    """The zoo ViT's math written out: x (B, C, T, H, W) float64 -> logits."""
    sd = {k: v.double() for k, v in sd.items()}
    w = sd["patch_embed.proj.weight"]
    t = w.shape[2]
    tokens = F.conv3d(x, w, sd["patch_embed.proj.bias"], stride=(t, w.shape[3], w.shape[4]))
    tokens = tokens.flatten(2).transpose(1, 2)  # (B, N, D)
    b, n, d = tokens.shape
    h = tokens + _sinusoid(n, d).float().double()  # the zoo stores its table in float32
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(h, (d,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps)
        bias = torch.cat([sd[p + "attn.q_bias"], torch.zeros(d, dtype=torch.float64), sd[p + "attn.v_bias"]])
        qkv = (
            (y @ sd[p + "attn.qkv.weight"].T + bias)
            .reshape(b, n, 3, heads, d // heads)
            .permute(2, 0, 3, 1, 4)
        )
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (d // heads) ** -0.5) @ k.transpose(-2, -1)
        o = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
        h = h + o @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        y = F.layer_norm(h, (d,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
        y = F.gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        h = h + y @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    if mean_pool:
        feat = F.layer_norm(h.mean(1), (d,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps)
    else:
        feat = F.layer_norm(h, (d,), sd["norm.weight"], sd["norm.bias"], eps)[:, 0]
    return feat @ sd["head.weight"].T + sd["head.bias"]


@pytest.mark.parametrize("mean_pool", [True, False])
def test_converted_logits_equal_zoo_forward(mean_pool):
    sd = _zoo_state_dict(mean_pool=mean_pool)
    model = videomae_from_zoo_state_dict(sd, num_heads=2, num_frames=4, image_size=16).double()
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.num_labels) == (32, 2, 64, 5)
    assert (cfg.patch_size, cfg.tubelet_size, cfg.qv_bias, cfg.use_mean_pooling) == (8, 2, True, mean_pool)
    x = torch.randn(3, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        hf = model(pixel_values=x.transpose(1, 2)).logits  # HF takes (B, T, C, H, W)
    ref = _zoo_forward(sd, x, heads=2, mean_pool=mean_pool)
    assert torch.allclose(hf, ref, rtol=0, atol=1e-10), (hf - ref).abs().max()
    # and the heads matter: a wrong head count gives other logits
    wrong = videomae_from_zoo_state_dict(sd, num_heads=4, num_frames=4, image_size=16).double()
    with torch.no_grad():
        assert not torch.allclose(wrong(pixel_values=x.transpose(1, 2)).logits, ref, atol=1e-6)


def test_qkv_split_goes_to_query_key_value():
    sd = _zoo_state_dict()
    hf = convert_zoo_state_dict(sd)
    qkv = sd["blocks.1.attn.qkv.weight"]
    pre = "videomae.encoder.layer.1.attention.attention."
    assert torch.equal(hf[pre + "query.weight"], qkv[:32])
    assert torch.equal(hf[pre + "key.weight"], qkv[32:64])
    assert torch.equal(hf[pre + "value.weight"], qkv[64:])
    assert torch.equal(hf[pre + "query.bias"], sd["blocks.1.attn.q_bias"])
    assert pre + "key.bias" not in hf


def test_heads_from_standard_table_and_errors():
    sd = _zoo_state_dict(width=384, depth=1, heads=6, mlp=16)
    assert zoo_config(sd).num_attention_heads == 6
    assert zoo_config(sd, num_heads=12).num_attention_heads == 12
    odd = _zoo_state_dict(width=48, depth=1)
    with pytest.raises(ValueError, match="standard table"):
        zoo_config(odd)
    with pytest.raises(ValueError, match="num_heads=5 must"):
        zoo_config(odd, num_heads=5)
    bad = dict(sd, **{"blocks.0.gamma_1": torch.ones(384)})
    with pytest.raises(NotImplementedError, match="layer scale"):
        zoo_config(bad)
    with pytest.raises(ValueError, match="not understood"):
        convert_zoo_state_dict(dict(sd, **{"dist_token": torch.ones(1)}))


def test_pth_wrapped_module_prefixed_with_args(tmp_path):
    sd = _zoo_state_dict()
    args = argparse.Namespace(num_frames=4, input_size=16, model="vit_tiny")
    path = tmp_path / "checkpoint.pth"
    torch.save({"module": {"module." + k: v for k, v in sd.items()}, "args": args, "epoch": 3}, path)
    loaded, saved = load_zoo_checkpoint(path)
    assert set(loaded) == set(sd) and saved["num_frames"] == 4
    model = load_videomae_zoo(path, num_heads=2)
    assert (model.config.num_frames, model.config.image_size) == (4, 16)
    # through the eval model resolver too: float32 logits close to the float64 reference
    resolved = resolve_model(str(path), num_heads=2)
    assert resolved.preprocessing.image_size == 16 and resolved.preprocessing.num_frames == 4
    assert resolved.clip == "4 frames x 16x16"  # from the saved args
    x = torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = resolved.logits(x)
    ref = _zoo_forward(sd, x.transpose(1, 2).double(), heads=2)
    assert torch.allclose(out.double(), ref, atol=1e-4)
    assert math.isclose(model.fc_norm.eps, 1e-6)


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": _zoo_state_dict(), "extra": _Opaque()}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_zoo_checkpoint(path)


class _Opaque:
    pass


def test_model_resolution_errors(tmp_path, monkeypatch):
    from stprune.errors import StpruneError  # a user's mistake: one line from the CLI, exit code 2

    with pytest.raises(StpruneError, match="no such file or directory"):
        resolve_model(str(tmp_path / "nope"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(StpruneError, match="no config.json"):
        resolve_model(str(tmp_path / "empty_dir"))
    import transformers

    def offline(*args, **kwargs):  # stands in for the hub: tests never reach the network
        raise OSError("offline")

    monkeypatch.setattr(transformers.AutoModelForVideoClassification, "from_pretrained", offline)
    import stprune.architectures.loading as loading

    monkeypatch.setattr(loading, "hub_reachable", lambda: True)
    with pytest.raises(StpruneError, match="cannot load it from the Hugging Face hub"):
        resolve_model("some-owner/some-model")
    # no route to the hub: the cache alone, and a message that says so
    seen = {}

    def cache_only(source, **kwargs):
        seen.update(kwargs)
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoModelForVideoClassification, "from_pretrained", cache_only)
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    with pytest.raises(
        StpruneError, match="cannot be reached from this machine and the model is not in the local"
    ):
        resolve_model("some-owner/some-model")
    assert seen == {"local_files_only": True}
    monkeypatch.undo()  # the real check: HF_HUB_OFFLINE means no hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.hub_reachable() is False
    swin = tmp_path / "swin.pth"
    torch.save({"layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(3, 2)}, swin)
    # recognised as Video Swin by its keys, then refused by the Swin loader as incomplete
    with pytest.raises(StpruneError, match="not a Video Swin checkpoint"):
        resolve_model(str(swin))
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(StpruneError, match="match neither"):
        resolve_model(str(other))
    with pytest.raises(StpruneError, match="for checkpoint files"):
        resolve_model(str(other), num_heads=2)


def test_demo_model_resolves_with_its_own_normalisation():
    from stprune.demo import load_demo_info

    resolved = resolve_model("demo")
    info = load_demo_info()
    assert resolved.preprocessing.mean == tuple(info.mean)
    assert resolved.preprocessing.std == tuple(info.std)
    assert resolved.preprocessing.num_frames == resolved.model.config.num_frames == 16
    assert resolved.preprocessing.image_size == 96


@pytest.fixture(scope="module")
def swin_t_checkpoint(tmp_path_factory):
    """A real Swin-T checkpoint in torchvision's layout (random weights, 3 classes)."""
    from stprune.architectures.video_swin.weights import export_state_dict
    from stprune.models import video_swin_t

    torch.manual_seed(0)
    model = video_swin_t(num_classes=3).eval()
    path = tmp_path_factory.mktemp("swin") / "swin3d_t.pth"
    torch.save(export_state_dict(model, "torchvision"), path)
    return path, model


def test_video_swin_checkpoint_resolves_with_its_test_clip(swin_t_checkpoint):
    import stprune

    ckpt, original = swin_t_checkpoint
    resolved = resolve_model(str(ckpt))
    pre = resolved.preprocessing
    assert (pre.layout, pre.num_frames, pre.image_size) == ("BCTHW", 32, 224)
    assert (resolved.model.config.num_frames, resolved.model.config.image_size) == (32, (224, 224))
    # 32, not the 16 of the presets: said, with why (what the CLI prints above its tables)
    assert resolved.clip.startswith("32 frames x 224x224 (32 frames: Video Swin's Kinetics-400 test clip")
    assert "presets and video_swin_t() are set up for 16" in resolved.clip
    views = torch.randn(2, 4, 3, 32, 32)  # eval hands (B, T, C, H, W) views
    with torch.no_grad():
        assert torch.equal(resolved.logits(views), original(views.transpose(1, 2)))
    # pruning plans refer to the clip the model is set up for: 32 frames -> 16 temporal slots
    stprune.patch(resolved.model, r=8)
    assert stprune.patch_info(resolved.model).plan.tokens_per_block[0] == 16 * 56 * 56
    small = resolve_model(str(ckpt), num_frames=8, image_size=64)
    assert (small.preprocessing.num_frames, small.preprocessing.image_size) == (8, 64)
    assert small.model.config.num_frames == 8
    assert small.clip == "8 frames x 64x64"  # given: nothing to explain
    with pytest.raises(ValueError, match="--num-heads 4: Video Swin checkpoints take --num-frames and"):
        resolve_model(str(ckpt), num_heads=4)


def test_local_dir_preprocessing(tmp_path):
    import json

    from eval_utils import save_tiny_videomae

    d = save_tiny_videomae(tmp_path / "m", frames=4, image_size=32)
    pre = resolve_model(str(d)).preprocessing
    assert (pre.image_size, pre.num_frames, pre.layout) == (32, 4, "BTCHW")
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)  # VideoMAE defaults
    (d / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.25] * 3})
    )
    pre = resolve_model(str(d)).preprocessing
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.25, 0.25, 0.25)


@pytest.mark.parametrize("name", ["VivitImageProcessor", "VideoMAEImageProcessor"])
def test_processor_rescale_is_folded_into_mean_and_std(name):
    """eval's (x / 255 - mean) / std equals the HF processor's rescale + normalise exactly:
    ViViT rescales by 1/127.5 and subtracts 1 before its 0.5/0.5 normalisation ([-3, 1])."""
    import numpy as np
    import transformers

    from stprune.architectures.loading import preprocessing_from_config
    from stprune.eval.transforms import normalize

    class Config:
        image_size, num_frames = 8, 2

    video = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "requires torchvision": the PIL implementation is used
        proc = getattr(transformers, name)(do_resize=False, do_center_crop=False)
        ref = proc([list(video)], return_tensors="pt")["pixel_values"][0]  # (T, C, H, W)
    pre = preprocessing_from_config(Config, proc.to_dict())
    ours = normalize(torch.from_numpy(video).permute(0, 3, 1, 2), pre.mean, pre.std)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    if name.startswith("Vivit"):
        assert float(ref.min()) < -1.5  # the offset matters: not the [-1, 1] of x / 255 with 0.5/0.5


def test_vivit_video_processor_and_plain_configs():
    from stprune.architectures.loading import preprocessing_from_config

    class Config:
        image_size, num_frames = 8, 2

    half = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    video = preprocessing_from_config(Config, {"video_processor_type": "VivitVideoProcessor", **half})
    assert video.mean == (0.75,) * 3 and video.std == (0.25,) * 3  # x/127.5 - 1, then 0.5/0.5
    plain = preprocessing_from_config(Config, {"rescale_factor": 1 / 255, **half})
    assert plain.mean == (0.5,) * 3 and plain.std == (0.5,) * 3  # unchanged, bit for bit
    raw = preprocessing_from_config(Config, {"do_rescale": False, "do_normalize": False})
    assert raw.mean == (0.0,) * 3 and raw.std == (1 / 255,) * 3  # the model gets 0..255
