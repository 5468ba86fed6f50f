"""Generator ``dalle``: logits over a dVAE codebook, Gumbel-softmax tokens, DALL-E decoder."""
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
class DalleParams:
    model: str = "shapes-dvae"  # embedded name, registry name (openai-dvae), .safetensors or decoder .pkl
    encoder: Optional[str] = None  # the encoder .pkl beside a decoder .pkl (init from an image only)
    init: str = "random"  # random (random logits) | flat (init_color through the encoder) | image (init_image through it)
    init_color: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])  # flat: RGB in 0..1
    init_image: Optional[str] = None
    init_scale: float = 1.0  # std of the random initial logits
    temperature: float = 1.0  # Gumbel-softmax temperature at the first step
    final_temperature: float = 0.1  # ... annealed geometrically to this at the last step
    hard: bool = False  # straight-through one-hot tokens during steps (else soft mixtures)
    noise: bool = True  # Gumbel noise during steps (off: plain softmax at the temperature)
    # > 1: decode at 1/upscale of the render's size, then enlarge: a model that learnt
    # small scenes (the embedded ones: 64 px) draws shapes at the scale it knows
    upscale: int = 1
    # > 1: decode at supersample times the render's size, then average down: a
    # model whose cells are coarse for the scene (the embedded dVAE's 8 px) draws it finer
    supersample: int = 1
    # with supersample > 1: the fraction of the run's steps decoded at the render's own
    # grid first (every supersample x supersample block of cells one token, as with
    # supersample 1), after which that image is encoded into the finer grid and the
    # rest of the run decodes it supersampled: the coarse stage settles colours and
    # layout, the fine one draws the shapes. 0: supersampled from the first step.
    # With upscale as well, the coarse stage is decoded at 1/upscale of the size and
    # enlarged (upscale 2, supersample 2: a half-size stage, then the full size)
    supersample_from: float = 0.0
    # softmax: logits over the codebook at every cell, tokens by (Gumbel-)softmax as above;
    # snap: a latent in the decoder's token-embedding space, snapped to the nearest
    # token with a straight-through gradient (VQGAN+CLIP's method on the dVAE):
    # every step decodes the hard tokens the render will show
    tokens: str = "softmax"
    trust: bool = False  # allow full unpickling of a model file no published hash vouches for

    def __post_init__(self):
        if self.tokens not in ("softmax", "snap"):
            raise ValueError(f"tokens: unknown mode {self.tokens!r} (valid: softmax, snap)")
        if self.init not in ("random", "flat", "image"):
            raise ValueError(f"init: unknown init {self.init!r} (valid: random, flat, image)")
        check_rgb(self.init_color)
        # both above 1 with supersample_from: a coarse stage decoded at 1/upscale of the
        # size, then supersample times as many tokens a side
        check_scale(self.upscale, self.supersample, both=self.supersample_from > 0)
        if not 0.0 <= self.supersample_from < 1.0:
            raise ValueError(f"supersample_from: must be a fraction of the run, 0 to below 1 "
                             f"(got {self.supersample_from!r})")
        if self.supersample_from > 0 and self.supersample == 1:
            raise ValueError("supersample_from: needs supersample above 1 (there is no finer grid to go to)")
        if self.init == "image" and not self.init_image:
            raise ValueError("init_image: init: image needs init_image (a file path)")
        if self.temperature <= 0 or self.final_temperature <= 0:
            raise ValueError("temperature: temperature and final_temperature must be positive")
        if self.init_scale < 0:
            raise ValueError(f"init_scale: must not be negative (got {self.init_scale})")


class DalleGenerator(Generator):
    """A grid of token logits decoded by a DALL-E dVAE decoder.

    During a step (after ``before_step``) every cell's tokens are a Gumbel-softmax
    sample at the step's temperature (annealed from ``temperature`` to
    ``final_temperature``), soft or straight-through ``hard``. Outside steps, and
    in ``to_image()``, the tokens are the argmax of the logits (no noise), with a
    straight-through gradient. With the dVAE's ``factor`` f (8 as published),
    the token grid is ceil(size x supersample / (f x upscale)); the decoded image,
    enlarged ``upscale`` times, is centre-cropped to size (to ``supersample``
    times size, then averaged down to it).

    With ``supersample_from`` the grid is ceil(size / (f x upscale)) x supersample
    and, for that fraction of the run, the decoder sees it averaged over
    supersample x supersample blocks (the coarse stage's grid; the cells of a
    block start equal and get equal gradients, so they stay equal). At the first
    step past it the image is enlarged, encoded into the full grid, and decoded
    supersampled from then on (the buffer ``refined``, saved with the parameters,
    says which stage a run is in).

    With ``tokens: snap`` the parameters are a latent in the decoder's token
    embedding space instead (the input convolution's column for each token):
    every cell decodes its nearest token, the gradient passed straight through,
    and the latent is clamped to the embeddings' range after each step.
    """

    name = "dalle"
    version = pixloom.__version__
    Params = DalleParams

    def __init__(self, params: DalleParams, ctx):
        super().__init__(params, ctx)
        from pixloom.dvae import load_dvae

        model = load_dvae(params.model, params.encoder, trust=params.trust, resolve=ctx.resolve_path,
                          need_encoder=True)
        object.__setattr__(self, "model", model.eval().requires_grad_(False))  # frozen: not in state_dict
        f = model.factor
        staged = params.supersample_from > 0
        self.block = params.supersample if staged else 1  # cells a side that move as one token
        self._fine = not staged  # decoding the full grid
        if staged:
            coarse = token_grid(self.height, self.width, f, params.upscale)
            self.grid = (coarse[0] * self.block, coarse[1] * self.block)
            # the stage, saved with the parameters so that a resumed run keeps it
            self.register_buffer("refined", torch.tensor(False))
            self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_fine", bool(module.refined)))
        else:
            coarse = self.grid = token_grid(self.height, self.width, f, params.upscale, params.supersample)
        rng = torch.Generator().manual_seed(ctx.seed)
        if params.tokens == "snap":
            book = model.token_embeddings().detach()
            z_min, z_max = codebook_range(book)
            self.register_buffer("book", book, persistent=False)
            self.register_buffer("z_min", z_min, persistent=False)
            self.register_buffer("z_max", z_max, persistent=False)
            self.z = torch.nn.Parameter(self._spread(random_codes(book, coarse, rng)))
        else:
            logits = torch.randn(1, model.vocab_size, *coarse, generator=rng) * params.init_scale
            self.logits = torch.nn.Parameter(self._spread(logits))
        self.tau = float(params.temperature)
        self._sampling = False
        if params.init == "image":
            self.init_from_image(load_image(ctx.resolve_path(params.init_image), (self.width, self.height)))
        elif params.init == "flat":
            self.init_from_image(flat_image(params.init_color, (self.width, self.height)))

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.model._apply(fn)
        return self

    def _spread(self, coarse: torch.Tensor) -> torch.Tensor:
        """A coarse-grid tensor repeated over each block of the full grid."""
        return coarse.repeat_interleave(self.block, 2).repeat_interleave(self.block, 3)

    def _param(self) -> torch.nn.Parameter:
        return self.z if self.params.tokens == "snap" else self.logits

    def _latent(self) -> torch.Tensor:
        """The parameter at the grid the decoder sees now: block means before refinement."""
        return self._param() if self._fine else F.avg_pool2d(self._param(), self.block)

    def _decode(self) -> torch.Tensor:
        """The decoder's whole output for the current grid (not yet cropped)."""
        if self.params.tokens == "snap":
            return self.model.decode_embedded(snap(self._latent(), self.book)[0])
        return self.model.decode(self._tokens())

    def _crop(self, image: torch.Tensor) -> torch.Tensor:
        supersample = self.params.supersample if self._fine else 1
        return fit_decoded(image, self.height, self.width, self.params.upscale, supersample)

    def temperature_at(self, step: int, total_steps: int) -> float:
        t0, t1 = self.params.temperature, self.params.final_temperature
        frac = step / max(1, total_steps - 1)
        return t0 * (t1 / t0) ** min(1.0, max(0.0, frac))

    def before_step(self, step: int, total_steps: int) -> None:
        if not self._fine and step >= self.params.supersample_from * total_steps:
            self.refine()
        self.tau = self.temperature_at(step, total_steps)
        self._sampling = True

    @torch.no_grad()
    def refine(self) -> None:
        """Leave the coarse stage: the coarse decode, enlarged, encoded into the full grid."""
        sampling, self._sampling = self._sampling, False
        try:
            image = self._decode().clamp(0, 1)
        finally:
            self._sampling = sampling
        self._fine = True
        self.refined.fill_(True)
        self._encode(image)  # enlarged there to the full grid's size

    @torch.no_grad()
    def after_step(self) -> None:
        self._sampling = False
        if self.params.tokens == "snap":
            self.z.copy_(self.z.clamp(self.z_min, self.z_max))

    def _tokens(self) -> torch.Tensor:
        """Tokens (soft or one-hot, [1, vocab, h, w]) of the grid the decoder sees now."""
        logits = self._latent()
        if self._sampling:
            if self.params.noise:  # Gumbel noise from torch's global CPU RNG: seeded, resumable
                u = torch.rand(logits.shape).clamp_(1e-9, 1 - 1e-9).to(logits.device)
                logits = logits - torch.log(-torch.log(u))
            soft = F.softmax(logits / self.tau, dim=1)
            if not self.params.hard:
                return soft
        else:
            soft = F.softmax(logits / self.tau, dim=1)
        from pixloom.dvae import one_hot_tokens  # loaded with the model, not at start-up

        hard = one_hot_tokens(soft.argmax(1), soft.shape[1], soft.dtype)
        return hard + soft - soft.detach()

    def synth(self) -> torch.Tensor:
        return self._crop(self._decode())

    @torch.no_grad()
    def to_image(self) -> torch.Tensor:
        sampling, self._sampling = self._sampling, False
        try:
            return self.synth().detach()
        finally:
            self._sampling = sampling

    @torch.no_grad()
    def tokens(self) -> torch.Tensor:
        """[h, w] token indices the decoder sees now: the logits' argmax, or the
        snapped latent's tokens (the coarse grid's before refinement)."""
        if self.params.tokens == "snap":
            return snap(self._latent(), self.book)[1][0]
        return self._latent().argmax(1)[0]

    @torch.no_grad()
    def init_from_image(self, image: torch.Tensor) -> None:
        self._encode(image)

    @torch.no_grad()
    def _encode(self, image: torch.Tensor) -> None:
        """Set the parameter to the encoder's tokens of image, at the grid the decoder sees now."""
        f, block = self.model.factor, 1 if self._fine else self.block
        size = (self.grid[0] // block * f, self.grid[1] // block * f)
        image = image.to(next(self.parameters()).device, torch.float32)  # z or logits
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bicubic", align_corners=False)
        logits = self.model.encode_logits(image.clamp(0, 1))
        if self.params.tokens == "snap":  # the encoder's tokens, as embeddings
            logits = self.book[logits.argmax(1)[0]].permute(2, 0, 1)[None]
        self._param().copy_(logits if self._fine else self._spread(logits))


@hookimpl
def pixloom_register_generators():
    return [DalleGenerator]
