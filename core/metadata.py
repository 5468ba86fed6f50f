"""Reading the recipe pixloom stores in its PNGs."""
from __future__ import annotations

from pathlib import Path

import yaml

from .errors import PixloomError

PRESET_KEY = "pixloom:preset"


def read_png_text(path) -> dict:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PixloomError(f"--from {path}: no such file" if not path.exists() else f"--from {path}: not a file")
    try:
        with Image.open(path) as im:
            im.load()
            return dict(getattr(im, "text", {}) or {})
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PixloomError(f"--from {path}: not a readable PNG ({exc})") from exc


def preset_from_png(path) -> dict:
    """The fully resolved preset stored in a pixloom PNG, as a dict."""
    text = read_png_text(path)
    if PRESET_KEY not in text:
        raise PixloomError(f"--from {path}: no pixloom recipe in this image (was it made by pixloom with metadata on?)")
    try:
        data = yaml.safe_load(text[PRESET_KEY])
    except yaml.YAMLError as exc:
        raise PixloomError(f"--from {path}: the stored recipe is not valid YAML") from exc
    if not isinstance(data, dict):
        raise PixloomError(f"--from {path}: the stored recipe is not a preset")
    return data
