"""Generator ``pixel``: the image's own pixels are the parameters."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn.functional as F

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.images import check_rgb, flat_image, load_image
from pixloom.interfaces import Generator


@dataclass
class PixelParams:
    init: str = "noise"  # noise | flat | image
    init_color: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # flat: RGB in 0..1
    init_image: Optional[str] = None  # image: a file path
    noise_std: float = 0.15  # noise: spread around mid-grey (and added to flat/image inits)
    pixel_size: int = 1  # > 1: optimise a coarse grid shown with nearest-neighbour upscaling
    parametrization: str = "sigmoid"  # sigmoid (unbounded logits) | clamp (raw values kept in 0..1)
    levels: int = 1  # > 1: also optimise coarser grids (each half the last), upsampled and summed

    def __post_init__(self):
        if self.init not in ("noise", "flat", "image"):
            raise ValueError(f"init: unknown init {self.init!r} (valid: noise, flat, image)")
        if self.init == "image" and not self.init_image:
            raise ValueError("init_image: init: image needs init_image (a file path)")
        check_rgb(self.init_color)
        if self.pixel_size < 1:
            raise ValueError(f"pixel_size: must be at least 1 (got {self.pixel_size})")
        if self.noise_std < 0:
            raise ValueError(f"noise_std: must not be negative (got {self.noise_std})")
        if self.levels < 1 or self.levels > 8:
            raise ValueError(f"levels: must be between 1 and 8 (got {self.levels})")
        if self.parametrization not in ("sigmoid", "clamp"):
            raise ValueError(f"parametrization: unknown {self.parametrization!r} (valid: sigmoid, clamp)")


_EPS = 1e-3


class PixelGenerator(Generator):
    """A raw RGB image (optionally a coarse pixel-art grid) optimised directly.

    ``pixel_size`` > 1 optimises a grid of (W/pixel_size, H/pixel_size) cells shown
    with nearest-neighbour upscaling. ``parametrization: sigmoid`` keeps values in
    range smoothly; ``clamp`` optimises the values themselves. ``levels`` > 1 adds
    coarser grids (a Laplacian-pyramid-like parametrisation): each is upsampled
    bilinearly and added to the finest before the sigmoid, so one step can move a
    whole region, which keeps CLIP guidance from turning the image into noise.
    """

    name = "pixel"
    version = pixloom.__version__
    Params = PixelParams

    def __init__(self, params: PixelParams, ctx):
        super().__init__(params, ctx)
        ps = params.pixel_size
        self.grid = (max(1, round(self.height / ps)), max(1, round(self.width / ps)))
        rng = torch.Generator().manual_seed(ctx.seed)
        noise = torch.randn(1, 3, *self.grid, generator=rng) * params.noise_std
        if params.init == "noise":
            base = torch.full((1, 3, *self.grid), 0.5)
        elif params.init == "flat":
            base = flat_image(params.init_color, (self.grid[1], self.grid[0]))
        else:
            image = load_image(ctx.resolve_path(params.init_image), (self.width, self.height))
            base = F.interpolate(image, size=self.grid, mode="area")
        self.values = torch.nn.Parameter(self._to_param(base + noise))
        coarse = []
        for k in range(1, params.levels):
            shape = (max(1, self.grid[0] >> k), max(1, self.grid[1] >> k))
            coarse.append(torch.nn.Parameter(torch.zeros(1, 3, *shape)))
        self.coarse = torch.nn.ParameterList(coarse)

    def _to_param(self, rgb: torch.Tensor) -> torch.Tensor:
        rgb = rgb.clamp(_EPS, 1 - _EPS)
        return torch.logit(rgb) if self.params.parametrization == "sigmoid" else rgb.clone()

    def synth(self) -> torch.Tensor:
        x = self.values
        for level in self.coarse:
            x = x + F.interpolate(level, size=self.grid, mode="bilinear", align_corners=False)
        if self.params.parametrization == "sigmoid":
            x = torch.sigmoid(x)
        elif len(self.coarse):
            x = x.clamp(0, 1)
        if self.grid != (self.height, self.width):
            x = F.interpolate(x, size=(self.height, self.width), mode="nearest")
        return x

    @torch.no_grad()
    def init_from_image(self, image: torch.Tensor) -> None:
        image = image.to(self.values.device, self.values.dtype)
        self.values.copy_(self._to_param(F.interpolate(image, size=self.grid, mode="area")))
        for level in self.coarse:
            level.zero_()

    @torch.no_grad()
    def after_step(self) -> None:
        if self.params.parametrization == "clamp":
            self.values.clamp_(0, 1)


@hookimpl
def pixloom_register_generators():
    return [PixelGenerator]
