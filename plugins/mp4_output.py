"""Output ``mp4``: the animation as an H.264 MP4 that common players open."""
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

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass
class Mp4Params:
    fps: float = 0.0  # 0: the animation's fps
    crf: int = 18  # x264 quality: 0 lossless .. 51 worst; about 18 looks lossless
    preset: str = "medium"  # x264 speed/size trade-off: ultrafast .. veryslow

    def __post_init__(self):
        if not math.isfinite(self.fps) or self.fps < 0:
            raise ValueError(f"fps: must be 0 (the animation's) or a positive number (got {self.fps})")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf: must be in 0..51 (got {self.crf})")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset: unknown {self.preset!r} (valid: {', '.join(X264_PRESETS)})")


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad an [H, W, 3] frame by repeating its last row / column to even sides (yuv420p needs them)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_mp4(path, frames: list, fps: float, crf: int = 18, preset: str = "medium") -> None:
    """Frames (PIL images or [H, W, 3] uint8 arrays) as H.264 (libx264, yuv420p,
    faststart) in an MP4 container, with imageio-ffmpeg's own ffmpeg."""
    import imageio_ffmpeg

    arrays = [even_frame(np.asarray(f, dtype=np.uint8)) for f in frames]
    h, w = arrays[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
        quality=None, macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", str(crf), "-preset", preset, "-movflags", "+faststart", "-f", "mp4"])
    writer.send(None)  # start ffmpeg
    try:
        for frame in arrays:
            writer.send(frame)
    finally:
        writer.close()


class Mp4Output(Output):
    """Writes ``<name>.mp4`` (never replacing an existing file): H.264 (libx264),
    yuv420p, even width and height (an odd side gets its last row or column
    repeated), at the animation's fps; plays in browsers, QuickTime, VLC."""

    name = "mp4"
    version = pixloom.__version__
    Params = Mp4Params

    def on_end(self, state, result) -> list:
        frames = result_frames(result)
        fps = self.params.fps or result_fps(result)
        stem = self.ctx.extra.get("stem", "render")

        def write(tmp):
            try:
                write_mp4(tmp, frames, fps, self.params.crf, self.params.preset)
            except (RuntimeError, BrokenPipeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise OutputError(f"mp4: ffmpeg could not encode {stem}.mp4: {first}") from exc

        return [write_new(self.ctx.out_dir, stem, ".mp4", write)]


@hookimpl
def pixloom_register_outputs():
    return [Mp4Output]
