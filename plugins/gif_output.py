"""Output ``gif``: the animation as a looping animated GIF (imageio, Pillow)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import pixloom
from pixloom.animate import result_fps, result_frames
from pixloom.errors import OutputError
from pixloom.files import write_new
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Output


@dataclass
class GifParams:
    fps: float = 0.0  # 0: the animation's fps
    loop: int = 0  # times to play; 0: forever

    def __post_init__(self):
        if not math.isfinite(self.fps) or self.fps < 0:
            raise ValueError(f"fps: must be 0 (the animation's) or a positive number (got {self.fps})")
        if self.loop < 0:
            raise ValueError(f"loop: must be 0 (forever) or a positive count (got {self.loop})")


def write_gif(path, frames: list, fps: float, loop: int = 0) -> None:
    """Frames (PIL images or [H, W, 3] uint8 arrays) as an animated GIF. GIF times
    frames in hundredths of a second, so the rate is rounded to that; Pillow
    merges a frame identical to the one before into it (a longer frame)."""
    import imageio.v3 as iio

    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])
    duration = round(100 / fps) * 10  # ms, a multiple of GIF's 10 ms tick
    iio.imwrite(path, stack, plugin="pillow", extension=".gif", duration=max(duration, 10), loop=loop)


class GifOutput(Output):
    """Writes ``<name>.gif`` (never replacing an existing file) at the animation's
    fps, looping forever unless ``loop`` says otherwise. A still is a one-frame GIF."""

    name = "gif"
    version = pixloom.__version__
    Params = GifParams

    def on_end(self, state, result) -> list:
        frames = result_frames(result)
        fps = self.params.fps or result_fps(result)
        stem = self.ctx.extra.get("stem", "render")

        def write(tmp):
            try:
                write_gif(tmp, frames, fps, self.params.loop)
            except (ValueError, RuntimeError) as exc:
                raise OutputError(f"gif: cannot encode {stem}.gif: {exc}") from exc

        return [write_new(self.ctx.out_dir, stem, ".gif", write)]


@hookimpl
def pixloom_register_outputs():
    return [GifOutput]
