"""Train the embedded dVAE (OpenAI's dall_e Encoder and Decoder) on the shapes world.

    python -m pixloom.training.dvae --out plugins/weights/shapes-dvae.safetensors \\
        --seed 0 --minutes 50 --batch 16 --zoom 0.5 --threads 1

By default the classes' smallest sizes (n_hid 64, one block a group, 512
tokens; ``--n-hid``, ``--blocks`` and ``--vocab`` change them); four groups, so
a 64 px image is 8 x 8 tokens (``--factor 4``: 16 x 16, the same modules with
one resampling fewer). Training follows the DALL-E recipe in
small: the encoder's logits become tokens by a Gumbel-softmax relaxation whose
temperature anneals from ``--tau-start`` to ``--tau-end``. After a soft start, a
growing share of each batch (up to ``--hard``) is decoded from straight-through
one-hot tokens, as a render's ``to_image()`` decodes them. The decoder's first
three channels give the image, ``unmap_pixels(sigmoid(x[:, :3]))``; the loss is
L1 + MSE on that image, an L1 loss on its gradients, a small logit-Laplace
likelihood (which also trains the three scale channels), a small KL to the
uniform prior over tokens, and the gap between the batch's token-usage entropy
and its maximum (so the whole vocabulary stays in use).

``--init`` starts from a trained dVAE; with ``--decoder-only`` its encoder is
frozen and only the decoder learns, from the encoder's argmax tokens (the
tokens a render ends with) and, for ``--soft-share`` of each batch, from
tempered softmax mixtures of its logits at temperatures between ``--tau-end``
and 1 (what a render's steps decode). The tokens' meaning stays fixed, so
the objective is plain reconstruction and the decoder gets sharper.

With ``--steps`` only, a run is deterministic for a given machine and thread
count; ``--minutes`` is a hard budget. The weights are written as .safetensors
(``encoder.*`` / ``decoder.*`` keys of the dall_e classes, config in
``pixloom.config``), with a preview PNG of held-out images over their argmax
reconstructions.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from ..device import keeps_torch_threads
from ..dvae import DVAE, FACTORS, FORMAT, DVAEConfig, one_hot_tokens
from ..models import write_safetensors
from . import autoencoding as ae
from .vqgan import grad_l1

ARCH = {"vocab_size": 512, "n_hid": 64, "n_blk_per_group": 1, "n_init": 64, "factor": 8}
_EPS = 0.1  # dall_e's logit_laplace_eps


def tokens_from(logits: torch.Tensor, tau: float, g: torch.Generator, hard: torch.Tensor) -> torch.Tensor:
    """Gumbel-softmax tokens; rows flagged ``hard`` are straight-through one-hot."""
    u = torch.rand(logits.shape, generator=g).clamp_(1e-9, 1 - 1e-9)
    soft = F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=1)
    if not bool(hard.any()):
        return soft
    one_hot = one_hot_tokens(soft.argmax(1), soft.shape[1], soft.dtype)
    st = one_hot + soft - soft.detach()
    return torch.where(hard[:, None, None, None], st, soft)


def decoder_tokens(logits: torch.Tensor, g: torch.Generator, soft_share: float, tau_min: float) -> torch.Tensor:
    """A frozen encoder's tokens for decoder training: one-hot argmax rows, and for
    ``soft_share`` of the rows a softmax of the logits at a temperature drawn
    log-uniformly from [tau_min, 1]."""
    hard = one_hot_tokens(logits.argmax(1), logits.shape[1], logits.dtype)
    n = logits.shape[0]
    soft_rows = torch.rand(n, generator=g) < soft_share
    if not bool(soft_rows.any()):
        return hard
    tau = tau_min ** torch.rand(n, generator=g)
    soft = F.softmax(logits / tau[:, None, None, None], dim=1)
    return torch.where(soft_rows[:, None, None, None], soft, hard)


def logit_laplace_nll(stats: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel negative log-likelihood of x (0..1) under the decoder's logit-Laplace."""
    mu, ln_b = stats[:, :3], stats[:, 3:6].clamp(-6, 4)
    xm = (1 - 2 * _EPS) * x + _EPS
    y = torch.log(xm) - torch.log1p(-xm)
    return ((y - mu).abs() * torch.exp(-ln_b) + ln_b + math.log(2) + torch.log(xm * (1 - xm))).mean()


def kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    logq = F.log_softmax(logits, dim=1)
    return (logq.exp() * logq).sum(1).mean() + math.log(logits.shape[1])


def usage_gap(logits: torch.Tensor) -> torch.Tensor:
    """log V minus the entropy of the batch's average token distribution: zero when
    the batch as a whole uses every token equally."""
    mean_q = F.softmax(logits, dim=1).mean((0, 2, 3))
    return math.log(logits.shape[1]) + (mean_q * torch.log(mean_q + 1e-10)).sum()


@torch.no_grad()
def evaluate(model: DVAE, images: torch.Tensor, chunk: int = 64) -> dict:
    model.eval()
    recons, codes = [], []
    for i in range(0, len(images), chunk):
        logits = model.encode_logits(images[i: i + chunk])
        idx = logits.argmax(1)
        one_hot = one_hot_tokens(idx, model.vocab_size)
        recons.append(model.decode(one_hot))
        codes.append(idx.flatten())
    recon = torch.cat(recons)
    codes = torch.cat(codes)
    counts = torch.bincount(codes, minlength=model.vocab_size).float()
    p = counts / counts.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    mse = float(F.mse_loss(recon, images))
    return {"mse": round(mse, 6), "psnr": round(ae.psnr(mse), 2), "l1": round(float((recon - images).abs().mean()), 5),
            "codes_used": int((counts > 0).sum()), "perplexity": round(perplexity, 1), "recon": recon}


@keeps_torch_threads
def train(args) -> dict:
    from dall_e import unmap_pixels

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    if args.init:
        from ..dvae import load_dvae

        model = load_dvae(args.init)
        config = model.config
    else:
        config = DVAEConfig(**dict(ARCH, vocab_size=args.vocab, n_hid=args.n_hid, n_blk_per_group=args.blocks,
                                   factor=args.factor))
        model = DVAE(config)
    model.train().requires_grad_(True)
    if args.decoder_only:
        model.encoder.eval().requires_grad_(False)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"dvae f={config.factor}, {config.vocab_size} tokens: {n_params / 1e6:.2f}M parameters, "
          f"threads {args.threads}, batch {args.batch}", flush=True)
    budget = ae.Budget(args.steps, args.minutes)
    ema = None
    while not budget.done():
        progress = budget.progress()
        lr = ae.lr_at(progress, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        tau = args.tau_start * (args.tau_end / args.tau_start) ** min(1.0, progress / 0.8)
        kl_w = args.kl * min(1.0, progress / 0.2)
        x = ae.batch(args.batch, g, args.mosaic, args.zoom)
        if args.decoder_only:
            with torch.no_grad():
                tokens = decoder_tokens(model.encode_logits(x), g, args.soft_share, args.tau_end)
            logits = None
        else:
            logits = model.encode_logits(x)
            hard_share = args.hard * min(1.0, max(0.0, (progress - 0.15) / 0.45))  # soft first, then ramp up
            hard = torch.rand(args.batch, generator=g) < hard_share
            tokens = tokens_from(logits, tau, g, hard)
        stats = model.decode_stats(tokens)
        rec = unmap_pixels(torch.sigmoid(stats[:, :3]))
        rec_loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
        loss = rec_loss + args.edge * grad_l1(rec, x) + args.nll * logit_laplace_nll(stats, x)
        if logits is not None:
            loss = loss + kl_w * kl_uniform(logits) + args.usage * usage_gap(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        budget.step += 1
        value = float(rec_loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if budget.step % args.log_every == 0 or budget.step == 1:
            print(f"step {budget.step} rec {value:.4f} ema {ema:.4f} tau {tau:.3f} lr {lr:.2e} "
                  f"elapsed {budget.elapsed_min():.2f} min", flush=True)
    images = ae.eval_images(args.eval_n)
    result = evaluate(model, images)
    recon = result.pop("recon")
    meta = {
        "format": FORMAT,
        "config": config.to_dict(),
        "description": (f"A tiny DALL-E dVAE (dall_e Encoder/Decoder, {config.vocab_size} tokens, f={config.factor}) "
                        f"trained on pixloom's shapes world by pixloom.training.dvae, seed {args.seed}."),
        "training": {"seed": args.seed, "steps": budget.step, "max_steps": args.steps,
                     "minutes": round(budget.elapsed_min(), 2), "max_minutes": args.minutes,
                     "time_capped": budget.time_capped, "batch": args.batch, "lr": args.lr,
                     "tau": [args.tau_start, args.tau_end], "threads": args.threads, "parameters": n_params,
                     "zoom": args.zoom, "init": args.init, "decoder_only": args.decoder_only,
                     **ae.machine()},
        "eval": {"images": args.eval_n, "seed": ae.EVAL_SEED, "tokens": "argmax", **result},
    }
    write_safetensors(out, model.state_dict(), meta)
    preview = Path(args.preview) if args.preview else out.with_suffix(".preview.png")
    ae.save_preview(preview, images, recon)
    print(f"done: {budget.step} steps in {budget.elapsed_min():.1f} min; held-out mse {result['mse']} "
          f"(psnr {result['psnr']} dB), {result['codes_used']}/{config.vocab_size} tokens used, "
          f"perplexity {result['perplexity']}; wrote {out} and {preview}", flush=True)
    return meta


def parse_args(argv: Optional[list] = None):
    p = argparse.ArgumentParser(prog="python -m pixloom.training.dvae", description=__doc__.splitlines()[0])
    ae.common_args(p, batch_size=32, lr=2e-3)
    # the architecture of a dVAE trained from scratch (None: not given, so that --init
    # can refuse them rather than ignore them)
    p.add_argument("--vocab", type=int, help=f"number of tokens (>= 512; default {ARCH['vocab_size']})")
    p.add_argument("--n-hid", type=int, help=f"the classes' hidden width (default {ARCH['n_hid']}; a multiple "
                   "of 4: each block's bottleneck is a quarter of its width)")
    p.add_argument("--blocks", type=int, help=f"residual blocks a group (default {ARCH['n_blk_per_group']})")
    p.add_argument("--factor", type=int, choices=FACTORS, help=f"pixels a token a side (default {ARCH['factor']}, "
                   "the published classes; 4: a 64 px image is 16 x 16 tokens)")
    p.add_argument("--tau-start", type=float, default=1.0)
    p.add_argument("--tau-end", type=float, default=1 / 16)
    p.add_argument("--hard", type=float, default=0.75, help="fraction of rows decoded from straight-through one-hot tokens")
    p.add_argument("--usage", type=float, default=0.1, help="weight of the batch token-usage entropy gap")
    p.add_argument("--kl", type=float, default=0.01, help="weight of the KL to the uniform token prior")
    p.add_argument("--nll", type=float, default=0.02, help="weight of the logit-Laplace likelihood")
    p.add_argument("--edge", type=float, default=0.5, help="weight of the image-gradient L1 loss")
    p.add_argument("--init", help="start from this dVAE (embedded name or .safetensors)")
    p.add_argument("--decoder-only", action="store_true",
                   help="with --init: freeze the encoder, train the decoder on its tokens")
    p.add_argument("--soft-share", type=float, default=0.5,
                   help="--decoder-only: fraction of rows decoded from tempered softmax mixtures")
    args = p.parse_args(argv)
    ae.check_args(p, args)
    if args.decoder_only and not args.init:
        p.error("--decoder-only needs --init (a trained dVAE whose encoder stays as it is)")
    arch_flags = {"vocab": "vocab_size", "n_hid": "n_hid", "blocks": "n_blk_per_group", "factor": "factor"}  # dest: ARCH key
    given = ["--" + dest.replace("_", "-") for dest in arch_flags if getattr(args, dest) is not None]
    if args.init and given:
        p.error(f"{', '.join(given)}: a model from --init keeps its own architecture "
                f"(drop {'it' if len(given) == 1 else 'them'}, or drop --init)")
    for dest, key in arch_flags.items():
        if getattr(args, dest) is None:
            setattr(args, dest, ARCH[key])
    if args.n_hid < 4 or args.n_hid % 4 or args.blocks < 1:
        p.error(f"--n-hid must be a positive multiple of 4 and --blocks at least 1 (got {args.n_hid}, {args.blocks})")
    if not 0.0 <= args.soft_share <= 1.0:
        p.error(f"--soft-share must be between 0 and 1 (got {args.soft_share})")
    return args


def main(argv: Optional[list] = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
