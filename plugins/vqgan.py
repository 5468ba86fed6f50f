"""Generator ``vqgan``: a VQGAN latent, snapped to the codebook, decoded (VQGAN+CLIP)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn.functional as F

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.images import check_rgb, check_scale, fit_decoded, flat_image, load_image, token_grid
from pixloom.interfaces import Generator
from pixloom.vqgan import codebook_range, random_codes, snap


@dataclass
class VQGANParams:
    model: str = "shapes-vqgan"  # embedded name, registry name, .safetensors, or a taming config .yaml
    checkpoint: Optional[str] = None  # the .ckpt of a taming config (default: same name beside it)
    init: str = "random"  # random (random codebook entries) | flat (init_color through the encoder) | image (init_image through it)
    init_color: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # flat: RGB in 0..1
    init_image: Optional[str] = None
    init_noise: float = 0.0  # std of noise added to the initial latent, in codebook units
    # > 1: decode at 1/upscale of the render's size, then enlarge: a model that learnt
    # small scenes (the embedded ones: 64 px) draws shapes at the scale it knows
    upscale: int = 1
    # > 1: decode at supersample times the render's size (a latent grid that many
    # times finer), then average down: finer detail than the model's cells allow at size
    supersample: int = 1
    trust: bool = False  # allow full unpickling of a checkpoint no published hash vouches for

    def __post_init__(self):
        if self.init not in ("random", "flat", "image"):
            raise ValueError(f"init: unknown init {self.init!r} (valid: random, flat, image)")
        check_rgb(self.init_color)
        check_scale(self.upscale, self.supersample)
        if self.init == "image" and not self.init_image:
            raise ValueError("init_image: init: image needs init_image (a file path)")
        if self.init_noise < 0:
            raise ValueError(f"init_noise: must not be negative (got {self.init_noise})")


class _ClampInward(torch.autograd.Function):
    """clamp(x, 0, 1) whose gradient still flows where it would move x back into range."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        outside = x - x.clamp(0, 1)  # > 0 above, < 0 below
        return grad * ((grad * outside) >= 0)


class VQGANGenerator(Generator):
    """A VQGAN latent grid optimised through the frozen decoder (the VQGAN+CLIP method).

    Every cell of the latent is snapped to its nearest codebook vector (gradient
    passed straight through), the decoder turns the snapped grid into the image,
    and after each step the latent is clamped to the codebook's range. ``model``
    names the embedded ``shapes-vqgan``, a registry model (``imagenet_f16_16384``,
    fetched into the cache) or a taming config .yaml with its ``checkpoint``.
    The latent grid is ceil(size x supersample / (f x upscale)); the decoded
    image, enlarged ``upscale`` times, is centre-cropped to size (to
    ``supersample`` times size, then averaged down to it).
    """

    name = "vqgan"
    version = pixloom.__version__
    Params = VQGANParams

    def __init__(self, params: VQGANParams, ctx):
        super().__init__(params, ctx)
        model = self._load_model(params, ctx)
        object.__setattr__(self, "model", model.eval().requires_grad_(False))  # frozen: not in state_dict
        f = model.factor
        self.grid = token_grid(self.height, self.width, f, params.upscale, params.supersample)
        book = model.codebook.detach()
        z_min, z_max = codebook_range(book)
        self.register_buffer("z_min", z_min, persistent=False)
        self.register_buffer("z_max", z_max, persistent=False)
        rng = torch.Generator().manual_seed(ctx.seed)
        z = random_codes(book, self.grid, rng)
        if params.init_noise > 0:
            scale = (self.z_max - self.z_min) / 2
            z = z + torch.randn(z.shape, generator=rng) * params.init_noise * scale
        self.z = torch.nn.Parameter(z.clamp(self.z_min, self.z_max))
        if params.init == "image":
            self.init_from_image(load_image(ctx.resolve_path(params.init_image), (self.width, self.height)))
        elif params.init == "flat":
            self.init_from_image(flat_image(params.init_color, (self.width, self.height)))

    def _load_model(self, params: VQGANParams, ctx):
        """The VQGAN (a subclass may build it otherwise)."""
        from pixloom.vqgan import load_vqgan

        return load_vqgan(params.model, params.checkpoint, trust=params.trust, resolve=ctx.resolve_path)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.model._apply(fn)  # .to(device) moves the frozen model too
        return self

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        return fit_decoded(image, self.height, self.width, self.params.upscale, self.params.supersample)

    def synth(self) -> torch.Tensor:
        z_q, _ = snap(self.z, self.model.codebook)
        image = self.model.decode(z_q).add(1).div(2)
        return _ClampInward.apply(self._crop(image))

    @torch.no_grad()
    def tokens(self) -> torch.Tensor:
        """[h, w] codebook indices of the current latent."""
        return snap(self.z, self.model.codebook)[1][0]

    @torch.no_grad()
    def init_from_image(self, image: torch.Tensor) -> None:
        f = self.model.factor
        size = (self.grid[0] * f, self.grid[1] * f)
        image = image.to(self.z.device, torch.float32)
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
        z = self.model.encode_latent(image * 2 - 1)
        self.z.copy_(z.clamp(self.z_min, self.z_max))

    @torch.no_grad()
    def after_step(self) -> None:
        self.z.copy_(self.z.clamp(self.z_min, self.z_max))


@hookimpl
def pixloom_register_generators():
    return [VQGANGenerator]
