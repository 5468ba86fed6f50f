"""Augmentation ``cutouts``: random crops of several sizes, augmented in one batch (kornia)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Augmentation


@dataclass
class CutoutsParams:
    num: int = 32  # crops a step
    min_scale: float = 0.1  # smallest crop, as a fraction of the image's area
    max_scale: float = 1.0  # largest crop
    overview: int = 0  # of the crops, how many show the whole image
    flip_p: float = 0.5  # horizontal flips
    affine_p: float = 0.3  # small rotations, shifts and shears
    degrees: float = 10.0
    translate: float = 0.05
    perspective_p: float = 0.2
    distortion: float = 0.2
    jitter_p: float = 0.0  # colour jitter (keep hue 0 when prompts name colours)
    brightness: float = 0.05
    contrast: float = 0.05
    saturation: float = 0.05
    hue: float = 0.0
    noise_p: float = 0.5  # additive Gaussian noise
    noise_std: float = 0.05
    antialias: float = 0.0  # > 0: Gaussian blur before cropping, sigma = antialias x (image side / crop size)

    def __post_init__(self):
        if self.num < 1:
            raise ValueError(f"num: must be at least 1 (got {self.num})")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"min_scale/max_scale: need 0 < min_scale <= max_scale <= 1 "
                             f"(got {self.min_scale}, {self.max_scale})")
        if not 0 <= self.overview <= self.num:
            raise ValueError(f"overview: must be between 0 and num={self.num} (got {self.overview})")
        for name in ("flip_p", "affine_p", "perspective_p", "jitter_p", "noise_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: a probability must be in 0..1 (got {getattr(self, name)})")
        if self.antialias < 0:
            raise ValueError(f"antialias: must be >= 0 (got {self.antialias})")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue: must be in 0..0.5 (got {self.hue})")


class Cutouts(Augmentation):
    """``num`` random crops (area between ``min_scale`` and ``max_scale`` of the
    image, ``overview`` of them the whole image) resampled to the perceptors'
    input size, then flipped, warped, colour-jittered and noised, all in one
    batched kornia call. The same crops feed every perceptor in a step."""

    name = "cutouts"
    version = pixloom.__version__
    Params = CutoutsParams

    def __init__(self, params: CutoutsParams, ctx):
        super().__init__(params, ctx)
        p = params
        self._crops = {}
        post = [K.RandomHorizontalFlip(p=p.flip_p)]
        if p.affine_p > 0:
            post.append(K.RandomAffine(degrees=p.degrees, translate=(p.translate, p.translate),
                                       padding_mode="border", p=p.affine_p))
        if p.perspective_p > 0:
            post.append(K.RandomPerspective(distortion_scale=p.distortion, p=p.perspective_p))
        if p.jitter_p > 0:
            post.append(K.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue, p=p.jitter_p))
        if p.noise_p > 0:
            post.append(K.RandomGaussianNoise(std=p.noise_std, p=p.noise_p))
        self.post = torch.nn.Sequential(*post)

    def _crop(self, cut_size: int):
        if cut_size not in self._crops:
            self._crops[cut_size] = K.RandomResizedCrop(
                (cut_size, cut_size), scale=(self.params.min_scale, self.params.max_scale),
                cropping_mode="resample", p=1.0)
        return self._crops[cut_size]

    def forward(self, image: torch.Tensor, cut_size: int) -> torch.Tensor:
        n_over = self.params.overview
        n_crop = self.params.num - n_over
        parts = []
        if n_crop:
            source = image
            ratio = max(image.shape[-2:]) / cut_size
            if self.params.antialias > 0 and ratio > 1:
                # resampling crops down without a low-pass filter aliases: fine patterns
                # the perceptor cannot really see would still move its features
                sigma = self.params.antialias * ratio
                k = 2 * math.ceil(2 * sigma) + 1
                source = kornia.filters.gaussian_blur2d(image, (k, k), (sigma, sigma), border_type="reflect")
            parts.append(self._crop(cut_size)(source.expand(n_crop, -1, -1, -1)))
        if n_over:
            whole = F.interpolate(image, size=(cut_size, cut_size), mode="bilinear",
                                  align_corners=False, antialias=True)
            parts.append(whole.expand(n_over, -1, -1, -1))
        crops = torch.cat(parts) if len(parts) > 1 else parts[0]
        return self.post(crops).clamp(0, 1)


@hookimpl
def pixloom_register_augmentations():
    return [Cutouts]
