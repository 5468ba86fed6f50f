"""What the VQGAN and dVAE trainings share: shapes-world batches, the budget and
learning-rate schedule, held-out evaluation images, a preview PNG, arguments.

Batches come from :func:`pixloom.world.sample` with a generator seeded by
``--seed``; a fraction of each batch are 64 px windows over a 2 x 2 mosaic of
world images (several shapes, backgrounds meeting at seams), so the codebook
also learns content the world itself never shows in one picture but a guided
render will; with ``--zoom``, a fraction are 64 px windows of scenes rendered at
128 px, the scale at which a 128 px render decoded at full size draws the world.
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import world
from ..files import atomic_write

EVAL_SEED = 424242  # held-out images for the reconstruction numbers


def batch(n: int, g: torch.Generator, mosaic: float = 0.25, zoom: float = 0.0) -> torch.Tensor:
    """[n, 3, 64, 64] in 0..1: world images, some replaced by mosaic windows and
    some by windows of scenes rendered at 128 px; random flips."""
    images, _ = world.sample(n, g)
    k = int(round(n * mosaic))
    z = min(n - k, int(round(n * zoom)))
    if k:
        images = torch.cat([images[: n - k], world.mosaic_windows(k, g)])
    if z:
        images = torch.cat([images[: n - k - z], world.zoomed_windows(z, g), images[n - k:]])
    flip = torch.rand(n, generator=g) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images.contiguous()


def eval_images(n: int = 256) -> torch.Tensor:
    images, _ = world.sample(n, torch.Generator().manual_seed(EVAL_SEED))
    return images


def lr_at(progress: float, base: float, warmup: float, floor: float = 0.05) -> float:
    """Linear warmup over the first ``warmup`` of the run, then cosine to ``floor * base``."""
    if progress < warmup:
        return base * max(progress / warmup, 0.01)
    t = min(1.0, (progress - warmup) / max(1e-8, 1 - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class Budget:
    """Steps and/or minutes; progress is whichever is further along."""

    steps: int
    minutes: float
    t0: float = field(default_factory=time.time)
    step: int = 0
    time_capped: bool = False

    def progress(self) -> float:
        p = self.step / self.steps if self.steps else 0.0
        if self.minutes:
            p = max(p, (time.time() - self.t0) / (self.minutes * 60))
        return p

    def done(self) -> bool:
        if self.steps and self.step >= self.steps:
            return True
        if self.progress() >= 1.0:
            self.time_capped = True
            return True
        return False

    def elapsed_min(self) -> float:
        return (time.time() - self.t0) / 60


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def save_preview(path: Path, originals: torch.Tensor, recons: torch.Tensor, n: int = 8) -> Path:
    """Rows of originals above their reconstructions, upscaled 2x, as a PNG."""
    from PIL import Image

    top = torch.cat(list(originals[:n]), dim=2)
    bottom = torch.cat(list(recons[:n].clamp(0, 1)), dim=2)
    grid = torch.cat([top, bottom], dim=1)
    grid = torch.nn.functional.interpolate(grid[None], scale_factor=2, mode="nearest")[0]
    array = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(array, "RGB")
    atomic_write(Path(path), lambda tmp: picture.save(tmp, format="PNG"))
    return path


def common_args(p: argparse.ArgumentParser, batch_size: int, lr: float) -> None:
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=0, help="step budget (0: none); alone, the run is deterministic")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget in minutes (0: none)")
    p.add_argument("--batch", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--warmup", type=float, default=0.03, help="warmup, as a fraction of the run")
    p.add_argument("--mosaic", type=float, default=0.25, help="fraction of each batch that are mosaic windows")
    p.add_argument("--zoom", type=float, default=0.0,
                   help="fraction of each batch that are 64 px windows of scenes rendered at 128 px")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-n", type=int, default=256, help="held-out images for the final numbers")
    p.add_argument("--preview", help="PNG of originals over reconstructions (default: beside --out)")


def check_args(p: argparse.ArgumentParser, args) -> None:
    if not args.steps and not args.minutes:
        p.error("give --steps, --minutes or both")
    if args.seed == EVAL_SEED:
        p.error(f"--seed {args.seed} is the held-out evaluation seed; pick another")


def machine() -> dict:
    return {"torch": torch.__version__, "machine": platform.processor() or platform.machine()}
