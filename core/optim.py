"""Optimisers by name and learning-rate schedules."""
from __future__ import annotations

import inspect
import math

import torch

from .errors import PresetError


# torch.optim classes the loop cannot drive (one plain ``step()`` a step on dense gradients)
UNSUPPORTED = {
    "lbfgs": "LBFGS needs a closure that re-evaluates the losses",
    "sparseadam": "SparseAdam needs sparse gradients",
}


def optimizer_names() -> list:
    """The ``torch.optim`` optimisers a preset may name (``run.optimizer``)."""
    return sorted(name for name, obj in vars(torch.optim).items()
                  if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
                  and obj is not torch.optim.Optimizer and name.lower() not in UNSUPPORTED)


def optimizer_class(name: str, where: str = "run.optimizer"):
    """The optimiser class for a name, case-insensitive; a one-line PresetError otherwise."""
    table = {n.lower(): getattr(torch.optim, n) for n in optimizer_names()}
    cls = table.get(str(name).lower())
    if cls is None:
        why = UNSUPPORTED.get(str(name).lower())
        what = f"{name!r} is not supported: {why}" if why else f"unknown optimizer {name!r}"
        raise PresetError(f"{where}: {what} (valid: {', '.join(optimizer_names())})")
    return cls


def build_optimizer(name: str, params, lr: float, extra: dict | None = None) -> torch.optim.Optimizer:
    """Any ``torch.optim`` optimiser by name, case-insensitive (``adam``, ``AdamW``, ``sgd``...)."""
    cls = optimizer_class(name)
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
