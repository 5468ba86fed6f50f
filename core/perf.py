"""How a run uses its device: numeric precision, torch.compile, and how many
crops go through the perceptors at once so that a step fits in memory.

``run.crop_batch: auto`` (the default) estimates the memory one crop's
perceptor pass keeps for the backward pass and splits the crops into chunks
(gradient accumulation, see :mod:`pixloom.step`) when all of them would not fit
the memory budget: ``run.memory_budget``, else the environment variable
``PIXLOOM_MEMORY_BUDGET``, else most of the device's free memory. A large
render on a small device then runs slower, not out of memory. ``run.crop_batch:
N`` fixes the chunk at N crops.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from .errors import PresetError

BUDGET_ENV = "PIXLOOM_MEMORY_BUDGET"
PRECISIONS = ("auto", "fp32", "tf32", "fp16")
FP16_LOSS_SCALE = 1024.0  # fp16 gradients of small losses underflow without it
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


@dataclass
class Perf:
    """A run's device settings (``Run.perf``)."""

    crop_batch: int | None = 0  # crops a perceptor pass; 0: all at once; None: plan at the first step
    budget: int | None = None  # bytes the crop batch may use (None: the device's free memory)
    budget_source: str = ""
    autocast: torch.dtype | None = None  # fp16 autocast of the losses (CUDA only)
    loss_scale: float = 1.0
    bytes_per_crop: int = 0  # the estimate the plan used
    crops: int = 0  # crops a step, once seen


def parse_bytes(text, where: str = "memory budget") -> int:
    """'512MiB', '2G', '1.5GB', '1000000' -> bytes (K/M/G/T alone are binary units)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise PresetError(f"{where}: {text!r} is not a size (e.g. 512MiB, 2GiB, 1.5G)")
        value, unit = float(m.group(1)), m.group(2).lower()
    size = int(value * _UNITS[unit])
    if size <= 0:
        raise PresetError(f"{where}: must be more than 0 bytes (got {text!r})")
    return size


def check_run_settings(run_cfg, source: str) -> None:
    """One-line PresetErrors for run.crop_batch, run.memory_budget and run.precision."""
    cb = run_cfg.crop_batch
    if not (cb == "auto" or (isinstance(cb, int) and not isinstance(cb, bool) and cb >= 1)):
        raise PresetError(f"{source}: run.crop_batch: must be auto or a number of crops >= 1 (got {cb!r})")
    if run_cfg.memory_budget is not None:
        parse_bytes(run_cfg.memory_budget, f"{source}: run.memory_budget")
    if run_cfg.precision not in PRECISIONS:
        raise PresetError(f"{source}: run.precision: unknown {run_cfg.precision!r} (valid: {', '.join(PRECISIONS)})")


def configure(run, run_cfg) -> Perf:
    """The Perf of a run on ``run.device``; sets TF32 for the process on CUDA when asked."""
    device = run.device
    precision = run_cfg.get("precision", "auto")
    if precision in ("tf32", "fp16") and device.type != "cuda":
        raise PresetError(f"run.precision: {precision} needs a CUDA device (this run is on {device.type}; "
                          f"use auto or fp32)")
    perf = Perf()
    if device.type == "cuda":
        # TF32 matmuls and convolutions: fp32 storage, 10-bit mantissa products
        tf32 = precision != "fp32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        if precision == "fp16":
            perf.autocast, perf.loss_scale = torch.float16, FP16_LOSS_SCALE
    cb = run_cfg.get("crop_batch", "auto")
    perf.crop_batch = None if cb == "auto" else int(cb)
    text = run_cfg.get("memory_budget", None)
    if text is not None:
        perf.budget, perf.budget_source = parse_bytes(text, "run.memory_budget"), "run.memory_budget"
    elif os.environ.get(BUDGET_ENV):
        perf.budget, perf.budget_source = parse_bytes(os.environ[BUDGET_ENV], BUDGET_ENV), BUDGET_ENV
    if run_cfg.get("compile", False):
        for perceptor in run.perceptors.values():
            perceptor.encode_image = torch.compile(perceptor.encode_image)
    return perf


def free_memory(device: torch.device) -> int | None:
    """Bytes a crop batch may take on ``device`` now, or None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(0.8 * (free + cached))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                info = dict(line.split(":", 1) for line in f)
            return int(info["MemAvailable"].split()[0]) * 1024 // 2  # other processes share it
        except (OSError, KeyError, ValueError):
            return None
    return None


def bytes_per_crop(run) -> int:
    """What one more crop adds to the tensors the perceptors keep for the backward
    pass (measured with saved-tensor hooks on a forward of one and of two crops),
    times 1.5 for the transient gradients of the backward pass."""
    total = 0
    for perceptor in run.perceptors.values():
        own = {t.untyped_storage().data_ptr() for t in (*perceptor.parameters(), *perceptor.buffers())}
        device = next(iter((*perceptor.parameters(), *perceptor.buffers())), torch.empty(0)).device
        sizes = []
        for n in (1, 2):
            seen = {}

            def pack(t):
                ptr = t.untyped_storage().data_ptr()
                if ptr not in own:
                    seen[ptr] = max(seen.get(ptr, 0), t.untyped_storage().nbytes())
                return t

            x = torch.full((n, 3, perceptor.input_size, perceptor.input_size), 0.5, device=device, requires_grad=True)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), _autocast(run):
                perceptor.encode_image(x)
            sizes.append(sum(seen.values()) + x.nbytes)
        total += max(sizes[1] - sizes[0], 1)
    return int(1.5 * total)


def _autocast(run):
    perf = getattr(run, "perf", None)
    if perf is not None and perf.autocast is not None:
        return torch.autocast(device_type=run.device.type, dtype=perf.autocast)
    import contextlib

    return contextlib.nullcontext()


def plan_crop_batch(run) -> int:
    """Crops a chunk for an ``auto`` run (0: no limit known, take all at once)."""
    perf = run.perf
    budget = perf.budget if perf.budget is not None else free_memory(run.device)
    if not budget or not run.perceptors:
        return 0
    perf.bytes_per_crop = bytes_per_crop(run)
    return max(1, budget // perf.bytes_per_crop)
