"""The 2D camera that moves each animation frame before it is refined (kornia).

One move is a zoom about the image centre, a rotation about it and a shift,
applied as one affine warp with border padding (edge pixels are repeated into
the area the move uncovers):

- ``zoom``: scale factor; above 1 enlarges the centre (the camera moves in),
  below 1 shrinks the picture (the camera moves out).
- ``angle``: degrees; positive turns the picture counter-clockwise.
- ``translate_x`` / ``translate_y``: how far the picture moves; positive x moves
  it right, positive y moves it down. In pixels (``units: px``) or as a
  fraction of the image's width and height (``units: fraction``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Move:
    """One frame's camera move."""

    zoom: float = 1.0
    angle: float = 0.0
    translate_x: float = 0.0
    translate_y: float = 0.0
    units: str = "px"  # px | fraction

    @property
    def identity(self) -> bool:
        return self.zoom == 1 and self.angle == 0 and self.translate_x == 0 and self.translate_y == 0

    def shift_pixels(self, width: int, height: int) -> tuple:
        if self.units == "fraction":
            return self.translate_x * width, self.translate_y * height
        return self.translate_x, self.translate_y


def affine_matrix(move: Move, width: int, height: int, device=None) -> torch.Tensor:
    """The [1, 2, 3] matrix that maps source pixels to where the move puts them."""
    from kornia.geometry.transform import get_rotation_matrix2d

    center = torch.tensor([[(width - 1) / 2, (height - 1) / 2]], device=device)
    angle = torch.tensor([float(move.angle)], device=device)
    scale = torch.full((1, 2), float(move.zoom), device=device)
    matrix = get_rotation_matrix2d(center, angle, scale)
    dx, dy = move.shift_pixels(width, height)
    matrix[..., 0, 2] += dx
    matrix[..., 1, 2] += dy
    return matrix


def apply_move(image: torch.Tensor, move: Move) -> torch.Tensor:
    """``image`` ([1, 3, H, W], 0..1) seen through ``move``; a copy, exact when the move is none."""
    if move.identity:
        return image.clone()
    from kornia.geometry.transform import warp_affine

    height, width = image.shape[-2:]
    matrix = affine_matrix(move, width, height, device=image.device).to(image.dtype)
    moved = warp_affine(image, matrix, (height, width), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return moved.clamp(0, 1)
