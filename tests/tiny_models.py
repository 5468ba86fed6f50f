"""Tiny randomly initialised models for tests: real architectures, real file formats."""
from __future__ import annotations

from pathlib import Path

import torch

from pixloom.clip_compat import clip_model
from pixloom.denoiser import Denoiser, DenoiserConfig, save_denoiser
from pixloom.models import write_safetensors

TINY_VOCAB = ["<pad>", "<unk>", "a", "an", "red", "blue", "green", "yellow", "circle", "square",
              "star", "on", "background", "of", "picture", "<sot>", "<eot>"]


def tiny_clip(seed: int = 0, resolution: int = 32):
    """A randomly initialised ModifiedResNet CLIP with a word-level vocabulary."""
    torch.manual_seed(seed)
    model = clip_model().CLIP(embed_dim=32, image_resolution=resolution, vision_layers=(1, 1, 1, 1),
                              vision_width=8, vision_patch_size=None, context_length=12,
                              vocab_size=len(TINY_VOCAB), transformer_width=64, transformer_heads=1,
                              transformer_layers=1)
    return model


def save_tiny_clip(path: Path, seed: int = 0, resolution: int = 32) -> Path:
    model = tiny_clip(seed, resolution)
    write_safetensors(Path(path), model.state_dict(), {
        "format": "clip",
        "tokenizer": {"type": "word", "vocab": TINY_VOCAB, "context_length": 12},
        "normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
        "description": "tiny random CLIP for tests",
    })
    return Path(path)


TINY_DENOISER = DenoiserConfig(channels=(8, 16), embedding=8, resolution=16)
# conditioned on the embedded shapes-clip's 128-wide text embeddings
TINY_TEXT_DENOISER = DenoiserConfig(channels=(8, 16), embedding=8, resolution=16, condition=128,
                                    text_model="shapes-clip")


def save_tiny_denoiser(path: Path, seed: int = 0, config: DenoiserConfig = TINY_DENOISER) -> Path:
    """A randomly initialised world denoiser (two levels, 16 px) as a pixloom file."""
    torch.manual_seed(seed)
    save_denoiser(Denoiser(config), Path(path), "a tiny random denoiser", {})
    return Path(path)
