"""What an animation saves after each frame so that an interrupted run goes on
exactly where it stopped.

A run's folder holds ``state/animation.safetensors`` (the generator's tensors
and the last complete frame as a float tensor, plus JSON metadata: the preset,
how many frames are complete, each frame's losses) and ``state/frame-NNNNN.png`` (every complete frame, lossless: what the
GIF, MP4 and contact-sheet outputs are given on resume). Each file is written
under a temporary name and renamed, and the .safetensors file is written last,
so it only ever counts frames whose files exist. Tensors and strings only:
loading runs no code.

No RNG state is saved: every frame re-seeds from (seed, frame index) and gets
a fresh optimiser, so the generator's tensors and the last frame (which the
camera moves into the next one's start) are all a frame needs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError
from .files import atomic_write

FORMAT = "pixloom-animation"
VERSION = 1
STATE_DIR = "state"
STATE_FILE = "animation.safetensors"
_META_KEY = "pixloom.animation"
_GENERATOR = "generator."
_LAST_FRAME = "last_frame"


def state_path(run_dir: Path) -> Path:
    return Path(run_dir) / STATE_DIR / STATE_FILE


def frame_path(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / STATE_DIR / f"frame-{index:05d}.png"


def save_frame(run_dir: Path, index: int, image) -> Path:
    """Keep frame ``index`` (a PIL image) for resuming."""
    path = frame_path(run_dir, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_state(run_dir: Path, generator, info: dict, last_frame=None) -> Path:
    """Write the generator's tensors, the last complete frame ([1, 3, H, W]) and
    ``info`` (JSON) as one file, atomically."""
    from safetensors.torch import save_file

    tensors = {_GENERATOR + k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    if last_frame is not None:
        tensors[_LAST_FRAME] = last_frame.detach().float().cpu().contiguous()
    meta = {_META_KEY: json.dumps({"format": FORMAT, "version": VERSION, **info})}
    path = state_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


@dataclass
class Checkpoint:
    """A loaded animation state."""

    path: Path  # the .safetensors file
    run_dir: Path
    info: dict
    tensors: dict

    @property
    def frames_done(self) -> int:
        return int(self.info["frames_done"])

    @property
    def last_frame(self):
        """The last complete frame as saved (float, [1, 3, H, W]), or None before frame 0 is done."""
        return self.tensors.get(_LAST_FRAME)

    def restore(self, generator) -> None:
        state = {k[len(_GENERATOR):]: v for k, v in self.tensors.items() if k.startswith(_GENERATOR)}
        try:
            generator.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"--resume {self.path}: does not match this preset's generator ({first})") from exc

    def load_frames(self) -> list:
        """The complete frames as PIL images."""
        from PIL import Image

        frames = []
        for index in range(self.frames_done):
            path = frame_path(self.run_dir, index)
            try:
                with Image.open(path) as im:
                    frames.append(im.convert("RGB"))
            except OSError as exc:
                raise CheckpointError(f"--resume {self.run_dir}: frame {index} is missing or unreadable "
                                      f"({path.name})") from exc
        return frames


def find_state(ref) -> tuple:
    """A run folder, its state folder or its state file -> (state file, run folder)."""
    ref = Path(ref).expanduser()
    if ref.is_dir():
        if state_path(ref).is_file():
            return state_path(ref), ref
        if (ref / STATE_FILE).is_file():
            return ref / STATE_FILE, ref.parent
    elif ref.is_file() and ref.name == STATE_FILE and ref.parent.name == STATE_DIR:
        return ref, ref.parent.parent
    if not ref.exists():
        raise CheckpointError(f"--resume {ref}: no such folder or file")
    raise CheckpointError(f"--resume {ref}: not an animation folder (one holding {STATE_DIR}/{STATE_FILE})")


def load_state(ref) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path, run_dir = find_state(ref)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"--resume {path}: not a readable animation state ({type(exc).__name__})") from exc
    try:
        info = json.loads(meta[_META_KEY])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"--resume {path}: not a pixloom animation state") from None
    if info.get("format") != FORMAT:
        raise CheckpointError(f"--resume {path}: not a pixloom animation state")
    if info.get("version") != VERSION:
        raise CheckpointError(f"--resume {path}: animation state version {info.get('version')} is not supported")
    return Checkpoint(path, run_dir, info, tensors)
