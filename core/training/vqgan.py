"""Train the embedded VQGAN (taming's modules, VQModel's layout) on the shapes world.

    python -m pixloom.training.vqgan --out plugins/weights/shapes-vqgan.safetensors \\
        --seed 0 --steps 900 --minutes 16

The model is taming's Encoder/Decoder with a ``VectorQuantizer2`` codebook at
f=4 (a 64 px image is 16 x 16 tokens); the decoder is fully convolutional (plus
taming's one mid-level attention block), so it renders any multiple of 4 px.
At 32 base channels taming's GroupNorm(32) would normalise each channel alone
and lose absolute colour, so this model uses 8 groups (``norm_groups`` in its
config; the state dict is unchanged).

Loss: L1 + MSE reconstruction, an L1 loss on image gradients (sharp edges), and
taming's codebook/commitment loss. No perceptual or adversarial loss: nothing is
downloaded. The first ``--warm`` of the run trains a plain autoencoder; the
codebook then starts at k-means centres of the encoder's outputs, and codes
unused for a while are restarted at random encoder outputs of the current
batch, so the whole codebook stays in use.

With ``--steps`` only, a run is deterministic for a given machine and thread
count; ``--minutes`` is a hard budget (the schedule follows whichever budget is
further along). The weights are written as .safetensors (keys of taming's
VQModel, config in ``pixloom.config``), with a preview PNG of held-out images
over their reconstructions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..device import keeps_torch_threads
from ..models import write_safetensors
from ..vqgan import FORMAT, VQGAN, VQGANConfig
from . import autoencoding as ae

ARCH = {
    "ddconfig": {"double_z": False, "z_channels": 64, "resolution": 64, "in_channels": 3, "out_ch": 3,
                 "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0},
    "n_embed": 512,
    "embed_dim": 16,
    "norm_groups": 8,  # 4 channels a group at ch=32, as taming's models have at ch=128
}


def grad_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


@torch.no_grad()
def restart_dead_codes(model: VQGAN, usage: torch.Tensor, z: torch.Tensor, g: torch.Generator) -> int:
    """Move codes with no use since the last restart onto random latents of the batch."""
    dead = (usage == 0).nonzero(as_tuple=True)[0]
    if dead.numel() == 0:
        return 0
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    pick = torch.randint(0, flat.shape[0], (dead.numel(),), generator=g)
    noise = torch.randn(dead.numel(), flat.shape[1], generator=g) * 0.01 * flat.std()
    model.codebook[dead] = flat[pick] + noise
    return int(dead.numel())


@torch.no_grad()
def kmeans_codebook(model: VQGAN, g: torch.Generator, batches: int = 8, batch_size: int = 32,
                    mosaic: float = 0.25, iters: int = 10) -> None:
    """Set the codebook to k-means centres of encoder outputs (after the warm start)."""
    model.eval()
    flat = torch.cat([model.encode_latent(ae.batch(batch_size, g, mosaic) * 2 - 1).permute(0, 2, 3, 1)
                      .reshape(-1, model.config.embed_dim) for _ in range(batches)])
    model.train()
    k = model.config.n_embed
    centres = flat[torch.randperm(flat.shape[0], generator=g)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(flat, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=k).float()[:, None]
        empty = counts[:, 0] == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1))
        if bool(empty.any()):  # reseed empty clusters on random latents
            centres[empty] = flat[torch.randint(0, flat.shape[0], (int(empty.sum()),), generator=g)]
    model.codebook.copy_(centres)


@torch.no_grad()
def evaluate(model: VQGAN, images: torch.Tensor, chunk: int = 64) -> dict:
    model.eval()
    recons, codes = [], []
    for i in range(0, len(images), chunk):
        rec, _, idx = model(images[i: i + chunk] * 2 - 1)
        recons.append(((rec + 1) / 2).clamp(0, 1))
        codes.append(idx.flatten())
    recon = torch.cat(recons)
    codes = torch.cat(codes)
    counts = torch.bincount(codes, minlength=model.config.n_embed).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    mse = float(F.mse_loss(recon, images))
    return {"mse": round(mse, 6), "psnr": round(ae.psnr(mse), 2), "l1": round(float((recon - images).abs().mean()), 5),
            "codes_used": int((counts > 0).sum()), "perplexity": round(perplexity, 1), "recon": recon}


@keeps_torch_threads
def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    config = VQGANConfig.from_dict(dict(ARCH, n_embed=args.codes, embed_dim=args.embed_dim))
    model = VQGAN(config)
    with torch.no_grad():
        model.codebook.normal_(0, 1.0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.5, 0.9))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"vqgan f={config.factor}, {config.n_embed} codes x {config.embed_dim}: {n_params / 1e6:.2f}M parameters, "
          f"threads {args.threads}, batch {args.batch}", flush=True)
    budget = ae.Budget(args.steps, args.minutes)
    usage = torch.zeros(config.n_embed, dtype=torch.long)
    ema = None
    restarted = 0
    quantizing = args.warm <= 0
    while not budget.done():
        lr = ae.lr_at(budget.progress(), args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        warm = budget.progress() < args.warm
        if not warm and not quantizing:
            kmeans_codebook(model, g, mosaic=args.mosaic)
            quantizing = True
            print(f"step {budget.step}: warm start over, codebook set by k-means on encoder outputs", flush=True)
        x = ae.batch(args.batch, g, args.mosaic)
        z = model.encode_latent(x * 2 - 1)
        if quantizing:
            z_q, qloss, info = model.quantize(z)
        else:  # warm start: a plain autoencoder, so the codebook starts from useful latents
            z_q, qloss, info = z, z.new_zeros(()), (None, None, torch.zeros(0, dtype=torch.long))
        rec = (model.decode(z_q) + 1) / 2
        rec_loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
        loss = rec_loss + args.edge * grad_l1(rec, x) + qloss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        budget.step += 1
        usage += torch.bincount(info[2].flatten(), minlength=config.n_embed)
        if (quantizing and args.restart_every and budget.step % args.restart_every == 0
                and budget.progress() < 0.85):
            restarted += restart_dead_codes(model, usage, z.detach(), g)
            usage.zero_()
        value = float(rec_loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if budget.step % args.log_every == 0 or budget.step == 1:
            print(f"step {budget.step} rec {value:.4f} ema {ema:.4f} q {float(qloss.detach()):.4f} lr {lr:.2e} "
                  f"restarted {restarted} elapsed {budget.elapsed_min():.2f} min", flush=True)
    images = ae.eval_images(args.eval_n)
    result = evaluate(model, images)
    recon = result.pop("recon")
    meta = {
        "format": FORMAT,
        "config": config.to_dict(),
        "description": (f"A tiny VQGAN (taming-transformers modules, f={config.factor}, {config.n_embed} codes) "
                        f"trained on pixloom's shapes world by pixloom.training.vqgan, seed {args.seed}."),
        "training": {"seed": args.seed, "steps": budget.step, "max_steps": args.steps,
                     "minutes": round(budget.elapsed_min(), 2), "max_minutes": args.minutes,
                     "time_capped": budget.time_capped, "batch": args.batch, "lr": args.lr,
                     "threads": args.threads, "codes_restarted": restarted, "parameters": n_params,
                     **ae.machine()},
        "eval": {"images": args.eval_n, "seed": ae.EVAL_SEED, **result},
    }
    write_safetensors(out, model.state_dict(), meta)
    preview = Path(args.preview) if args.preview else out.with_suffix(".preview.png")
    ae.save_preview(preview, images, recon)
    print(f"done: {budget.step} steps in {budget.elapsed_min():.1f} min; held-out mse {result['mse']} "
          f"(psnr {result['psnr']} dB), {result['codes_used']}/{config.n_embed} codes used, "
          f"perplexity {result['perplexity']}; wrote {out} and {preview}", flush=True)
    return meta


def parse_args(argv: Optional[list] = None):
    p = argparse.ArgumentParser(prog="python -m pixloom.training.vqgan", description=__doc__.splitlines()[0])
    ae.common_args(p, batch_size=32, lr=1e-3)
    p.add_argument("--codes", type=int, default=ARCH["n_embed"], help="codebook size")
    p.add_argument("--embed-dim", type=int, default=ARCH["embed_dim"], help="codebook vector size")
    p.add_argument("--edge", type=float, default=0.5, help="weight of the image-gradient L1 loss")
    p.add_argument("--restart-every", type=int, default=50, help="steps between dead-code restarts (0: never)")
    p.add_argument("--warm", type=float, default=0.1,
                   help="fraction of the run trained without quantization before a k-means codebook")
    args = p.parse_args(argv)
    ae.check_args(p, args)
    return args


def main(argv: Optional[list] = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
