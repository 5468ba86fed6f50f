"""Loading CLIP models through OpenAI's own ``build_model``.

Two kinds of file load here today: pixloom's .safetensors (the embedded models:
a CLIP state dict plus ``pixloom.tokenizer`` and ``pixloom.normalize`` metadata)
and a plain state dict saved with ``torch.save`` (loaded with weights_only=True,
so nothing is unpickled beyond tensors).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .clip_compat import clip_model
from .errors import CheckpointError
from .models import read_safetensors, resolve_model_file

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LoadedClip:
    model: torch.nn.Module  # clip.model.CLIP, float32, eval mode
    tokenizer: object  # a pixloom.tokenizers tokenizer: texts -> LongTensor [N, context_length]
    mean: tuple
    std: tuple
    source: str


def build_clip(state_dict: dict, source: str) -> torch.nn.Module:
    """``clip.model.build_model`` with a clear error for a state dict of another shape."""
    try:
        model = clip_model().build_model(dict(state_dict))
    except (KeyError, RuntimeError, AssertionError, IndexError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: not a CLIP state dict ({first[:200]})") from exc
    return model.float().eval()


def load_clip(name: str) -> LoadedClip:
    """An embedded model name or a CLIP file path -> model, tokenizer and normalisation."""
    from .tokenizers import BPETokenizer, tokenizer_from_config

    path = resolve_model_file(name)
    if path.suffix == ".safetensors":
        loaded = read_safetensors(path)
        meta = loaded.metadata
        if meta.get("format", "clip") != "clip":
            raise CheckpointError(f"{path}: holds a {meta.get('format')!r} model, not a CLIP model")
        model = build_clip(loaded.state_dict, str(path))
        tok_cfg = meta.get("tokenizer") or {"type": "bpe", "context_length": model.context_length}
        norm = meta.get("normalize") or {"mean": OPENAI_MEAN, "std": OPENAI_STD}
        return LoadedClip(model, tokenizer_from_config(tok_cfg), tuple(norm["mean"]), tuple(norm["std"]), str(path))
    state = _torch_state_dict(path)
    model = build_clip(state, str(path))
    return LoadedClip(model, BPETokenizer(model.context_length), OPENAI_MEAN, OPENAI_STD, str(path))


def _torch_state_dict(path: Path) -> dict:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot load it safely as a state dict ({first[:200]})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in obj.items()}
