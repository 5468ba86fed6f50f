"""Perceptor ``clip``: OpenAI's CLIP model code, with any CLIP weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import pixloom
from pixloom.clip_loading import load_clip
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Perceptor


@dataclass
class ClipParams:
    model: str = "shapes-clip"  # an embedded model name or a path to a CLIP weights file


class ClipPerceptor(Perceptor):
    """CLIP (OpenAI's model code) embedding crops and prompts into one space.

    ``model`` names an embedded model (``shapes-clip``, trained by pixloom on the
    shapes world) or a file: pixloom .safetensors or a CLIP state dict.
    Images are normalised with the model's own mean and std.
    """

    name = "clip"
    version = pixloom.__version__
    Params = ClipParams

    def __init__(self, params: ClipParams, ctx):
        super().__init__(params, ctx)
        loaded = self._load(params)
        self.model = loaded.model.requires_grad_(False)
        self.tokenizer = loaded.tokenizer
        self.register_buffer("mean", torch.tensor(loaded.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(loaded.std).view(1, 3, 1, 1), persistent=False)
        self.input_size = int(self.model.visual.input_resolution)
        # a ResNet image tower runs about 30% faster on the CPU in channels-last layout
        # (BENCHMARKS.md, Performance); a ViT has one convolution, so it is left as it is
        self.channels_last = type(self.model.visual).__name__ == "ModifiedResNet"
        if self.channels_last:
            self.model.visual.to(memory_format=torch.channels_last)

    def _load(self, params: ClipParams):
        """The model, tokenizer and normalisation (a subclass may build them otherwise)."""
        return load_clip(params.model)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.encode_image(x).float()

    @torch.no_grad()
    def encode_text(self, texts: list) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.mean.device)
        return self.model.encode_text(tokens).float()


@hookimpl
def pixloom_register_perceptors():
    return [ClipPerceptor]
