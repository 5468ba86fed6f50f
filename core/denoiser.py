"""A noise-conditional denoiser of the shapes world: the prior of the
``diffusion`` generator.

``Denoiser(x, sigma)`` estimates the clean image behind ``x = y + sigma * n``
(images in -1..1, n standard Gaussian), with the preconditioning of Karras et
al., "Elucidating the design space of diffusion-based generative models"
(2022): a small U-Net (a stride-2 stem, residual blocks with the noise level
as a per-channel scale and shift, three halvings) sees ``c_in * x`` and
``log(sigma) / 4`` and its output is mixed with the input by ``c_skip`` and
``c_out``. It is fully convolutional; sides must be multiples of 16.

Weights are pixloom .safetensors files (metadata ``format: denoiser``
with the architecture and the resolution it was trained at), written by
``python -m pixloom.training.denoiser``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError
from .models import embedded_models, read_model, resolve_model_file, shared, write_safetensors

FORMAT = "denoiser"
SIGMA_DATA = 0.5  # the world's pixel spread in -1..1, as EDM's preconditioning assumes
MULTIPLE = 16     # sides of the denoiser's input


@dataclass
class DenoiserConfig:
    channels: tuple = (32, 64, 96, 128)
    embedding: int = 64
    resolution: int = 32  # the side of the world images it was trained on
    condition: int = 0    # width of the text embedding it is conditioned on (0: unconditional)
    text_model: str = ""  # the CLIP whose normalised text embeddings those are

    @classmethod
    def from_dict(cls, d: dict, source: str) -> "DenoiserConfig":
        try:
            cfg = cls(channels=tuple(int(c) for c in d["channels"]), embedding=int(d["embedding"]),
                      resolution=int(d["resolution"]), condition=int(d.get("condition", 0)),
                      text_model=str(d.get("text_model", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: bad denoiser config in its metadata ({exc})") from exc
        if len(cfg.channels) < 2 or min(cfg.channels) < 8 or any(c % 8 for c in cfg.channels) \
                or cfg.resolution % MULTIPLE or cfg.embedding < 1 or cfg.condition < 0 \
                or (cfg.condition > 0) != bool(cfg.text_model):
            raise CheckpointError(f"{source}: bad denoiser config in its metadata ({d})")
        return cfg


class _Block(nn.Module):
    def __init__(self, c: int, emb: int):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, 1, 1)
        self.n2, self.c2 = nn.GroupNorm(8, c), nn.Conv2d(c, c, 3, 1, 1)
        self.film = nn.Linear(emb, 2 * c)

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x)))
        s, b = self.film(e)[:, :, None, None].chunk(2, 1)
        h = self.n2(h) * (1 + s) + b
        return x + self.c2(F.silu(h))


class _UNet(nn.Module):
    def __init__(self, ch, emb: int, condition: int = 0):
        super().__init__()
        self.emb = nn.Sequential(nn.Linear(16, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond = nn.Linear(condition, emb) if condition else None
        self.inp = nn.Conv2d(3, ch[0], 4, 2, 1)
        self.enc = nn.ModuleList([_Block(c, emb) for c in ch])
        self.down = nn.ModuleList([nn.Conv2d(ch[i], ch[i + 1], 3, 2, 1) for i in range(len(ch) - 1)])
        self.mid = _Block(ch[-1], emb)
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 4, 2, 1) for i in range(len(ch) - 1)])
        self.dec = nn.ModuleList([_Block(c, emb) for c in ch[:-1]])
        self.merge = nn.ModuleList([nn.Conv2d(2 * c, c, 1) for c in ch[:-1]])
        self.out = nn.ConvTranspose2d(ch[0], 3, 4, 2, 1)
        self.skip = nn.Conv2d(3, 3, 3, 1, 1)

    def forward(self, x, c_noise, cond=None):
        f = torch.arange(8, dtype=x.dtype, device=x.device) * 0.5
        e = self.emb(torch.cat([torch.sin(c_noise[:, None] * 2 ** f), torch.cos(c_noise[:, None] * 2 ** f)], 1))
        if self.cond is not None:
            e = e + self.cond(cond if cond is not None else x.new_zeros(x.shape[0], self.cond.in_features))
        h = self.inp(x)
        skips = []
        for i, blk in enumerate(self.enc):
            h = blk(h, e)
            if i < len(self.down):
                skips.append(h)
                h = self.down[i](h)
        h = self.mid(h, e)
        for i in reversed(range(len(self.up))):
            h = self.merge[i](torch.cat([self.up[i](h), skips[i]], 1))
            h = self.dec[i](h, e)
        return self.out(F.silu(h)) + self.skip(x)


class Denoiser(nn.Module):
    """D(x, sigma[, cond]): the clean-image estimate of a noisy image, both in -1..1.

    A conditional denoiser (``config.condition > 0``) also takes the normalised
    text embedding of a caption by ``config.text_model``, [N, condition]; a
    zero vector (or None) asks for the unconditional estimate, which it was
    trained on too (for classifier-free guidance)."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        self.net = _UNet(config.channels, config.embedding, config.condition)

    @property
    def multiple(self) -> int:
        return 2 ** len(self.config.channels)

    @property
    def conditional(self) -> bool:
        return self.config.condition > 0

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None and cond.shape[-1] != self.config.condition:
            raise ValueError(f"the denoiser takes a condition of width {self.config.condition}, "
                             f"got {tuple(cond.shape)}")
        sigma = sigma.to(x.dtype).reshape(-1, 1, 1, 1)
        c_skip = SIGMA_DATA ** 2 / (sigma ** 2 + SIGMA_DATA ** 2)
        c_out = sigma * SIGMA_DATA / (sigma ** 2 + SIGMA_DATA ** 2).sqrt()
        c_in = 1 / (sigma ** 2 + SIGMA_DATA ** 2).sqrt()
        return c_skip * x + c_out * self.net(c_in * x, sigma.flatten().log() / 4, cond)


def grid_for(model: Denoiser, width: int, height: int) -> tuple:
    """(rows, columns) of the denoiser's grid for a width x height render: its
    training resolution on the longer side, the render's aspect, multiples of
    what the U-Net needs."""
    side, m, longest = model.config.resolution, model.multiple, max(width, height)
    return tuple(max(m, m * math.ceil(side * s / longest / m)) for s in (height, width))


@functools.lru_cache(maxsize=4)
def _text_model(name: str):
    from .clip_loading import load_clip

    return load_clip(name)


def text_condition(model: Denoiser, prompts: list, device=None) -> torch.Tensor | None:
    """The condition of a text-conditional denoiser for weighted prompts
    ``[(text, weight), ...]``: the normalised, weight-averaged text embedding
    of the positive ones by the CLIP it was trained with ([1, D]). None for an
    unconditional denoiser."""
    if not model.conditional:
        return None
    positive = [(t, float(w)) for t, w in prompts if float(w) > 0]
    if not positive:
        raise ValueError("a text-conditional denoiser needs a text prompt with a positive weight "
                         "(from the clip loss's prompts or its own `prompts`)")
    loaded = _text_model(model.config.text_model)
    if int(loaded.model.text_projection.shape[1]) != model.config.condition:
        raise CheckpointError(f"the denoiser was conditioned on {model.config.condition}-wide embeddings, "
                              f"{model.config.text_model} makes {loaded.model.text_projection.shape[1]}")
    with torch.no_grad():
        e = F.normalize(loaded.model.encode_text(loaded.tokenizer([t for t, _ in positive])).float(), dim=-1)
    w = torch.tensor([w for _, w in positive])
    return F.normalize((e * w[:, None]).sum(0, keepdim=True), dim=-1).to(device)


def guided_estimate(model: Denoiser, x: torch.Tensor, sigma, cond: torch.Tensor | None = None,
                    scale: float = 1.0) -> torch.Tensor:
    """The clean estimate of ``x`` at noise ``sigma`` (a number or [N]); with a
    condition, classifier-free guidance: ``D(x) + scale * (D(x | cond) - D(x))``
    (scale 1: the conditional estimate; 0: the unconditional one)."""
    n = x.shape[0]
    s = torch.as_tensor(sigma, device=x.device, dtype=x.dtype).reshape(-1).expand(n)
    if cond is None or not model.conditional or scale == 0:
        return model(x, s)
    cond = cond.to(x.device, x.dtype).expand(n, -1)
    if scale == 1:
        return model(x, s, cond)
    c, u = model(torch.cat([x, x]), torch.cat([s, s]), torch.cat([cond, torch.zeros_like(cond)])).chunk(2)
    return u + scale * (c - u)


def save_denoiser(model: Denoiser, path: Path, description: str, training: dict) -> None:
    config = asdict(model.config)
    config["channels"] = list(config["channels"])
    write_safetensors(path, model.state_dict(), {"format": FORMAT, "config": config, "description": description,
                                                 "training": training}, dtype=torch.float16)


def _expand(p) -> Path:
    return Path(p).expanduser()


def denoiser_path(model: str, resolve=_expand) -> Path:
    """The file of an embedded denoiser's name or of a denoiser .safetensors path."""
    return Path(embedded_models().get(model) or resolve_model_file(str(resolve(model))))


@shared
def load_denoiser(model: str, resolve=_expand) -> Denoiser:
    """An embedded denoiser's name or a denoiser .safetensors path, frozen, in eval mode."""
    path = denoiser_path(model, resolve)
    loaded = read_model(path, FORMAT, "pixloom denoiser")
    meta = loaded.metadata
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: no pixloom.config metadata (the denoiser's architecture)")
    den = Denoiser(DenoiserConfig.from_dict(meta["config"], str(path)))
    try:
        den.load_state_dict(loaded.state_dict)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: does not match its config ({(lines[1] if len(lines) > 1 else lines[0]).strip()[:200]})") from exc
    return den.eval().requires_grad_(False)
