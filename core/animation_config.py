"""The ``animation:`` block of a preset: its schema, its checks, and what each
frame gets from it (steps, camera move, prompts, keyframed settings).

Every problem is one :class:`PresetError` line naming ``animation.<key>``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .camera import Move
from .errors import PresetError
from .keyframes import INTERPOLATIONS, KeyframeError, Keyframes, PromptKeyframes

UNITS = ("px", "fraction")
CAMERA_VALUES = ("zoom", "angle", "translate_x", "translate_y")
# run.* settings that are not per-frame numbers (what to use instead)
_NOT_PER_FRAME = {
    "run.steps": "use animation.first_steps and animation.steps",
    "run.seed": "the seed is fixed for the whole animation",
    "run.size": "the size is fixed for the whole animation",
}


@dataclass
class CameraConfig:
    zoom: Any = 1.0  # scale each frame (>1 moves in); a number or {frame: number}
    angle: Any = 0.0  # degrees each frame, counter-clockwise
    translate_x: Any = 0.0  # shift each frame, positive: right
    translate_y: Any = 0.0  # positive: down
    units: str = "px"  # px | fraction (of the width / height)


@dataclass
class AnimationConfig:
    frames: int = 24
    fps: float = 12.0
    first_steps: int = 50  # steps of frame 0 (from the generator's own init)
    steps: int = 10  # steps of every later frame (from the moved previous frame)
    interpolation: str = "linear"  # linear | smooth (cosine easing between keys)
    camera: CameraConfig = field(default_factory=CameraConfig)
    prompts: Any = None  # the first clip loss's prompts by frame: {frame: "text" | [texts]}
    settings: Dict[str, Any] = field(default_factory=dict)  # dotted preset key -> number or {frame: number}


@dataclass
class Animation:
    """A checked animation block, ready to answer per-frame questions."""

    frames: int
    fps: float
    first_steps: int
    steps: int
    interpolation: str
    camera: dict  # name -> Keyframes
    units: str
    prompts: Optional[PromptKeyframes]
    settings: dict  # dotted key -> Keyframes

    def steps_for(self, frame: int) -> int:
        return self.first_steps if frame == 0 else self.steps

    def move(self, frame: int) -> Move:
        """The camera move that turns frame ``frame - 1`` into frame ``frame``'s start."""
        values = {k: kf.at(frame, self.interpolation) for k, kf in self.camera.items()}
        return Move(units=self.units, **values)

    def prompts_at(self, frame: int) -> list:
        return self.prompts.at(frame, self.interpolation) if self.prompts else []

    def settings_at(self, frame: int) -> dict:
        return {k: kf.at(frame, self.interpolation) for k, kf in self.settings.items()}


def _bad(source: str, key: str, why: str) -> PresetError:
    return PresetError(f"{source}: animation.{key}: {why}")


def _check_keys(data: dict, cls, prefix: str, source: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in valid:
            raise _bad(source, f"{prefix}{key}", f"unknown key (valid: {', '.join(valid)})")


def parse_animation(block, source: str) -> Animation:
    """Check a preset's ``animation`` block against :class:`AnimationConfig`."""
    if block is None:
        raise PresetError(f"{source}: animation: the preset has no animation block "
                          f"(start from a shipped one: base: animation/zoom; see docs/animation.md)")
    data = OmegaConf.to_container(block) if isinstance(block, DictConfig) else block
    if not isinstance(data, dict):
        raise PresetError(f"{source}: animation: must be a mapping of keys, not {type(data).__name__}")
    _check_keys(data, AnimationConfig, "", source)
    for key, what in (("camera", "camera values"), ("settings", "{setting: number or keyframes}")):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise _bad(source, key, f"must be a mapping of {what}, not {type(data[key]).__name__}")
    if isinstance(data.get("camera"), dict):
        _check_keys(data["camera"], CameraConfig, "camera.", source)
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AnimationConfig), data))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _bad(source, key or "camera", msg) from exc

    if cfg.frames < 1:
        raise _bad(source, "frames", f"must be at least 1 (got {cfg.frames})")
    if not math.isfinite(cfg.fps) or cfg.fps <= 0:
        raise _bad(source, "fps", f"must be a positive number (got {cfg.fps})")
    if cfg.first_steps < 0:
        raise _bad(source, "first_steps", f"must not be negative (got {cfg.first_steps})")
    if cfg.steps < 0:
        raise _bad(source, "steps", f"must not be negative (got {cfg.steps})")
    if cfg.interpolation not in INTERPOLATIONS:
        raise _bad(source, "interpolation", f"unknown {cfg.interpolation!r} (valid: {', '.join(INTERPOLATIONS)})")
    if cfg.camera.units not in UNITS:
        raise _bad(source, "camera.units", f"unknown {cfg.camera.units!r} (valid: {', '.join(UNITS)})")

    camera = {}
    for name in CAMERA_VALUES:
        try:
            camera[name] = Keyframes.parse(getattr(cfg.camera, name))
        except KeyframeError as exc:
            raise _bad(source, f"camera.{name}", str(exc)) from None
    if any(v <= 0 for v in camera["zoom"].values()):
        raise _bad(source, "camera.zoom", "must be above 0 (1 is no zoom)")

    prompts = None
    if cfg.prompts is not None:
        try:
            prompts = PromptKeyframes.parse(cfg.prompts)
        except KeyframeError as exc:
            raise _bad(source, "prompts", str(exc)) from None

    settings = {}
    for key, value in cfg.settings.items():
        try:
            settings[str(key)] = Keyframes.parse(value)
        except KeyframeError as exc:
            raise _bad(source, f"settings.{key}", str(exc)) from None

    return Animation(cfg.frames, float(cfg.fps), cfg.first_steps, cfg.steps, cfg.interpolation,
                     camera, cfg.camera.units, prompts, settings)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


SETTINGS_HELP = ("valid: numeric run.* settings such as run.lr or run.schedule.min_lr, losses.N.weight, "
                 "losses.N.params.KEY; camera values go in animation.camera")


def check_settings(animation: Animation, cfg, source: str) -> None:
    """Check that every keyframed setting names a number this preset has."""
    for key in animation.settings:
        where = f"settings.{key}"
        parts = key.split(".")
        if key in _NOT_PER_FRAME or ".".join(parts[:2]) in _NOT_PER_FRAME:
            raise _bad(source, where, f"cannot change per frame: {_NOT_PER_FRAME['.'.join(parts[:2])]}")
        if parts[0] == "run" and len(parts) >= 2:
            current = OmegaConf.select(cfg, key, default=None)
            if not _is_number(current):
                raise _bad(source, where, f"not a numeric setting of this preset ({SETTINGS_HELP})")
            if key == "run.lr" and any(v <= 0 for v in animation.settings[key].values()):
                raise _bad(source, where, "the learning rate must stay above 0")
            continue
        if parts[0] == "losses" and len(parts) >= 3 and parts[1].isdigit():
            index = int(parts[1])
            if index >= len(cfg.losses):
                raise _bad(source, where, f"there is no loss {index} (the preset has {len(cfg.losses)})")
            if parts[2] == "weight" and len(parts) == 3:
                continue
            if parts[2] == "params" and len(parts) == 4:
                continue  # checked against the loss's Params once it is built
        raise _bad(source, where, f"not a keyframeable setting ({SETTINGS_HELP})")


def check_loss_params(animation: Animation, losses: list, source: str) -> None:
    """Check ``losses.N.params.KEY`` settings against the built losses' Params."""
    for key in animation.settings:
        parts = key.split(".")
        if parts[0] != "losses" or parts[2] != "params":
            continue
        label, _, loss = losses[int(parts[1])]
        current = getattr(loss.params, parts[3], None)
        if not _is_number(current):
            fields = [f.name for f in dataclasses.fields(loss.params)
                      if _is_number(getattr(loss.params, f.name))]
            raise _bad(source, f"settings.{key}", f"not a numeric parameter of loss {label!r} "
                                                 f"(numeric: {', '.join(fields) or 'none'})")
