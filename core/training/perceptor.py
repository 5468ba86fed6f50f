"""Train a small CLIP (OpenAI's model code) on the shapes world.

    python -m pixloom.training.perceptor --out plugins/weights/shapes-clip.safetensors \\
        --seed 0 --arch resnet --steps 4000 --minutes 60

Data is drawn on the fly from :mod:`pixloom.world` with a generator seeded by
``--seed``; the held-out evaluation seed (pixloom.zeroshot.DEFAULT_SEED) is
refused as a training seed. Each image gets several captions of random forms
(from "a red shape" to the full caption), and the loss is a multi-positive
InfoNCE in both directions: every caption in the batch that is true of an image
is one of its positives (its log-probability averaged over the positives), and
captions whose truth is unclear for an image (a position phrase for a shape on
a third's border, small/large for a medium one) are left out of that image's
softmax.

The learning rate follows a warmup + cosine schedule over ``--steps``. With
``--steps`` only (``--minutes 0``), a run is deterministic on a given machine
and thread count. ``--minutes`` is a hard time budget: the run stops when it is
spent, and the schedule then follows whichever budget is further along, so a
slow machine still ends annealed (at the price of determinism).

The weights are written (float16, keys of ``CLIP.state_dict()``, so
``clip_model().build_model(state_dict)`` rebuilds the model) every
``--save-every`` minutes and at the end, followed by a zero-shot evaluation
written beside them as ``<stem>.eval.json``.
"""
from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import kornia
import torch
import torch.nn.functional as F

from .. import world, zeroshot
from ..clip_compat import clip_model
from ..device import keeps_torch_threads
from ..errors import ArgumentParser
from ..files import atomic_write
from ..models import write_safetensors
from ..tokenizers import WordTokenizer

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CONTEXT_LENGTH = 20

# text heads must be width // 64: build_model infers them that way
ARCHS = {
    # the guidance perceptor
    "resnet": dict(embed_dim=128, vision_layers=(1, 1, 1, 1), vision_width=16, vision_patch_size=None,
                   transformer_width=128, transformer_layers=2),
    # the judge: wider, deeper vision tower, another embedding width, deeper text tower
    "resnet-wide": dict(embed_dim=96, vision_layers=(1, 2, 1, 1), vision_width=24, vision_patch_size=None,
                        transformer_width=64, transformer_layers=3),
    # a small ViT (trains far worse than the ResNets in our runs; kept for comparison)
    "vit": dict(embed_dim=128, vision_layers=4, vision_width=128, vision_patch_size=8,
                transformer_width=128, transformer_layers=2),
}


def build(arch: str, vocab_size: int) -> torch.nn.Module:
    cfg = dict(ARCHS[arch])
    width = cfg.pop("transformer_width")
    return clip_model().CLIP(
        image_resolution=world.RESOLUTION, context_length=CONTEXT_LENGTH, vocab_size=vocab_size,
        transformer_width=width, transformer_heads=max(1, width // 64), **cfg,
    )


def make_captions(attrs: world.Attributes, per_image: int, g: torch.Generator):
    """Unique caption texts for a batch and their claims (content ids)."""
    n = len(attrs)
    # per caption slot k, each optional part is said with probability p_k
    ps = torch.linspace(0.25, 0.75, per_image) if per_image > 1 else torch.tensor([0.5])
    u = torch.rand(n, per_image, 7, generator=g)
    texts, seen, contents = [], set(), []
    for i in range(n):
        for k in range(per_image):
            p = float(ps[k])
            r = u[i, k].tolist()
            prefix = world.PREFIXES[int(r[6] * 3) % 3] if r[5] < 0.25 else None
            form = world.Form(prefix=prefix, size=r[0] < p, colour=r[1] < p, shape=r[2] < 0.5 + p / 2,
                              position=r[3] < p, background=r[4] < p)
            content = world.content_of(attrs, i, form)
            if content == world.Content():          # "a shape" says nothing: say the shape
                content = world.Content(shape=world.SHAPES[int(attrs.shape[i])])
            text = world.compose(content, prefix)
            if text not in seen:
                seen.add(text)
                texts.append(text)
                contents.append(content)
    return texts, world.content_ids(contents)


def multi_positive_loss(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every true caption/image pair is a positive.

    logits [n_images, n_texts]; truth int8 of the same shape (1 true, 0 false,
    -1 unclear: left out of the softmax)."""
    valid = truth >= 0
    pos = (truth == 1).float()
    masked = logits.masked_fill(~valid, float("-inf"))
    logp_i = F.log_softmax(masked, dim=1).masked_fill(~valid, 0.0)
    logp_t = F.log_softmax(masked, dim=0).masked_fill(~valid, 0.0)
    loss_i = -(logp_i * pos).sum(1) / pos.sum(1).clamp(min=1)
    loss_t = -(logp_t * pos).sum(0) / pos.sum(0).clamp(min=1)
    return 0.5 * (loss_i.mean() + loss_t.mean())


def robustify(images: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """Photometric and slight geometric changes to a random ``share`` of the batch,
    so the perceptor keeps its answers on the views guidance shows it (crops of a
    resampled render, with noise and perspective), not only on clean world images:
    Gaussian noise (std up to 0.12), Gaussian blur (sigma up to 1.2 px) and a mild
    perspective warp. Positions stay within their thirds."""
    if share <= 0:
        return images
    n = images.shape[0]
    out = images.clone()
    pick = torch.rand(n, generator=g) < share
    kind = torch.randint(0, 3, (n,), generator=g)
    noisy = pick & (kind == 0)
    if noisy.any():
        std = torch.rand(int(noisy.sum()), 1, 1, 1, generator=g) * 0.12
        out[noisy] = out[noisy] + std * torch.randn(out[noisy].shape, generator=g)
    blurred = pick & (kind == 1)
    if blurred.any():
        sigma = 0.4 + torch.rand(int(blurred.sum()), generator=g) * 0.8
        out[blurred] = kornia.filters.gaussian_blur2d(out[blurred], (7, 7), torch.stack([sigma, sigma], 1),
                                                      border_type="reflect")
    warped = pick & (kind == 2)
    if warped.any():
        k = int(warped.sum())
        size = images.shape[-1]
        corners = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], dtype=torch.float32)
        start = corners.expand(k, -1, -1)
        end = start + (torch.rand(k, 4, 2, generator=g) - 0.5) * 0.2 * size
        matrix = kornia.geometry.transform.get_perspective_transform(start, end)
        out[warped] = kornia.geometry.transform.warp_perspective(out[warped], matrix, (size, size),
                                                                 padding_mode="border")
    return out.clamp(0, 1)


def adversarial(model, images: torch.Tensor, tokens: torch.Tensor, truth: torch.Tensor, eps: float,
                steps: int, share: float, g: torch.Generator) -> torch.Tensor:
    """Replace a ``share`` of the batch by its worst case within +-``eps`` per pixel
    (PGD, ``steps`` sign-gradient steps on the contrastive loss). Training on these
    makes the image tower's gradients follow what an image shows, which is what
    guidance climbs, instead of pixel patterns no world image has."""
    pick = torch.rand(images.shape[0], generator=g) < share
    if not pick.any():
        return images
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        txt = F.normalize(model.encode_text(tokens), dim=-1)
    base = images[pick]
    delta = (torch.rand(base.shape, generator=g) * 2 - 1) * eps
    scale = model.logit_scale.exp().detach()
    for _ in range(steps):
        delta.requires_grad_(True)
        x = ((base + delta).clamp(0, 1) - mean) / std
        img = F.normalize(model.encode_image(x), dim=-1)
        loss = multi_positive_loss(scale * img @ txt.T, truth[pick])
        grad, = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + 0.5 * eps * grad.sign()).clamp(-eps, eps)
    out = images.clone()
    out[pick] = (base + delta).clamp(0, 1)
    return out


NEGATIVE_KINDS = ("mosaic", "two shapes", "blobs", "shuffled")


def negatives(n: int, g: torch.Generator) -> torch.Tensor:
    """[n, 3, 64, 64] images that no caption of the world describes, shown to the
    model as images without a positive caption: windows over a 2 x 2 mosaic of
    world images, a second shape pasted onto a world image, regions of three to
    five palette colours, and world images cut into 4 x 4 tiles and shuffled.

    A model that has only seen one shape on one background can still call a
    collage of colour patches "a red circle on a blue background" (nothing in its
    training said otherwise), and guided renders climb straight to such
    collages. These are meant to teach it that a caption is true of one clean
    shape on one clean background, and that a shape is the arrangement of its
    edges, not their statistics (short fine-tunes with them did not yet make
    guided renders recognisable: BENCHMARKS.md, "Why no shapes form")."""
    r = world.RESOLUTION
    kind = torch.randint(0, len(NEGATIVE_KINDS), (n,), generator=g)
    base, attrs = world.sample(n, g)
    out = base.clone()
    idx = (kind == 0).nonzero()[:, 0]
    if len(idx):
        out[idx] = world.mosaic_windows(len(idx), g, r // 4, 3 * r // 4)
    idx = (kind == 1).nonzero()[:, 0]
    if len(idx):
        other = world.sample_attributes(len(idx), g)
        mask = world.coverage(other)[:, None]
        out[idx] = mask * other.fg_rgb[:, :, None, None] + (1 - mask) * out[idx]
    idx = (kind == 2).nonzero()[:, 0]
    if len(idx):
        k = int(torch.randint(3, 6, (1,), generator=g))
        fields = F.interpolate(torch.rand(len(idx), k, 4, 4, generator=g), size=(r, r), mode="bicubic",
                               align_corners=False)
        sharp = 10 ** (1 + 2 * torch.rand(len(idx), 1, 1, 1, generator=g))  # soft to hard region edges
        weights = torch.softmax(fields * sharp, dim=1)
        colours = world._PALETTE[torch.randint(0, len(world.COLOUR_NAMES), (len(idx), k), generator=g)]
        out[idx] = torch.einsum("nkhw,nkc->nchw", weights, colours)
    idx = (kind == 3).nonzero()[:, 0]
    if len(idx):
        t = r // 4
        tiles = out[idx].unfold(2, t, t).unfold(3, t, t)  # [m, 3, 4, 4, t, t]
        tiles = tiles.reshape(len(idx), 3, 16, t, t)
        perm = torch.argsort(torch.rand(len(idx), 16, generator=g), dim=1)
        tiles = tiles[torch.arange(len(idx))[:, None], :, perm].permute(0, 2, 1, 3, 4)  # [m, 3, 16, t, t]
        out[idx] = tiles.reshape(len(idx), 3, 4, 4, t, t).permute(0, 1, 2, 4, 3, 5).reshape(len(idx), 3, r, r)
    return out.clamp(0, 1).contiguous()


class GeneratedNegatives:
    """A persistent pool of images that the model itself is climbing toward
    captions, the way guided generation does, shown to it as negatives of those
    captions: what guidance would produce from this model is, step by step,
    what it is taught not to confuse with a caption (persistent chains, as in
    energy-based models' contrastive divergence). Every step each image takes
    ``steps`` signed-gradient steps (with noise, like guidance's noisy crops)
    toward its caption; ``renew`` of the pool restarts from grey noise or an
    off-world image with a new caption."""

    def __init__(self, size: int, g: torch.Generator, steps: int = 2, step_size: float = 0.02,
                 renew: float = 0.1):
        self.size, self.steps, self.step_size, self.renew = size, steps, step_size, renew
        self.images = torch.empty(size, 3, world.RESOLUTION, world.RESOLUTION)
        self.contents = [None] * size
        self._restart(torch.arange(size), g)

    def _restart(self, idx: torch.Tensor, g: torch.Generator) -> None:
        n = len(idx)
        grey = 0.5 + 0.1 * torch.randn(n, 3, world.RESOLUTION, world.RESOLUTION, generator=g)
        off = negatives(n, g)
        use_off = (torch.rand(n, generator=g) < 0.5)[:, None, None, None]
        self.images[idx] = torch.where(use_off, off, grey).clamp(0, 1)
        attrs = world.sample_attributes(n, g)
        full = world.Form(colour=True, shape=True, background=True)
        for j, i in enumerate(idx.tolist()):
            self.contents[i] = world.content_of(attrs, j, full)

    def step(self, model, tokenizer, mean, std, g: torch.Generator):
        """Climb, then return (images, caption texts, their content ids)."""
        renew = torch.rand(self.size, generator=g) < self.renew
        if renew.any():
            self._restart(renew.nonzero()[:, 0], g)
        texts = [world.compose(c) for c in self.contents]
        with torch.no_grad():
            txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        x = self.images
        for _ in range(self.steps):
            x = x.detach().requires_grad_(True)
            noisy = (x + 0.06 * torch.randn(x.shape, generator=g)).clamp(0, 1)
            img = F.normalize(model.encode_image((noisy - mean) / std), dim=-1)
            grad, = torch.autograd.grad((img * txt).sum(), x)
            x = (x.detach() + self.step_size * grad.sign()).clamp(0, 1)
        self.images = x.detach()
        return self.images.clone(), texts, world.content_ids(self.contents)


def lr_at(progress: float, base: float, warmup: float) -> float:
    if progress < warmup:
        return base * progress / warmup
    t = (progress - warmup) / max(1e-9, 1 - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def save(model, tokenizer, path: Path, training: dict, description: str) -> None:
    metadata = {
        "format": "clip",
        "tokenizer": tokenizer.to_config(),
        "normalize": {"mean": CLIP_MEAN, "std": CLIP_STD},
        "image_resolution": world.RESOLUTION,
        "description": description,
        "training": training,
    }
    write_safetensors(path, model.state_dict(), metadata, dtype=torch.float16)


@keeps_torch_threads
def train(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    tokenizer = WordTokenizer(world.words(), CONTEXT_LENGTH)
    model = build(args.arch, tokenizer.vocab_size)
    if args.init:   # continue from a written model (its optimiser state is not kept)
        from ..models import read_safetensors

        model.load_state_dict(read_safetensors(Path(args.init)).state_dict)
        print(f"initialised from {args.init}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    description = (f"A small CLIP ({args.arch}) trained from scratch on pixloom's shapes world "
                   f"(WORLD.md) by pixloom.training.perceptor, seed {args.seed}.")
    print(f"arch {args.arch}: {n_params / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, "
          f"threads {args.threads}, batch {args.batch}", flush=True)

    t0 = time.time()
    last_save = t0
    step, ema, time_capped = 0, None, False
    budget_s = args.minutes * 60 if args.minutes else 0.0

    def training_meta(final: bool) -> dict:
        return {
            "seed": args.seed, "arch": args.arch, "arch_config": {k: v for k, v in ARCHS[args.arch].items()},
            "steps": step, "max_steps": args.steps, "minutes": round((time.time() - t0) / 60, 2),
            "max_minutes": args.minutes, "batch": args.batch, "captions_per_image": args.captions,
            "lr": args.lr, "weight_decay": args.weight_decay, "warmup": args.warmup,
            "threads": args.threads, "init": args.init, "augment": args.augment,
            "adversarial": args.adversarial, "adv_steps": args.adv_steps, "adv_share": args.adv_share,
            "noise": args.noise, "negatives": args.negatives, "generated": args.generated, "loss_ema": round(ema, 4) if ema is not None else None,
            "time_capped": time_capped, "final": final, "parameters": n_params,
            "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        }

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pool = GeneratedNegatives(int(round(args.generated * args.batch)), gen, steps=args.gen_steps, renew=args.gen_renew) \
        if args.generated > 0 else None
    model.train()
    while True:
        elapsed = time.time() - t0
        progress = step / args.steps if args.steps else 0.0
        if budget_s:
            progress = max(progress, elapsed / budget_s)
        if (args.steps and step >= args.steps) or progress >= 1.0:
            time_capped = bool(budget_s) and elapsed >= budget_s and (not args.steps or step < args.steps)
            break
        lr = lr_at(progress, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        images, attrs = world.sample(args.batch, gen)
        images = robustify(images, args.augment, gen)
        texts, ids = make_captions(attrs, args.captions, gen)
        truth = world.truth(ids, attrs)
        tokens = tokenizer(texts)
        if args.noise > 0:  # most images noisy, up to std --noise: a perceptor for heavily noised views
            sigma = torch.rand(len(images), 1, 1, 1, generator=gen) * args.noise
            sigma = torch.where(torch.rand(len(images), 1, 1, 1, generator=gen) < 0.8, sigma, torch.zeros_like(sigma))
            images = (images + sigma * torch.randn(images.shape, generator=gen)).clamp(0, 1)
        if pool is not None:
            extra, extra_texts, extra_ids = pool.step(model, tokenizer, mean, std, gen)
            tokens = torch.cat([tokens, tokenizer(extra_texts)])
            truth = torch.cat([truth, world.truth(extra_ids, attrs)], dim=1)  # what the world images say
            images = torch.cat([images, extra])
            truth = torch.cat([truth, torch.zeros(len(extra), truth.shape[1], dtype=truth.dtype)])
        if args.negatives > 0:  # before the attack: it then also makes them as close to a caption as it can
            k = int(round(args.negatives * args.batch))
            images = torch.cat([images, negatives(k, gen)])
            truth = torch.cat([truth, torch.zeros(k, truth.shape[1], dtype=truth.dtype)])
        if args.adversarial > 0:
            images = adversarial(model, images, tokens, truth, args.adversarial, args.adv_steps, args.adv_share, gen)
        x = (images - mean) / std
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        loss = multi_positive_loss(logits, truth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        if step % args.log_every == 0 or step == 1:
            print(f"step {step} loss {value:.4f} ema {ema:.4f} lr {lr:.2e} "
                  f"scale {model.logit_scale.exp().item():.1f} texts {len(texts)} "
                  f"elapsed {(time.time() - t0) / 60:.2f} min", flush=True)
        if args.save_every and time.time() - last_save >= args.save_every * 60:
            save(model, tokenizer, out, training_meta(final=False), description)
            last_save = time.time()
            print(f"step {step}: checkpoint written to {out}", flush=True)

    model.eval()
    meta = training_meta(final=True)
    save(model, tokenizer, out, meta, description)
    print(f"done: {step} steps in {meta['minutes']} min; weights {out} "
          f"({out.stat().st_size / 1e6:.1f} MB)", flush=True)

    if args.eval_n:
        model, tok, mean, std, _ = zeroshot.load_clip(out)    # evaluate exactly what was written
        result = zeroshot.evaluate(model, tok, mean, std, n=args.eval_n, seed=args.eval_seed,
                                   resolution=world.RESOLUTION)
        result["weights"] = out.name
        result["training"] = meta
        eval_path = out.with_name(out.name.replace(".safetensors", "") + ".eval.json")
        atomic_write(eval_path, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
        print(zeroshot.format_table(result), flush=True)
        print(f"meets goals: {result['meets_goals']}; written {eval_path}", flush=True)
    return meta


def parse_args(argv: Optional[list[str]] = None):
    p = ArgumentParser(prog="pixloom train", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", choices=sorted(ARCHS), default="resnet")
    p.add_argument("--steps", type=int, default=0, help="step budget (0: none)")
    p.add_argument("--minutes", type=float, default=0.0, help="time budget in minutes (0: none)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--captions", type=int, default=3, help="captions drawn per image")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=float, default=0.03, help="warmup, as a fraction of the run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", help="start from the weights of this .safetensors file (same --arch)")
    p.add_argument("--augment", type=float, default=0.0,
                   help="share of each batch shown noisy, blurred or warped (robust to guidance views)")
    p.add_argument("--adversarial", type=float, default=0.0,
                   help="train on worst-case images within this per-pixel budget (0: off), e.g. 0.03")
    p.add_argument("--adv-steps", type=int, default=2, help="PGD steps for --adversarial")
    p.add_argument("--adv-share", type=float, default=0.5, help="share of each batch made adversarial")
    p.add_argument("--negatives", type=float, default=0.0,
                   help="images a step that no caption describes (collages, two shapes, colour regions, "
                        "shuffled tiles), as a fraction of --batch")
    p.add_argument("--noise", type=float, default=0.0,
                   help="show 80%% of the images with Gaussian noise of std up to this (0: off), e.g. 0.4")
    p.add_argument("--generated", type=float, default=0.0,
                   help="a pool of images the model climbs toward captions as guidance would, shown as "
                        "negatives, as a fraction of --batch")
    p.add_argument("--gen-steps", type=int, default=2, help="climbing steps a training step for --generated")
    p.add_argument("--gen-renew", type=float, default=0.1, help="share of the --generated pool restarted a step")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=float, default=5.0, help="minutes between checkpoints (0: only at the end)")
    p.add_argument("--eval-n", type=int, default=2000, help="held-out images per question (0: no evaluation)")
    p.add_argument("--eval-seed", type=int, default=zeroshot.DEFAULT_SEED)
    args = p.parse_args(argv)
    for name in ("steps", "minutes", "eval_n", "adv_steps", "save_every", "negatives", "generated", "noise",
                 "gen_steps"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative (got {getattr(args, name)})")
    for name in ("batch", "captions", "threads", "log_every"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(args, name)})")
    if not 0 <= args.gen_renew <= 1:
        p.error(f"--gen-renew must be between 0 and 1 (got {args.gen_renew})")
    if not (math.isfinite(args.lr) and args.lr > 0):
        p.error(f"--lr must be a positive finite number (got {args.lr})")
    if not args.steps and not args.minutes:
        p.error("give --steps, --minutes or both")
    if Path(args.out).is_dir():
        p.error(f"--out {args.out}: is a directory; give a .safetensors file name")
    if args.init and not Path(args.init).is_file():
        p.error(f"--init {args.init}: no such file")
    if args.seed == args.eval_seed:
        p.error(f"--seed {args.seed} is the held-out evaluation seed; pick another")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":  # the same as ``pixloom train``: one-line errors, exit codes
    from pixloom.cli import main as _cli

    sys.exit(_cli(["train", *sys.argv[1:]]))
