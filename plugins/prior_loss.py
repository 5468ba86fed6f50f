"""Loss ``prior``: score distillation with a world denoiser (the image should
look like the world its denoiser learnt, and, for a text-conditional one, like
the prompt)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

import torch
import torch.nn.functional as F

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss
from pixloom.plugins.clip_loss import parse_weighted, prompts_to_follow


@dataclass
class PriorParams:
    model: str = "shapes-denoiser-text"  # an embedded denoiser's name or a denoiser .safetensors file
    prompts: List[Any] = field(default_factory=list)  # the condition; empty: the run's prompts (the clip loss's)
    # defaults: the values tuned for presets/default.yaml (BENCHMARKS.md, third round)
    cond_scale: float = 5.0  # classifier-free guidance scale (a text-conditional denoiser only)
    sigma_max: float = 4.0  # noise levels (in -1..1 units) drawn from sigma_max down to sigma_min
    sigma_min: float = 0.05
    schedule: str = "random"  # random: any level at any step | anneal: a window sliding from high to low
    samples: int = 2  # noise draws a step (batched)
    target_steps: int = 1  # sampler steps from the drawn level to clean (1: the one-shot estimate of SDS)
    noise: str = "fresh"  # fresh: new noise every step | fixed: the same draws all run (a steadier target)

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min, sigma_max: need 0 < sigma_min < sigma_max "
                             f"(got {self.sigma_min}, {self.sigma_max})")
        if self.schedule not in ("anneal", "random"):
            raise ValueError(f"schedule: unknown {self.schedule!r} (valid: anneal, random)")
        if self.noise not in ("fresh", "fixed"):
            raise ValueError(f"noise: unknown {self.noise!r} (valid: fresh, fixed)")
        if self.target_steps < 1:
            raise ValueError(f"target_steps: must be at least 1 (got {self.target_steps})")
        if self.samples < 1:
            raise ValueError(f"samples: must be at least 1 (got {self.samples})")
        if self.cond_scale < 0:
            raise ValueError(f"cond_scale: must not be negative (got {self.cond_scale})")
        for p in self.prompts:
            parse_weighted(p, "prompt")


class PriorLoss(Loss):
    """Score distillation (as in DreamFusion) with a denoiser of the shapes world.

    Each step the image, area-resized to the denoiser's grid, is noised to a
    few levels between ``sigma_max`` and ``sigma_min`` and denoised; the loss
    is the squared distance to those estimates, which are held fixed, so its
    gradient moves the image toward what the denoiser would make of it. With
    the text-conditional ``shapes-denoiser-text`` the estimate is
    classifier-free guided toward the prompt (``cond_scale``): the image is
    pulled toward world images of its caption, which the CLIP loss alone
    cannot do (the guide scores off-world images as highly as real ones;
    BENCHMARKS.md). The noise is drawn from the seed, the frame and the step,
    so a resumed run repeats exactly.
    """

    name = "prior"
    version = pixloom.__version__
    Params = PriorParams

    def __init__(self, params: PriorParams, ctx):
        super().__init__(params, ctx)
        from pixloom.denoiser import grid_for, load_denoiser

        self.model = load_denoiser(params.model, resolve=ctx.resolve_path)
        self.grid = grid_for(self.model, *ctx.size)
        # with no prompts of its own it follows the run's (an animation's keyframed prompts too)
        self.follows_run_prompts = not params.prompts
        self.register_buffer("cond", torch.zeros(0), persistent=False)
        self.setup({})

    def setup(self, perceptors: dict) -> None:
        from pixloom.denoiser import text_condition

        cond = text_condition(self.model, prompts_to_follow(self.params.prompts, self.ctx))
        self.cond = cond.to(self.cond.device) if cond is not None else torch.zeros(0, device=self.cond.device)

    def sigmas(self, step: int, total: int, g: torch.Generator) -> torch.Tensor:
        hi, lo, n = self.params.sigma_max, self.params.sigma_min, self.params.samples
        u = torch.rand(n, generator=g)
        if self.params.schedule == "anneal":  # a window that slides from sigma_max to sigma_min
            t = (step + u) / max(1, total)
        else:
            t = u
        return hi * (lo / hi) ** t.clamp(0, 1)

    def forward(self, inputs) -> torch.Tensor:
        x = F.interpolate(inputs.image, size=self.grid, mode="area") * 2 - 1
        frame = inputs.frame or 0
        g = torch.Generator().manual_seed((self.ctx.seed * 1_000_003 + frame * 10_007 + int(inputs.step)) % 2 ** 63)
        sigma = self.sigmas(int(inputs.step), int(inputs.total_steps), g)
        n = sigma.numel()
        if self.params.noise == "fixed":  # the same draws every step (of this frame)
            g = torch.Generator().manual_seed((self.ctx.seed * 1_000_003 + frame * 10_007 + 7) % 2 ** 63)
        noise = torch.randn((n, *x.shape[1:]), generator=g).to(x.device, x.dtype)
        sigma = sigma.to(x.device, x.dtype)
        with torch.no_grad():
            noisy = x.detach().expand(n, -1, -1, -1) + sigma.view(-1, 1, 1, 1) * noise
            target = self.sample_from(noisy, sigma)
        return (x - target).pow(2).mean()

    def sample_from(self, noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The clean image a deterministic (Euler) sampler makes of ``noisy`` at
        ``sigma`` in ``target_steps`` steps (one step: the denoiser's estimate)."""
        from pixloom.denoiser import guided_estimate

        cond = self.cond if self.cond.numel() else None
        steps, floor = self.params.target_steps, min(0.02, float(sigma.min()))
        x = noisy
        for i in range(steps):
            d = guided_estimate(self.model, x, sigma, cond, self.params.cond_scale)
            if i == steps - 1:
                return d
            nxt = sigma * (floor / sigma) ** (1 / (steps - 1 - i))  # geometric toward the floor
            x = d + (nxt / sigma).view(-1, 1, 1, 1) * (x - d)
            sigma = nxt
        return x


@hookimpl
def pixloom_register_losses():
    return [PriorLoss]
