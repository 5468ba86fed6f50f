"""Real-size workloads with random weights for ``pixloom bench``: the published
shapes of OpenAI's CLIP ViT-B/32 and of taming-transformers' VQGAN
imagenet_f16_16384, as plugins that only the benchmark's plugin manager
registers (``bench-clip``, ``bench-vqgan``). Random weights cost the same time
as trained ones, and nothing is downloaded."""
from __future__ import annotations

from functools import lru_cache

import torch

from .hookspecs import hookimpl

# OpenAI's ViT-B/32 (clip.model.build_model reads these from the published state dict)
VIT_B32 = dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
               context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8,
               transformer_layers=12)

# model.params of taming's vqgan_imagenet_f16_16384 config (its lossconfig is never built)
IMAGENET_F16_16384 = {
    "embed_dim": 256,
    "n_embed": 16384,
    "ddconfig": {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
                 "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                 "dropout": 0.0},
}


@lru_cache(maxsize=None)
def _classes():
    from pixloom.plugins.clip_perceptor import ClipPerceptor
    from pixloom.plugins.vqgan import VQGANGenerator

    class RandomViTB32(ClipPerceptor):
        """CLIP with ViT-B/32's published shape and random weights (benchmarks only)."""

        name = "bench-clip"

        def _load(self, params):
            from .clip_compat import clip_model
            from .clip_loading import OPENAI_MEAN, OPENAI_STD, LoadedClip
            from .tokenizers import BPETokenizer

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = clip_model().CLIP(**VIT_B32).float().eval()
            return LoadedClip(model, BPETokenizer(VIT_B32["context_length"]), OPENAI_MEAN, OPENAI_STD,
                              "random ViT-B/32")

    class RandomImagenetVQGAN(VQGANGenerator):
        """VQGAN with imagenet_f16_16384's published shape and random weights (benchmarks only)."""

        name = "bench-vqgan"

        def _load_model(self, params, ctx):
            from .vqgan import VQGAN, VQGANConfig

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = VQGAN(VQGANConfig.from_dict(IMAGENET_F16_16384, "imagenet_f16_16384"))
            return model.eval().requires_grad_(False)

    return RandomViTB32, RandomImagenetVQGAN


@hookimpl
def pixloom_register_perceptors():
    return [_classes()[0]]


@hookimpl
def pixloom_register_generators():
    return [_classes()[1]]
