"""The small interfaces every plugin kind implements.

A plugin class has a ``name`` (what a preset calls it), a ``version``, a
docstring (what ``pixloom list`` shows) and a ``Params`` dataclass whose fields
are its preset parameters. Swapping one generator, loss or perceptor for
another in a preset changes no other line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class NoParams:
    """A plugin without parameters."""


@dataclass
class BuildContext:
    """What a plugin gets when it is built for a run."""

    size: tuple  # (width, height) of the image
    device: torch.device
    seed: int
    out_dir: Path | None = None
    preset_dir: Path | None = None
    label: str = ""  # the instance's label (e.g. "clip", or "clip#1")
    extra: dict = field(default_factory=dict)

    def resolve_path(self, value: str) -> Path:
        """A path from the preset: as given if it exists, else relative to the preset's folder."""
        path = Path(value).expanduser()
        if not path.is_absolute() and not path.exists() and self.preset_dir is not None:
            candidate = self.preset_dir / path
            if candidate.exists():
                return candidate
        return path


class Plugin:
    """Base of every plugin class."""

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    Params: ClassVar[type] = NoParams


class Generator(Plugin, nn.Module):
    """Parameters that become an image.

    ``synth()`` returns [1, 3, H, W] in 0..1 and is differentiable with respect
    to the tensors in ``parameters()`` that require grad.
    """

    kind = "generator"

    def __init__(self, params, ctx: BuildContext):
        nn.Module.__init__(self)
        self.params = params
        self.ctx = ctx
        self.width, self.height = ctx.size

    def synth(self) -> torch.Tensor:
        raise NotImplementedError

    def init_from_image(self, image: torch.Tensor) -> None:
        """Set the parameters so that ``synth()`` approximates ``image`` ([1, 3, H, W], 0..1)."""
        raise NotImplementedError

    @torch.no_grad()
    def to_image(self) -> torch.Tensor:
        """The deterministic image of the current parameters (no gradient)."""
        return self.synth().detach()

    def before_step(self, step: int, total_steps: int) -> None:
        """Called before each step (e.g. to anneal a temperature)."""

    @torch.no_grad()
    def after_step(self) -> None:
        """Called after each optimiser step (e.g. to clamp parameters into range)."""


class Perceptor(Plugin, nn.Module):
    """A frozen model that embeds images and texts into one space."""

    kind = "perceptor"
    input_size: int = 224

    def __init__(self, params, ctx: BuildContext):
        nn.Module.__init__(self)
        self.params = params
        self.ctx = ctx

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, s, s] in 0..1 (s = input_size) -> [N, D], differentiable."""
        raise NotImplementedError

    def encode_text(self, texts: list) -> torch.Tensor:
        """A list of strings -> [T, D] (no gradient needed)."""
        raise NotImplementedError


class Augmentation(Plugin, nn.Module):
    """Cuts one image into a batch of crops."""

    kind = "augmentation"

    def __init__(self, params, ctx: BuildContext):
        nn.Module.__init__(self)
        self.params = params
        self.ctx = ctx

    def forward(self, image: torch.Tensor, cut_size: int) -> torch.Tensor:
        """[1, 3, H, W] -> [N, 3, cut_size, cut_size], differentiable."""
        raise NotImplementedError


class Loss(Plugin, nn.Module):
    """A scalar to minimise. Every loss has the same forward: ``forward(inputs)``,
    where ``inputs`` is a :class:`pixloom.loop.StepInputs` that gives the image,
    the step's crops and each perceptor's embeddings of them (computed once, on
    first use, and shared by every loss)."""

    kind = "loss"

    def __init__(self, params, ctx: BuildContext):
        nn.Module.__init__(self)
        self.params = params
        self.ctx = ctx

    def setup(self, perceptors: dict) -> None:
        """Called once before the first step with ``{label: Perceptor}``:
        compute prompt embeddings and other constants here."""

    def forward(self, inputs) -> torch.Tensor:
        raise NotImplementedError


class Output(Plugin):
    """Writes what a run makes."""

    kind = "output"

    def __init__(self, params, ctx: BuildContext):
        self.params = params
        self.ctx = ctx

    def on_start(self, state) -> None:
        """Before the first step."""

    def on_step(self, state) -> None:
        """After every step (``state.step``) — for intermediate images."""

    def on_frame(self, state) -> None:
        """After each animation frame is final: ``state.frame`` is its index and
        ``state.image`` the frame ([1, 3, H, W], 0..1). Not called for stills."""

    def on_end(self, state, result) -> list:
        """After the last step; returns the Paths it wrote."""
        return []


KINDS = ("generator", "perceptor", "loss", "augmentation", "output")
