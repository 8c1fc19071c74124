"""The clip every command assumes: ``--num-heads`` / ``--num-frames`` / ``--image-size`` on flops,
bench, show and eval (one definition), the ``clip:`` line printed above every table, why a
checkpoint file's default clip is what it is, and one-line refusals naming the value."""

from __future__ import annotations

import torch


def test_fast_sinusoid_table_equals_transformers_bitwise():
    """Presets build VideoMAE's position table without transformers' Python loop (3 s for ViT-g,
    the bulk of `stprune flops --model videomae-v2-g` after the imports); the values are the same."""
    from transformers.models.videomae import modeling_videomae

    from stprune.architectures.presets import build_preset, sinusoid_table

    for n, d in [(1568, 384), (2048, 1408), (7, 5)]:
        assert torch.equal(sinusoid_table(n, d), modeling_videomae.get_sinusoid_encoding_table(n, d))
    original = modeling_videomae.get_sinusoid_encoding_table
    model = build_preset("videomae-s")
    assert modeling_videomae.get_sinusoid_encoding_table is original  # put back after the build
    table = model.videomae.embeddings.position_embeddings
    assert torch.equal(table, original(1568, 384))
