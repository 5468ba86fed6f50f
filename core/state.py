"""The objects a run hands to plugins: its per-step State and its result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class State:
    """What a step callback sees; callbacks may change it or return a new one."""

    step: int
    total_steps: int
    image: torch.Tensor
    losses: dict = field(default_factory=dict)
    parameters: list = field(default_factory=list)
    frame: int = 0
    lr: float = 0.0
    seed: int = 0
    device: str = "cpu"
    out_dir: Path | None = None
    preset: Any = None
    stop: bool = False
    extra: dict = field(default_factory=dict)


@dataclass
class RenderResult:
    """The outcome of :func:`pixloom.render`."""

    image: Any  # PIL.Image.Image, the final image
    tensor: torch.Tensor  # [1, 3, H, W] float in 0..1, on the CPU
    history: list  # one dict a step: {"total": float, "<loss label>": float, ...}
    files: list = field(default_factory=list)  # Paths written by the outputs
    preset: Any = None  # the fully resolved preset (an OmegaConf DictConfig)
    seed: int = 0
    seconds: float = 0.0
    steps: int = 0
    plugins: dict = field(default_factory=dict)  # {"kind/name": version} of the plugins used
    candidates: dict | None = None  # run.candidates > 1: the seeds tried, their scores, the one chosen
