"""Generator ``diffusion``: CLIP-guided sampling of a world denoiser."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
import torch.nn.functional as F

import pixloom
from pixloom.denoiser import guided_estimate
from pixloom.hookspecs import hookimpl
from pixloom.images import load_image
from pixloom.interfaces import Generator


@dataclass
class DiffusionParams:
    model: str = "shapes-denoiser"  # an embedded denoiser's name or a denoiser .safetensors file
    sigma_max: float = 4.0  # the noise level of the first step (init: noise), in -1..1 units
    sigma_min: float = 0.02  # the last step's noise level; the run ends at the clean estimate
    churn: float = 0.5  # share of each step's carried-over noise that is drawn afresh (0: deterministic)
    guidance_power: float = 1.0  # the optimiser's step moves the estimate by sigma ** power times itself
    normalize_grad: bool = True  # scale each step's gradient to unit RMS (so lr is the step size)
    init: str = "noise"  # noise | image (init_image noised to init_sigma, the ladder starting there)
    init_image: Optional[str] = None
    init_sigma: float = 1.0
    cond_scale: float = 3.0  # classifier-free guidance toward the prompt (a text-conditional denoiser only)
    prompts: List[Any] = field(default_factory=list)  # its condition; empty: the run's (the clip loss's) prompts

    def __post_init__(self):
        if self.init not in ("noise", "image"):
            raise ValueError(f"init: unknown init {self.init!r} (valid: noise, image)")
        if self.init == "image" and not self.init_image:
            raise ValueError("init_image: init: image needs init_image (a file path)")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min, sigma_max: need 0 < sigma_min < sigma_max "
                             f"(got {self.sigma_min}, {self.sigma_max})")
        if not 0 < self.init_sigma:
            raise ValueError(f"init_sigma: must be positive (got {self.init_sigma})")
        if not 0 <= self.churn <= 1:
            raise ValueError(f"churn: must be in 0..1 (got {self.churn})")
        if self.cond_scale < 0:
            raise ValueError(f"cond_scale: must not be negative (got {self.cond_scale})")
        from pixloom.plugins.clip_loss import parse_weighted

        for p in self.prompts:
            parse_weighted(p, "prompt")


class DiffusionGenerator(Generator):
    """A diffusion sampler whose every step is guided by the losses.

    The parameter is the sampler's noisy state, on a grid the size the denoiser
    was trained at (32 px for the embedded ``shapes-denoiser``, scaled to the
    render's aspect). Step i of n has a noise level on a geometric ladder from
    ``sigma_max`` to ``sigma_min``; the image the losses see is the denoiser's
    estimate of the clean picture behind the state, upsampled to the render
    size, so the gradient reaches the state through the denoiser. The
    optimiser's step on the state is read as the guidance: after it the
    estimate is moved by ``sigma ** guidance_power`` times that step, and the
    state is renoised to the next level (``churn`` of the noise fresh, drawn
    from the seed and the step, so a resumed run repeats exactly). After the
    last step the render is the clean estimate itself.

    With a text-conditional denoiser (``shapes-denoiser-text``) each estimate is
    also classifier-free guided toward the prompt (``cond_scale``; the prompts
    are the clip loss's unless ``prompts`` names others).

    With a vanishing lr this is plain sampling of the world the denoiser learnt; with a
    CLIP loss it is CLIP-guided diffusion, in which the guide only ever chooses
    among images the prior finds plausible (docs/models.md).
    """

    name = "diffusion"
    version = pixloom.__version__
    Params = DiffusionParams

    def __init__(self, params: DiffusionParams, ctx):
        super().__init__(params, ctx)
        from pixloom.denoiser import grid_for, load_denoiser

        model = load_denoiser(params.model, resolve=ctx.resolve_path)
        object.__setattr__(self, "model", model)  # frozen: not in state_dict
        object.__setattr__(self, "cond", None)
        self._cond_prompts = None
        self._condition()
        self.grid = grid_for(model, self.width, self.height)
        rng = torch.Generator().manual_seed(ctx.seed)
        self.state = torch.nn.Parameter(torch.randn(1, 3, *self.grid, generator=rng) * params.sigma_max)
        self.register_buffer("level", torch.zeros((), dtype=torch.long))
        self.register_buffer("sigma_start", torch.tensor(float(params.sigma_max)))
        self._total = 1
        self._before: Optional[torch.Tensor] = None
        if params.normalize_grad:
            self.state.register_hook(lambda g: g / g.pow(2).mean().sqrt().clamp(min=1e-12))
        if params.init == "image":
            self.init_from_image(load_image(ctx.resolve_path(params.init_image), (self.width, self.height)))

    def _condition(self) -> None:
        """Encode the prompts for a text-conditional denoiser (again when the run's
        prompts have changed, as an animation's keyframes do)."""
        from pixloom.denoiser import text_condition
        from pixloom.plugins.clip_loss import prompts_to_follow

        if not self.model.conditional:
            return
        prompts = prompts_to_follow(self.params.prompts, self.ctx)
        if prompts == self._cond_prompts:
            return
        device = next(self.model.parameters()).device
        cond = text_condition(self.model, prompts, device)
        object.__setattr__(self, "cond", cond)
        self._cond_prompts = prompts

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.model._apply(fn)
        if self.cond is not None:
            object.__setattr__(self, "cond", fn(self.cond))
        return self

    def sigma(self, level: int) -> float:
        """The noise level of step ``level`` (0 once the ladder is done)."""
        n = max(1, self._total)
        if level >= n:
            return 0.0
        start, end = float(self.sigma_start), self.params.sigma_min
        return start * (end / start) ** (level / max(1, n - 1)) if start > end else end

    def _estimate(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        if sigma <= 0:
            return x
        return guided_estimate(self.model, x, sigma, self.cond, self.params.cond_scale)

    def synth(self) -> torch.Tensor:
        d = self._estimate(self.state, self.sigma(int(self.level)))
        image = d.add(1).div(2)
        if self.grid != (self.height, self.width):
            image = F.interpolate(image, size=(self.height, self.width), mode="bilinear", align_corners=False)
        return image.clamp(0, 1)

    def before_step(self, step: int, total_steps: int) -> None:
        self._condition()
        self._total = total_steps
        self.level.fill_(step)
        self._before = self.state.detach().clone()

    @torch.no_grad()
    def after_step(self) -> None:
        if self._before is None:  # an optimiser step without before_step: nothing to read it against
            return
        level = int(self.level)
        sigma, after = self.sigma(level), self.sigma(level + 1)
        before, moved = self._before, self.state - self._before
        self._before = None
        if sigma <= 0:
            self.state.copy_(before)
            return
        guided = self._estimate(before, sigma) + sigma ** self.params.guidance_power * moved
        state = guided
        if after > 0:
            eps = (before - guided) / sigma
            g = torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + level + 1)
            fresh = torch.randn(before.shape, generator=g).to(before.device, before.dtype)
            churn = self.params.churn
            state = guided + after * (math.sqrt(1 - churn) * eps + math.sqrt(churn) * fresh)
        self.state.copy_(state)
        self.level.fill_(level + 1)

    @torch.no_grad()
    def init_from_image(self, image: torch.Tensor) -> None:
        """The state becomes ``image`` noised to ``init_sigma``; the ladder starts there."""
        image = image.to(self.state.device, torch.float32)
        small = F.interpolate(image, size=self.grid, mode="area") * 2 - 1
        g = torch.Generator().manual_seed(self.ctx.seed + 1)
        noise = torch.randn(small.shape, generator=g).to(small.device)
        sigma = min(self.params.init_sigma, self.params.sigma_max)
        self.state.copy_(small + sigma * noise)
        self.sigma_start.fill_(sigma)
        self.level.zero_()


@hookimpl
def pixloom_register_generators():
    return [DiffusionGenerator]
