"""Loss ``clip``: pull the crops' embeddings toward text and image prompts."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List

import torch
import torch.nn.functional as F

import pixloom
from pixloom.errors import PresetError
from pixloom.hookspecs import hookimpl
from pixloom.images import load_image
from pixloom.interfaces import Loss

_NUMBERISH = re.compile(r"^\s*[-+]?[\d.]+(?:[eE][-+]?\d+)?\s*$|^\s*[-+]?(?:inf|nan)\s*$", re.I)


def parse_weighted(item: Any, what: str) -> tuple:
    """'text', 'text:weight' or {text|path: ..., weight: ...} -> (text, weight)."""
    if isinstance(item, dict):
        key = "text" if "text" in item else "path"
        text, weight = item.get(key), item.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ValueError(f"{what} {text!r}: weight {weight!r} is not a number")
    else:
        text, weight = str(item), 1.0
        head, sep, tail = text.rpartition(":")
        if sep and _NUMBERISH.match(tail):
            try:
                weight = float(tail)
            except ValueError:
                raise ValueError(f"{what} {text!r}: weight {tail.strip()!r} is not a number") from None
            text = head
    text = (text or "").strip() if isinstance(text, str) else text
    if not text:
        raise ValueError(f"{what} {item!r}: empty text")
    weight = float(weight)
    if weight != weight or weight in (float("inf"), float("-inf")):
        raise ValueError(f"{what} {text!r}: weight must be finite")
    return text, weight


@dataclass
class ClipLossParams:
    prompts: List[Any] = field(default_factory=list)  # "text", "text:weight" (negative pushes away)
    image_prompts: List[Any] = field(default_factory=list)  # "path" or "path:weight"
    distance: str = "spherical"  # spherical | cosine
    perceptors: List[str] = field(default_factory=list)  # perceptor labels; empty: all of them

    def __post_init__(self):
        if not self.prompts and not self.image_prompts:
            raise ValueError("prompts: the clip loss needs at least one text or image prompt")
        if self.distance not in ("spherical", "cosine"):
            raise ValueError(f"distance: unknown {self.distance!r} (valid: spherical, cosine)")
        for p in self.prompts:
            parse_weighted(p, "prompt")
        for p in self.image_prompts:
            parse_weighted(p, "image prompt")


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between unit vectors (VQGAN+CLIP's)."""
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - (a * b).sum(dim=-1)


class ClipLoss(Loss):
    """Distance of every crop's embedding to each prompt's, weighted and summed.

    Prompts are ``"text"`` or ``"text:weight"``; a negative weight pushes the
    image away from that prompt. ``image_prompts`` are image files whose
    embeddings are targets too. Embeddings of prompts are computed once.
    """

    name = "clip"
    version = pixloom.__version__
    Params = ClipLossParams

    def setup(self, perceptors: dict) -> None:
        labels = list(self.params.perceptors) or list(perceptors)
        unknown = [l for l in labels if l not in perceptors]
        if unknown:
            raise PresetError(f"loss {self.ctx.label}: perceptors: unknown perceptor {unknown[0]!r} "
                              f"(valid: {', '.join(perceptors)})")
        texts = [parse_weighted(p, "prompt") for p in self.params.prompts]
        images = [parse_weighted(p, "image prompt") for p in self.params.image_prompts]
        self.targets = {}
        for label in labels:
            perceptor = perceptors[label]
            device = next(iter(perceptor.buffers()), torch.empty(0)).device
            embeds, weights = [], []
            if texts:
                embeds.append(perceptor.encode_text([t for t, _ in texts]))
                weights += [w for _, w in texts]
            for path, w in images:
                size = perceptor.input_size
                image = load_image(self.ctx.resolve_path(path), (size, size)).to(device)
                with torch.no_grad():
                    embeds.append(perceptor.encode_image(image))
                weights.append(w)
            target = F.normalize(torch.cat(embeds).float(), dim=-1)
            self.targets[label] = (target, torch.tensor(weights, device=target.device))
        self._distance = spherical_distance if self.params.distance == "spherical" else cosine_distance

    def forward(self, inputs) -> torch.Tensor:
        total = 0.0
        for label, (target, weights) in self.targets.items():
            crops = F.normalize(inputs.embeddings(label), dim=-1)
            dists = self._distance(crops[:, None, :], target[None, :, :])  # [N, T]
            total = total + (dists.mean(0) * weights).sum()
        return total / len(self.targets)


@hookimpl
def pixloom_register_losses():
    return [ClipLoss]
