"""Optimisers by name and learning-rate schedules."""
from __future__ import annotations

import inspect
import math

import torch

from .errors import PresetError


def optimizer_names() -> list:
    return sorted(name for name, obj in vars(torch.optim).items()
                  if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
                  and obj is not torch.optim.Optimizer)


def build_optimizer(name: str, params, lr: float, extra: dict | None = None) -> torch.optim.Optimizer:
    """Any ``torch.optim`` optimiser by name, case-insensitive (``adam``, ``AdamW``, ``sgd``...)."""
    table = {n.lower(): getattr(torch.optim, n) for n in optimizer_names()}
    cls = table.get(name.lower())
    if cls is None:
        raise PresetError(f"run.optimizer: unknown optimizer {name!r} (valid: {', '.join(optimizer_names())})")
    try:
        return cls(params, lr=lr, **dict(extra or {}))
    except (TypeError, ValueError) as exc:
        raise PresetError(f"run.optimizer_params: {exc} ({cls.__name__})") from exc


def lr_factor(schedule, step: int, total: int) -> float:
    """The multiplier of the base learning rate at ``step`` (0-based) of ``total``."""
    factor = 1.0
    if schedule.name == "step":
        for m in schedule.milestones:
            at = m * total if m < 1 else m
            if step >= at:
                factor *= schedule.gamma
    elif schedule.name == "cosine":
        progress = min(1.0, step / max(1, total - 1))
        floor = schedule.min_lr
        factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule.warmup and step < schedule.warmup:
        factor *= (step + 1) / schedule.warmup
    return factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
