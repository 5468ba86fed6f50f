"""Zero-shot evaluation of a CLIP-like model on held-out shapes-world images.

The six questions of WORLD.md's last table, each answered by the caption of
highest cosine similarity among its candidates (top-1 accuracy):

| question | candidate prompts | images |
|---|---|---|
| fg_colour | "a {colour} shape" (8) | all |
| bg_colour | "a shape on a {colour} background" (8) | all |
| shape | "a {shape}" (6) | all |
| size | "a small shape", "a large shape" | small or large ones (half each) |
| position | "a shape {position}" (9) | those with a position phrase |
| colour_shape | "a {colour} {shape}" (48) | all |

The prompts are the shortest captions of the world's grammar that name only
the asked attribute, so a model is judged on the world's own language, not on
prompt engineering. Works for any model with ``encode_image`` and
``encode_text`` (OpenAI's CLIP class, or a wrapper): pass its tokenizer, its
normalisation and its input resolution.

    python -m pixloom.zeroshot plugins/weights/shapes-clip.safetensors --seed 1234 --n 1000
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import world
from .device import keeps_torch_threads

QUESTIONS = ["fg_colour", "bg_colour", "shape", "size", "position", "colour_shape"]
GOALS = {"fg_colour": 0.99, "bg_colour": 0.99, "shape": 0.95, "size": 0.95, "position": 0.90, "colour_shape": 0.93}
DEFAULT_SEED = 1234   # held out: training scripts refuse it as a training seed


def prompts() -> dict[str, list[str]]:
    """Candidate prompts per question, in the index order of world's tables."""
    return {
        "fg_colour": [f"{world.article(c)} {c} shape" for c in world.COLOUR_NAMES],
        "bg_colour": [f"a shape on {world.article(c)} {c} background" for c in world.COLOUR_NAMES],
        "shape": [f"{world.article(s)} {s}" for s in world.SHAPES],
        "size": ["a small shape", "a large shape"],
        "position": [f"a shape {p}" for p in world.POSITIONS],
        "colour_shape": [f"{world.article(c)} {c} {s}" for c in world.COLOUR_NAMES for s in world.SHAPES],
    }


def _model_dtype(model) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


@torch.no_grad()
def encode_images(model, images: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                  resolution: Optional[int] = None, batch: int = 256) -> torch.Tensor:
    """Unit-norm image features for images [n, 3, h, w] in 0..1."""
    device = next(model.parameters()).device
    dtype = _model_dtype(model)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    feats = []
    for i in range(0, images.shape[0], batch):
        x = images[i: i + batch].to(device)
        if resolution is not None and x.shape[-1] != resolution:
            x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False).clamp(0, 1)
        x = ((x - mean_t) / std_t).to(dtype)
        feats.append(F.normalize(model.encode_image(x).float(), dim=-1))
    return torch.cat(feats)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    device = next(model.parameters()).device
    return F.normalize(model.encode_text(tokenizer(texts).to(device)).float(), dim=-1)


def heldout_sets(n: int, seed: int) -> dict[str, tuple[torch.Tensor, world.Attributes]]:
    """The three held-out samples: "all" (n images), "size" (n images, small and
    large alternating) and "position" (up to n images that have a position phrase)."""
    g = torch.Generator().manual_seed(seed)
    images, attrs = world.sample(n, g)
    size_images, size_attrs = world.sample(n, g, size=torch.arange(n) % 2 * 2)
    pos_images, pos_attrs = world.sample(2 * n, g)
    keep = (pos_attrs.position >= 0).nonzero(as_tuple=True)[0][:n]
    return {"all": (images, attrs), "size": (size_images, size_attrs),
            "position": (pos_images[keep], pos_attrs[keep])}


def heldout_set(n: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Held-out images and their labels per question (index into prompts())."""
    sets = heldout_sets(n, seed)
    images, attrs = sets["all"]
    size_images, size_attrs = sets["size"]
    pos_images, pos_attrs = sets["position"]
    return {
        "fg_colour": (images, attrs.fg),
        "bg_colour": (images, attrs.bg),
        "shape": (images, attrs.shape),
        "size": (size_images, size_attrs.size // 2),
        "position": (pos_images, pos_attrs.position),
        "colour_shape": (images, attrs.fg * len(world.SHAPES) + attrs.shape),
    }


def evaluate(model, tokenizer, mean: Sequence[float], std: Sequence[float], *, n: int = 1000,
             seed: int = DEFAULT_SEED, resolution: Optional[int] = None, batch: int = 256) -> dict:
    """Top-1 zero-shot accuracy per question on n held-out images from ``seed``.

    Returns {"accuracy": {question: float}, "n": {question: count}, "seed", "prompts", "goals", "meets_goals"}.
    """
    was_training = model.training
    model.eval()
    try:
        data = heldout_set(n, seed)
        cand = prompts()
        acc, counts, cache = {}, {}, {}
        for q in QUESTIONS:
            images, labels = data[q]
            key = id(images)
            if key not in cache:
                cache[key] = encode_images(model, images, mean, std, resolution, batch)
            text = encode_texts(model, tokenizer, cand[q])
            pred = (cache[key] @ text.T).argmax(dim=-1)
            acc[q] = round(float((pred == labels).float().mean()), 4)
            counts[q] = int(labels.numel())
    finally:
        model.train(was_training)
    return {
        "accuracy": acc,
        "n": counts,
        "seed": seed,
        "prompts": {q: cand[q] for q in QUESTIONS},
        "goals": GOALS,
        "meets_goals": all(acc[q] >= GOALS[q] for q in QUESTIONS),
    }


def load_clip(path) -> tuple:
    """(model in float32, eval mode; tokenizer; mean; std; metadata) from a CLIP
    file, through :func:`pixloom.clip_loading.load_clip`."""
    from .clip_loading import load_clip as load

    loaded = load(str(path))
    return loaded.model, loaded.tokenizer, loaded.mean, loaded.std, loaded.metadata


def format_table(result: dict) -> str:
    lines = ["| question | top-1 | goal | n |", "|---|---|---|---|"]
    for q in QUESTIONS:
        lines.append(f"| {q} | {result['accuracy'][q]:.3f} | {GOALS[q]:.2f} | {result['n'][q]} |")
    return "\n".join(lines)


@keeps_torch_threads
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pixloom.zeroshot", description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a pixloom CLIP .safetensors file")
    parser.add_argument("--n", type=int, default=1000, help="held-out images per question")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the held-out images")
    parser.add_argument("--json", help="also write the result as JSON here")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    model, tokenizer, mean, std, _ = load_clip(args.weights)
    result = evaluate(model, tokenizer, mean, std, n=args.n, seed=args.seed,
                      resolution=model.visual.input_resolution)
    result["weights"] = str(args.weights)
    result["seconds"] = round(time.time() - t0, 1)
    print(format_table(result))
    print(f"meets goals: {result['meets_goals']}  ({result['seconds']} s)")
    if args.json:
        from .files import atomic_write

        atomic_write(Path(args.json), lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
