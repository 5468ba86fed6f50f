"""Losses on the image itself: ``smoothness``, ``saturation``, ``symmetry`` and ``palette``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import torch

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.images import check_rgb
from pixloom.interfaces import Loss


@dataclass
class SmoothnessParams:
    norm: str = "l1"  # l1 | l2

    def __post_init__(self):
        if self.norm not in ("l1", "l2"):
            raise ValueError(f"norm: unknown {self.norm!r} (valid: l1, l2)")


class SmoothnessLoss(Loss):
    """Total variation: the mean difference between neighbouring pixels."""

    name = "smoothness"
    version = pixloom.__version__
    Params = SmoothnessParams

    def forward(self, inputs) -> torch.Tensor:
        x = inputs.image
        dx = x[..., :, 1:] - x[..., :, :-1]
        dy = x[..., 1:, :] - x[..., :-1, :]
        if self.params.norm == "l2":
            return dx.pow(2).mean() + dy.pow(2).mean()
        return dx.abs().mean() + dy.abs().mean()


@dataclass
class SaturationParams:
    target: float = 0.0  # saturation (max - min channel, 0..1) above which pixels are penalised

    def __post_init__(self):
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target: must be in 0..1 (got {self.target})")


class SaturationLoss(Loss):
    """Mean saturation above ``target``: a positive weight tones colours down,
    a negative one makes them more vivid."""

    name = "saturation"
    version = pixloom.__version__
    Params = SaturationParams

    def forward(self, inputs) -> torch.Tensor:
        x = inputs.image
        saturation = x.amax(dim=1) - x.amin(dim=1)
        return (saturation - self.params.target).clamp(min=0).mean()


@dataclass
class SymmetryParams:
    axis: str = "vertical"  # vertical (left = mirrored right) | horizontal (top = mirrored bottom)

    def __post_init__(self):
        if self.axis not in ("vertical", "horizontal"):
            raise ValueError(f"axis: unknown {self.axis!r} (valid: vertical, horizontal)")


class SymmetryLoss(Loss):
    """Mean absolute difference between the image and its mirror image."""

    name = "symmetry"
    version = pixloom.__version__
    Params = SymmetryParams

    def forward(self, inputs) -> torch.Tensor:
        x = inputs.image
        dim = -1 if self.params.axis == "vertical" else -2
        return (x - x.flip(dim)).abs().mean()


@dataclass
class PaletteParams:
    colors: int = 2  # how many colours the image should use, found afresh each step (k-medians)
    fixed: List[List[float]] = field(default_factory=list)  # or these RGB colours (0..1), fixed
    iterations: int = 8  # k-medians rounds a step
    ramp: float = 0.0  # fraction of the run over which the loss grows from 0 to full (0: full from the start)

    def __post_init__(self):
        if self.fixed:
            for k, rgb in enumerate(self.fixed):
                check_rgb(rgb, f"fixed[{k}]")
        elif not 2 <= self.colors <= 64:
            raise ValueError(f"colors: must be between 2 and 64 (got {self.colors})")
        if self.iterations < 1:
            raise ValueError(f"iterations: must be at least 1 (got {self.iterations})")
        if not 0.0 <= self.ramp <= 1.0:
            raise ValueError(f"ramp: must be in 0..1 (got {self.ramp})")


class PaletteLoss(Loss):
    """Mean squared distance of each pixel to the nearest colour of a small palette.

    The palette is ``fixed`` or, by default, the image's own ``colors`` main
    colours (k-medians on the detached image, seeded from its darkest and then
    farthest pixels, so the same image always gives the same palette; medians,
    not means, so that soft edges do not drag the colours toward each other). The
    gradient pulls every pixel to its nearest palette colour: regions flatten
    and edges turn crisp, as in flat-colour poster or pixel art. With ``ramp``
    the pull starts at 0 and grows over that fraction of the run, so shapes
    form before their edges are hardened.
    """

    name = "palette"
    version = pixloom.__version__
    Params = PaletteParams

    def __init__(self, params: PaletteParams, ctx):
        super().__init__(params, ctx)
        fixed = torch.tensor(params.fixed, dtype=torch.float32).reshape(-1, 3)
        self.register_buffer("fixed", fixed, persistent=False)

    @torch.no_grad()
    def palette(self, pixels: torch.Tensor) -> torch.Tensor:
        """[k, 3] colours for [n, 3] pixels."""
        if len(self.fixed):
            return self.fixed.to(pixels)
        k = min(self.params.colors, len(pixels))
        centres = [pixels[pixels.sum(1).argmin()]]
        nearest = (pixels - centres[0]).pow(2).sum(1)
        for _ in range(1, k):  # farthest-point seeding: deterministic, spreads the colours
            centres.append(pixels[nearest.argmax()])
            nearest = torch.minimum(nearest, (pixels - centres[-1]).pow(2).sum(1))
        centres = torch.stack(centres)
        for _ in range(self.params.iterations):  # k-medians: edge pixels do not pull a colour off
            assign = torch.cdist(pixels, centres).argmin(1)
            centres = torch.stack([pixels[assign == j].median(0).values if (assign == j).any() else centres[j]
                                   for j in range(k)])
        return centres

    def forward(self, inputs) -> torch.Tensor:
        x = inputs.image
        pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).float()
        centres = self.palette(pixels.detach())
        loss = torch.cdist(pixels, centres).pow(2).amin(1).mean()
        if self.params.ramp > 0:
            progress = inputs.step / max(1, inputs.total_steps - 1)
            loss = loss * min(1.0, progress / self.params.ramp)
        return loss


@hookimpl
def pixloom_register_losses():
    return [SmoothnessLoss, SaturationLoss, SymmetryLoss, PaletteLoss]
