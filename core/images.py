"""Reading images a user points at (init images, image prompts) with one-line errors,
and fitting decoded images to a render's size."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import PixloomError


def load_image(path, size: tuple | None = None) -> torch.Tensor:
    """An image file as [1, 3, H, W] float in 0..1, resized to ``size`` = (width, height)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise PixloomError(f"image {path}: is a directory, not an image file")
    if not path.exists():
        raise PixloomError(f"image {path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGB")
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), Image.Resampling.LANCZOS)
            array = np.asarray(im, dtype=np.float32) / 255.0
    except PermissionError as exc:
        raise PixloomError(f"image {path}: not readable (permission denied)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PixloomError(f"image {path}: not a readable image ({exc})") from exc
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def check_rgb(values, name: str = "init_color") -> None:
    """Raise ValueError unless ``values`` is three numbers in 0..1."""
    if len(values) != 3 or not all(0.0 <= float(c) <= 1.0 for c in values):
        raise ValueError(f"{name}: must be three numbers in 0..1 (got {list(values)})")


def flat_image(rgb, size: tuple) -> torch.Tensor:
    """[1, 3, H, W] of one colour; ``size`` is (width, height)."""
    return torch.tensor([float(c) for c in rgb], dtype=torch.float32).view(1, 3, 1, 1).expand(
        1, 3, size[1], size[0]).contiguous()


def check_scale(upscale: int, supersample: int, both: bool = False) -> None:
    """A token generator's ``upscale`` and ``supersample``: each 1..8, at most one
    above 1 unless ``both`` (an option of the generator makes them meaningful together)."""
    for name, value in (("upscale", upscale), ("supersample", supersample)):
        if not isinstance(value, int) or not 1 <= value <= 8:
            raise ValueError(f"{name}: must be a whole number between 1 and 8 (got {value!r})")
    if upscale > 1 and supersample > 1 and not both:
        raise ValueError(f"upscale and supersample: one of them must be 1 (got {upscale} and {supersample})")


def token_grid(height: int, width: int, factor: int, upscale: int = 1, supersample: int = 1) -> tuple:
    """(rows, columns) of a latent grid whose decoded image, ``factor`` pixels a
    cell, then ``upscale``-times enlarged or ``supersample``-times shrunk, covers
    height x width."""
    return (max(1, math.ceil(height * supersample / (factor * upscale))),
            max(1, math.ceil(width * supersample / (factor * upscale))))


def fit_decoded(image: torch.Tensor, height: int, width: int, upscale: int = 1, supersample: int = 1) -> torch.Tensor:
    """A decoder's output enlarged ``upscale`` times (bilinear), centre-cropped to
    height x width; with ``supersample``, cropped to that many times height x width
    and shrunk to it by averaging each supersample x supersample block (a factor
    common to both is neither: upscale 2 with supersample 2 is the decoded image)."""
    common = math.gcd(upscale, supersample)
    upscale, supersample = upscale // common, supersample // common
    if upscale > 1:
        image = F.interpolate(image, scale_factor=upscale, mode="bilinear", align_corners=False)
    h, w = image.shape[-2:]
    ch, cw = height * supersample, width * supersample
    top, left = (h - ch) // 2, (w - cw) // 2
    image = image[..., top: top + ch, left: left + cw]
    return F.avg_pool2d(image, supersample) if supersample > 1 else image
