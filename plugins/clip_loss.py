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


def prompts_to_follow(own: List[Any], ctx) -> list:
    """A plugin's own prompts, else the run's (the clip loss's, which an
    animation's keyframes update), as [(text, weight), ...]."""
    return [parse_weighted(p, "prompt") for p in (own or ctx.extra.get("prompts", []))]


@dataclass
class ClipLossParams:
    prompts: List[Any] = field(default_factory=list)  # "text", "text:weight" (negative pushes away)
    image_prompts: List[Any] = field(default_factory=list)  # "path" or "path:weight"
    distance: str = "spherical"  # spherical | cosine
    perceptors: List[str] = field(default_factory=list)  # perceptor labels; empty: all of them
    contrast: List[str] = field(default_factory=list)  # captions each text prompt must beat (contrastive term)
    contrast_words: List[str] = field(default_factory=list)  # "red|green|blue": rivals made by swapping a word
    contrast_exchange: bool = False  # also rivals with two words of one group exchanged (figure and ground)
    contrast_weight: float = 1.0  # weight of the contrastive term (only with contrast captions)
    contrast_scale: float = 50.0  # logit scale of that softmax (CLIP's own is 100)

    def __post_init__(self):
        if not self.prompts and not self.image_prompts:
            raise ValueError("prompts: the clip loss needs at least one text or image prompt")
        if self.distance not in ("spherical", "cosine"):
            raise ValueError(f"distance: unknown {self.distance!r} (valid: spherical, cosine)")
        for p in self.prompts:
            parse_weighted(p, "prompt")
        for p in self.image_prompts:
            parse_weighted(p, "image prompt")
        if any(not isinstance(c, str) or not c.strip() for c in self.contrast):
            raise ValueError("contrast: every contrast caption must be a non-empty text")
        for group in self.contrast_words:
            if not isinstance(group, str) or len([w for w in group.split("|") if w.strip()]) < 2:
                raise ValueError(f"contrast_words: {group!r} is not a group of two or more words like 'red|green|blue'")
        if self.contrast_scale <= 0:
            raise ValueError(f"contrast_scale: must be > 0 (got {self.contrast_scale})")


def swapped(text: str, groups: List[str], exchange: bool = False) -> List[str]:
    """``text`` with one word of a group replaced by each other word of that group;
    with ``exchange``, also with each two different words of one group traded
    places ("a red star on a blue background" -> "a blue star on a red background")."""
    words = re.findall(r"\w+|\W+", text)
    out = []

    def put(new: list, i: int, other: str) -> None:
        new[i] = other
        if i >= 2 and new[i - 2].lower() in ("a", "an"):  # keep the article right
            article = "an" if other[:1].lower() in "aeiou" else "a"
            new[i - 2] = article.capitalize() if new[i - 2][0].isupper() else article

    for group in groups:
        choices = [w.strip() for w in group.split("|") if w.strip()]
        lower = [c.lower() for c in choices]
        found = [i for i, word in enumerate(words) if word.lower() in lower]
        for i in found:
            for other in choices:
                if other.lower() == words[i].lower():
                    continue
                new = list(words)
                put(new, i, other)
                out.append("".join(new))
        if exchange:
            for a, i in enumerate(found):
                for j in found[a + 1:]:
                    if words[i].lower() != words[j].lower():
                        new = list(words)
                        put(new, i, words[j])
                        put(new, j, words[i])
                        out.append("".join(new))
    return out


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

    A small CLIP can be close to a caption in absolute terms while still
    preferring another caption: the distance alone is then satisfied by images
    that match no caption in particular. ``contrast`` names captions each text
    prompt with a positive weight must beat: a cross-entropy over the crop's
    similarities to the prompt and to them (CLIP's own training objective) is
    added, times ``contrast_weight``. ``contrast_words`` makes such rivals from
    the prompt itself: each group (``"red|green|blue"``) swaps any of its words in
    the prompt for each of the others ("a red star" must beat "a green star" and
    "a blue star"), with "a"/"an" fixed to suit; with ``contrast_exchange`` two
    words of one group in the prompt also trade places, so that "a
    red star on a blue background" must beat "a blue star on a red background"
    (the figure and ground swapped, which a bag of words cannot tell apart).
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
        self.targets, self.contrasts = {}, {}
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
            positive = [t for t, w in texts if w > 0]
            rivals = list(dict.fromkeys(
                [*self.params.contrast, *(r for t in positive for r in swapped(t, self.params.contrast_words,
                                                                    self.params.contrast_exchange))]))
            rivals = [r for r in rivals if r not in positive]
            if rivals and positive:
                pos = F.normalize(perceptor.encode_text(positive).float(), dim=-1)
                neg = F.normalize(perceptor.encode_text(rivals).float(), dim=-1)
                pos_w = torch.tensor([w for _, w in texts if w > 0], device=pos.device)
                self.contrasts[label] = (pos, neg, pos_w)
        self._distance = spherical_distance if self.params.distance == "spherical" else cosine_distance

    def forward(self, inputs) -> torch.Tensor:
        total = 0.0
        for label, (target, weights) in self.targets.items():
            crops = F.normalize(inputs.embeddings(label), dim=-1)
            dists = self._distance(crops[:, None, :], target[None, :, :])  # [N, T]
            total = total + (dists.mean(0) * weights).sum()
            if label in self.contrasts:
                pos, neg, pos_w = self.contrasts[label]
                scale = self.params.contrast_scale
                sim_pos = crops @ pos.T  # [N, P]
                sim_neg = crops @ neg.T  # [N, R]
                # for each prompt: -log softmax of its similarity against the rivals'
                logits = torch.cat([sim_pos[:, :, None], sim_neg[:, None, :].expand(-1, pos.shape[0], -1)], dim=2)
                ce = torch.logsumexp(scale * logits, dim=2) - scale * sim_pos  # [N, P]
                total = total + self.params.contrast_weight * (ce.mean(0) * pos_w).sum()
        return total / len(self.targets)


@hookimpl
def pixloom_register_losses():
    return [ClipLoss]
