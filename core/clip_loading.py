"""Loading CLIP models through OpenAI's own ``build_model``.

Three kinds of file load here: pixloom's .safetensors (the embedded models:
a CLIP state dict plus ``pixloom.tokenizer`` and ``pixloom.normalize`` metadata),
a plain state dict saved with ``torch.save`` (loaded with weights_only=True,
so nothing is unpickled beyond tensors), and OpenAI's published ``.pt`` files
(TorchScript archives, which run their own code when loaded: only when their
sha256 matches the registry or the user trusts them; see pixloom.checkpoints).
A registry name (``ViT-B/32``, ``RN50``...) is fetched into the cache when missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .clip_compat import clip_model
from .errors import CheckpointError
from .models import read_model, resolve_model_file, shared

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class LoadedClip:
    model: torch.nn.Module  # clip.model.CLIP, float32, eval mode
    tokenizer: object  # a pixloom.tokenizers tokenizer: texts -> LongTensor [N, context_length]
    mean: tuple
    std: tuple
    source: str
    metadata: dict = field(default_factory=dict)  # a pixloom .safetensors file's metadata


def build_clip(state_dict: dict, source: str) -> torch.nn.Module:
    """``clip.model.build_model`` with a clear error for a state dict of another shape."""
    try:
        model = clip_model().build_model(dict(state_dict))
    except (KeyError, RuntimeError, AssertionError, IndexError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{source}: not a CLIP state dict ({first[:200]})") from exc
    return model.float().eval()


@shared
def load_clip(name: str, trust: bool = False) -> LoadedClip:
    """An embedded model name, a registry name (OpenAI's ``ViT-B/32``...) or a CLIP
    file path -> model, tokenizer and normalisation. ``trust`` allows loading a
    file that runs code (a TorchScript .pt no published hash vouches for)."""
    from .tokenizers import BPETokenizer, tokenizer_from_config

    path = _registry_path(name) or resolve_model_file(name)
    if path.suffix == ".safetensors":
        loaded = read_model(path, "clip", "CLIP model", default_format="clip")
        meta = loaded.metadata
        model = build_clip(loaded.state_dict, str(path))
        tok_cfg = meta.get("tokenizer") or {"type": "bpe", "context_length": model.context_length}
        norm = meta.get("normalize") or {"mean": OPENAI_MEAN, "std": OPENAI_STD}
        return LoadedClip(model, tokenizer_from_config(tok_cfg), tuple(norm["mean"]), tuple(norm["std"]), str(path),
                          meta)
    state = _torch_state_dict(path, trust)
    model = build_clip(state, str(path))
    return LoadedClip(model, BPETokenizer(model.context_length), OPENAI_MEAN, OPENAI_STD, str(path))


def _registry_path(name: str) -> Path | None:
    """The cached file of a registry CLIP (downloaded when missing), or None for other names."""
    from . import checkpoints
    from .models import embedded_models

    if name in embedded_models() or Path(name).expanduser().exists():
        return None
    known = checkpoints.find_model(name, "clip")
    return checkpoints.ensure_model(known)["weights"] if known is not None else None


def _torch_state_dict(path: Path, trust: bool = False) -> dict:
    from . import checkpoints

    if checkpoints.is_torchscript(path):
        obj = checkpoints.load_torchscript_state_dict(path, what="CLIP model", trust=trust)
    else:
        obj = checkpoints.load_torch_file(path, what="CLIP model", trust=trust)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in obj.items()}
