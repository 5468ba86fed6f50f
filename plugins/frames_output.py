"""Output ``frames``: every animation frame as a numbered PNG."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

import pixloom
from pixloom.files import atomic_write, make_new_dir
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Output
from pixloom.loop import to_pil
from pixloom.metadata import PRESET_KEY
from pixloom.plugins.png_output import save_png


@dataclass
class FramesParams:
    folder: str = "frames"  # a folder in the animation's own folder
    metadata: bool = True  # store the resolved preset, seed and frame index as PNG text

    def __post_init__(self):
        if not self.folder or Path(self.folder).is_absolute() or ".." in Path(self.folder).parts:
            raise ValueError(f"folder: must be a folder name inside the run's folder (got {self.folder!r})")


class FramesOutput(Output):
    """Writes ``frames/frame-00000.png``, ``frame-00001.png``... in the animation's
    folder as each frame is finished (an interrupted frame is rewritten, the same,
    on resume). For a still render, the image as ``<name>.frames/frame-00000.png``."""

    name = "frames"
    version = pixloom.__version__
    Params = FramesParams

    def _text(self, state, frame: int) -> dict:
        if not self.params.metadata:
            return {}
        text = {"pixloom:frame": str(frame), "pixloom:seed": str(state.seed),
                "Software": f"pixloom {pixloom.__version__}"}
        if state.preset is not None:
            text[PRESET_KEY] = OmegaConf.to_yaml(state.preset)
        return text

    def on_frame(self, state) -> None:
        folder = Path(self.ctx.out_dir) / self.params.folder
        folder.mkdir(parents=True, exist_ok=True)
        image, text = to_pil(state.image), self._text(state, state.frame)
        atomic_write(folder / f"frame-{state.frame:05d}.png", lambda tmp: save_png(image, tmp, text))

    def on_end(self, state, result) -> list:
        frames = getattr(result, "frames", None)
        if frames is None:  # a still: a folder of its own, never another run's
            folder = make_new_dir(self.ctx.out_dir, self.ctx.extra.get("stem", "render"), ".frames")
            text = self._text(state, 0)
            return [atomic_write(folder / "frame-00000.png", lambda tmp: save_png(result.image, tmp, text))]
        folder = Path(self.ctx.out_dir) / self.params.folder
        paths = [folder / f"frame-{i:05d}.png" for i in range(len(frames))]
        return [p for p in paths if p.is_file()]


@hookimpl
def pixloom_register_outputs():
    return [FramesOutput]
