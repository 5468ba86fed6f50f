"""Keyframes: values that change over an animation's frames.

A keyframed number is either a plain number (the same at every frame) or a
mapping ``{frame: value}``. Between two keys the value is interpolated,
linearly or smoothly (cosine easing: it starts and stops gently); before the
first key it holds the first value, after the last key the last one.

Keyframed prompts map frames to a prompt (``"text"`` or ``"text:weight"``) or a
list of them. Between keys ``a`` and ``b`` the two sets are blended: at the
fraction ``t`` of the way (eased like numbers) key ``a``'s prompts weigh
``1 - t`` and key ``b``'s weigh ``t``, each times its own weight.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

INTERPOLATIONS = ("linear", "smooth")

_WEIGHT = re.compile(r"^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$")


class KeyframeError(ValueError):
    """A keyframe mapping that does not parse; the message names what is wrong."""


def ease(t: float, interpolation: str) -> float:
    """The eased fraction for ``t`` in 0..1: ``linear`` leaves it, ``smooth`` is cosine easing."""
    if interpolation == "smooth":
        return (1 - math.cos(math.pi * t)) / 2
    return t


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _frame_key(key) -> int:
    if isinstance(key, bool):
        raise KeyframeError(f"frame {key!r} is not a frame number")
    if isinstance(key, str) and key.strip().lstrip("+").isdigit():
        key = int(key)
    if not isinstance(key, int):
        raise KeyframeError(f"frame {key!r} is not a frame number")
    if key < 0:
        raise KeyframeError(f"frame {key} is negative")
    return key


@dataclass(frozen=True)
class Keyframes:
    """Numbers at key frames: ``Keyframes.parse(1.05)`` or ``Keyframes.parse({0: 1.0, 12: 1.05})``."""

    keys: tuple  # ((frame, value), ...) sorted by frame

    @classmethod
    def parse(cls, value) -> "Keyframes":
        if _is_number(value):
            return cls(((0, float(value)),))
        if not isinstance(value, dict):
            raise KeyframeError(f"expected a number or a mapping {{frame: number}}, got {value!r}")
        if not value:
            raise KeyframeError("an empty mapping has no keyframes")
        keys = {}
        for k, v in value.items():
            frame = _frame_key(k)
            if not _is_number(v):
                raise KeyframeError(f"frame {frame}: {v!r} is not a number")
            if not math.isfinite(v):
                raise KeyframeError(f"frame {frame}: {v!r} is not finite")
            keys[frame] = float(v)
        return cls(tuple(sorted(keys.items())))

    @property
    def constant(self) -> bool:
        return len({v for _, v in self.keys}) == 1

    def values(self) -> list:
        return [v for _, v in self.keys]

    def at(self, frame: float, interpolation: str = "linear") -> float:
        """The value at ``frame``."""
        a, i = _bracket(self.keys, frame)
        if i is None:
            return a[1]
        (fa, va), (fb, vb) = a, self.keys[i]
        t = ease((frame - fa) / (fb - fa), interpolation)
        return va + (vb - va) * t


def _bracket(keys: tuple, frame: float):
    """(key at or before ``frame``, index of the next key) or (held key, None)."""
    if frame <= keys[0][0]:
        return keys[0], None
    if frame >= keys[-1][0]:
        return keys[-1], None
    for i in range(1, len(keys)):
        if frame < keys[i][0]:
            prev = keys[i - 1]
            return (prev, None) if prev[0] == frame else (prev, i)
    return keys[-1], None  # not reached


def split_prompt(item: str) -> tuple:
    """``"text"`` -> (text, 1.0); ``"text:0.5"`` -> (text, 0.5) (the last colon, when a number follows)."""
    if not isinstance(item, str):
        raise KeyframeError(f"prompt {item!r} is not text")
    text, sep, tail = item.rpartition(":")
    if sep and _WEIGHT.match(tail):
        weight = float(tail)
    else:
        text, weight = item, 1.0
    text = text.strip()
    if not text:
        raise KeyframeError(f"prompt {item!r} has no text")
    return text, weight


@dataclass(frozen=True)
class PromptKeyframes:
    """Prompt sets at key frames; ``at(frame)`` gives the blended [(text, weight), ...]."""

    keys: tuple  # ((frame, ((text, weight), ...)), ...) sorted by frame
    raw: tuple  # ((frame, [prompt strings as written]), ...)

    @classmethod
    def parse(cls, value) -> "PromptKeyframes":
        if isinstance(value, (str, list)):
            value = {0: value}
        if not isinstance(value, dict) or not value:
            raise KeyframeError(f"expected a prompt, a list of prompts or a mapping {{frame: prompt}}, got {value!r}")
        keys, raw = {}, {}
        for k, v in value.items():
            frame = _frame_key(k)
            items = [v] if isinstance(v, str) else v
            if not isinstance(items, list) or not items:
                raise KeyframeError(f"frame {frame}: expected a prompt or a non-empty list of prompts, got {v!r}")
            try:
                keys[frame] = tuple(split_prompt(p) for p in items)
            except KeyframeError as exc:
                raise KeyframeError(f"frame {frame}: {exc}") from None
            raw[frame] = [str(p) for p in items]
        return cls(tuple(sorted(keys.items())), tuple(sorted(raw.items())))

    def first(self) -> list:
        """The first key's prompts as written (what frame 0 uses)."""
        return list(self.raw[0][1])

    def at(self, frame: float, interpolation: str = "linear") -> list:
        """[(text, weight), ...] at ``frame``: one key's prompts, or two keys' blended.
        A text in both keys gets the sum of its weights; zero weights are dropped."""
        a, i = _bracket(self.keys, frame)
        if i is None:
            return list(a[1])
        (fa, pa), (fb, pb) = a, self.keys[i]
        t = ease((frame - fa) / (fb - fa), interpolation)
        blended = {}
        for prompts, share in ((pa, 1 - t), (pb, t)):
            for text, weight in prompts:
                blended[text] = blended.get(text, 0.0) + weight * share
        return [(text, w) for text, w in blended.items() if w != 0]
