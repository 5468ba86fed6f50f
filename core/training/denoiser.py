"""Train the world denoiser (the ``diffusion`` generator's prior) on the shapes world.

    python -m pixloom.training.denoiser --out plugins/weights/shapes-denoiser.safetensors \\
        --steps 12000 --resolution 32 --threads 1
    python -m pixloom.training.denoiser --out plugins/weights/shapes-denoiser-text.safetensors \\
        --steps 12000 --resolution 32 --threads 1 --condition shapes-clip

Denoising score matching with EDM's preconditioning and loss weighting: every
step draws a batch of world images (WORLD.md, rendered at 64 px and
area-downsampled to ``--resolution``), a log-normal noise level per image
(``--p-mean``, ``--p-std``), and regresses the clean image. With
``--condition CLIP`` the denoiser also sees the normalised text embedding of
one random caption of each image (every caption form; a zero vector for
``--uncond`` of them, so one model gives both estimates of classifier-free
guidance). Deterministic under
``--seed`` for a given thread count; writes fp16 .safetensors (and a checkpoint
every ``--save-every`` steps, so a long run can be looked at while it trains).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .. import world
from ..device import keeps_torch_threads
from ..denoiser import SIGMA_DATA, Denoiser, DenoiserConfig, save_denoiser


def lr_at(step: int, steps: int, base: float, warmup: int = 200) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from base to base / 10."""
    return base * min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))


def batch(n: int, resolution: int, g: torch.Generator) -> torch.Tensor:
    """n world images in -1..1 at ``resolution``."""
    images = world.sample(n, g)[0]
    if resolution != world.RESOLUTION:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    return images * 2 - 1


class CaptionEmbedder:
    """Normalised text embeddings of captions by a CLIP, cached (the world's captions repeat)."""

    def __init__(self, clip_name: str):
        from ..clip_loading import load_clip

        loaded = load_clip(clip_name)
        self.model, self.tokenizer = loaded.model.requires_grad_(False), loaded.tokenizer
        self.width = int(self.model.text_projection.shape[1])
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self.cache})
        if new:
            e = self.model.encode_text(self.tokenizer(new)).float()
            for t, v in zip(new, F.normalize(e, dim=-1)):
                self.cache[t] = v
        return torch.stack([self.cache[t] for t in texts])


def conditioned_batch(n: int, resolution: int, g: torch.Generator, embed: CaptionEmbedder, form_p: float,
                      uncond: float) -> tuple[torch.Tensor, torch.Tensor]:
    """n world images in -1..1 and the embedding of one random caption of each
    (a zero vector, the unconditional case, with probability ``uncond``)."""
    images, attrs = world.sample(n, g)
    if resolution != world.RESOLUTION:
        images = F.interpolate(images, size=(resolution, resolution), mode="area")
    captions = [world.caption(attrs, i, world.random_form(g, form_p)) for i in range(n)]
    keep = (torch.rand(n, generator=g) >= uncond).float()[:, None]
    return images * 2 - 1, embed(captions) * keep


def loss_on(model: Denoiser, clean: torch.Tensor, g: torch.Generator, p_mean: float, p_std: float,
            cond: Optional[torch.Tensor] = None) -> torch.Tensor:
    n = clean.shape[0]
    sigma = (torch.randn(n, generator=g) * p_std + p_mean).exp()
    noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
    weight = (sigma ** 2 + SIGMA_DATA ** 2) / (sigma * SIGMA_DATA) ** 2
    return (weight.view(-1, 1, 1, 1) * (model(noisy, sigma, cond) - clean) ** 2).mean()


@keeps_torch_threads
def train(args) -> dict:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    embed = CaptionEmbedder(args.condition) if args.condition else None
    model = Denoiser(DenoiserConfig(resolution=args.resolution, condition=embed.width if embed else 0,
                                    text_model=args.condition or ""))
    init = continue_from(model, args.init) if args.init else None
    opt = torch.optim.Adam(model.parameters(), args.lr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"denoiser: {n_params / 1e6:.2f}M parameters, {args.resolution} px, threads {args.threads}", flush=True)
    t0, ema = time.time(), None

    def meta(step: int) -> dict:
        return {"seed": args.seed, "steps": step, "max_steps": args.steps, "batch": args.batch, "lr": args.lr,
                "p_mean": args.p_mean, "p_std": args.p_std, "resolution": args.resolution,
                "condition": args.condition or None, "form_p": args.form_p, "uncond": args.uncond,
                "threads": args.threads, "init": init, "minutes": round((time.time() - t0) / 60, 2),
                "loss_ema": round(ema, 4) if ema is not None else None, "parameters": n_params,
                "torch": torch.__version__, "machine": platform.processor() or platform.machine()}

    description = (f"A denoiser of pixloom's shapes world (WORLD.md) at {args.resolution} px"
                   + (f", conditioned on {args.condition}'s text embeddings of captions" if embed else "")
                   + (f", trained by pixloom.training.denoiser from {init['file']} ({init['steps']} steps"
                      f"{'' if init['resolution'] == args.resolution else ' at %d px' % init['resolution']})"
                      f" for {args.steps} more steps, seed {args.seed}." if init else
                      f", trained from scratch by pixloom.training.denoiser, seed {args.seed}."))
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr)
        if embed is None:
            loss = loss_on(model, batch(args.batch, args.resolution, g), g, args.p_mean, args.p_std)
        else:
            clean, cond = conditioned_batch(args.batch, args.resolution, g, embed, args.form_p, args.uncond)
            loss = loss_on(model, clean, g, args.p_mean, args.p_std, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % args.log_every == 0 or step == 1:
            print(f"step {step} loss {ema:.4f} {time.time() - t0:.0f}s", flush=True)
        if args.save_every and step % args.save_every == 0 and step < args.steps:
            save_denoiser(model, out, description, meta(step))
    save_denoiser(model, out, description, meta(args.steps))
    print(f"done: {args.steps} steps in {(time.time() - t0) / 60:.1f} min; weights {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)", flush=True)
    return meta(args.steps)


def continue_from(model: Denoiser, name: str) -> dict:
    """Load a saved denoiser's weights into ``model`` (same architecture and
    condition; the resolution may differ, since the U-Net is convolutional: a
    32 px model is a start for a 64 px one); what it was is returned for the
    new file's metadata."""
    from ..checkpoints import sha256_file
    from ..denoiser import FORMAT, denoiser_path, load_denoiser
    from ..errors import CheckpointError
    from ..models import read_model

    path = denoiser_path(name)
    start = load_denoiser(str(path))
    if dataclasses.replace(start.config, resolution=model.config.resolution) != model.config:
        raise CheckpointError(f"--init {name}: its config {start.config} differs from this run's {model.config}")
    model.load_state_dict({k: v.float() for k, v in start.state_dict().items()})
    before = read_model(path, FORMAT, "pixloom denoiser").metadata.get("training") or {}
    return {"file": path.name, "sha256": sha256_file(path), "steps": before.get("steps"),
            "resolution": start.config.resolution, "training": before}


def parse_args(argv: Optional[list[str]] = None):
    p = argparse.ArgumentParser(prog="python -m pixloom.training.denoiser", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--resolution", type=int, default=32, help="side of the training images (a multiple of 16)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--p-mean", type=float, default=-0.6, help="mean of log(sigma)")
    p.add_argument("--p-std", type=float, default=1.1, help="spread of log(sigma)")
    p.add_argument("--condition", metavar="CLIP", default=None,
                   help="condition on this CLIP's text embeddings of captions (e.g. shapes-clip); default: none")
    p.add_argument("--form-p", type=float, default=0.7,
                   help="with --condition: probability of each optional part of a caption")
    p.add_argument("--uncond", type=float, default=0.15,
                   help="with --condition: share of images trained without a caption (classifier-free guidance)")
    p.add_argument("--init", metavar="DENOISER", default=None,
                   help="continue from this denoiser (an embedded name or a .safetensors file) instead of from scratch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints (0: only at the end)")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.resolution < 16 or args.resolution % 16 or args.resolution > world.RESOLUTION:
        p.error(f"--resolution must be a multiple of 16 up to {world.RESOLUTION}")
    if not (0 <= args.form_p <= 1 and 0 <= args.uncond < 1):
        p.error("--form-p must be in 0..1 and --uncond in 0..1 (below 1)")
    if args.lr <= 0 or args.p_std <= 0 or args.save_every < 0:
        p.error("--lr and --p-std must be positive, --save-every not negative")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    from ..errors import PixloomError

    args = parse_args(argv)
    try:
        train(args)
    except PixloomError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint (if any) is intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
