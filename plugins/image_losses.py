"""Losses on the image itself: ``smoothness``, ``saturation`` and ``symmetry``."""
from __future__ import annotations

from dataclasses import dataclass

import torch

import pixloom
from pixloom.hookspecs import hookimpl
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


@hookimpl
def pixloom_register_losses():
    return [SmoothnessLoss, SaturationLoss, SymmetryLoss]
