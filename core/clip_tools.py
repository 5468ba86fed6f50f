"""CLIP beyond generation: scoring images against captions, zero-shot
classification, and text-to-image search over a folder with a cached index.
Each works with any perceptor plugin (the embedded CLIP by default)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .device import pick_device
from .errors import PixloomError
from .files import atomic_write
from .images import load_image
from .interfaces import BuildContext
from .manager import build_registry, create_plugin_manager
from .preset import validate_params

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
INDEX_VERSION = 1


def build_perceptor(name: str = "clip", model: str | None = None, device: str = "auto", plugins_dirs=()):
    """A perceptor plugin instance by name, with ``model`` as its model parameter when given."""
    registry = build_registry(create_plugin_manager(plugins_dirs=plugins_dirs))
    cls = registry.get("perceptor", name)
    raw = {"model": model} if model else {}
    params = validate_params(cls.Params, raw, "--model" if model else "perceptor", f"perceptor '{name}'")
    dev = pick_device(device)
    ctx = BuildContext(size=(224, 224), device=dev, seed=0, label=name)
    return cls(params, ctx).to(dev).eval().requires_grad_(False)


def _device_of(perceptor) -> torch.device:
    for t in (*perceptor.parameters(), *perceptor.buffers()):
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def embed_images(perceptor, paths, batch: int = 64) -> torch.Tensor:
    """Unit-length embeddings [N, D] of image files (each resized to the input size)."""
    size = perceptor.input_size
    device = _device_of(perceptor)
    out = []
    paths = list(paths)
    for i in range(0, len(paths), batch):
        images = torch.cat([load_image(p, (size, size)) for p in paths[i:i + batch]]).to(device)
        out.append(F.normalize(perceptor.encode_image(images).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


@torch.no_grad()
def embed_texts(perceptor, texts) -> torch.Tensor:
    return F.normalize(perceptor.encode_text(list(texts)).float(), dim=-1).cpu()


def logit_scale(perceptor) -> float:
    """The model's learned temperature (CLIP's logit_scale), else CLIP's usual 100."""
    scale = getattr(getattr(perceptor, "model", None), "logit_scale", None)
    return float(scale.exp()) if scale is not None else 100.0


def score(perceptor, images, texts) -> torch.Tensor:
    """[n_images, n_texts] cosine similarities."""
    return embed_images(perceptor, images) @ embed_texts(perceptor, texts).T


def classify(perceptor, images, labels) -> torch.Tensor:
    """[n_images, n_labels] zero-shot probabilities (softmax of scaled similarities)."""
    return (logit_scale(perceptor) * score(perceptor, images, labels)).softmax(dim=-1)


def parse_labels(text: str) -> list:
    labels = [l.strip() for l in text.split(",") if l.strip()]
    if len(labels) < 2:
        raise PixloomError(f"--labels {text!r}: give at least two comma-separated labels")
    return labels


def image_files(folder: Path) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        raise PixloomError(f"search {folder}: not a directory")
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


@dataclass
class SearchIndex:
    """Embeddings of a folder's images, keyed by relative path, size and mtime."""

    entries: list  # [{"path", "size", "mtime_ns"}]
    embeddings: torch.Tensor  # [N, D]
    updated: int = 0  # images (re)embedded by the last refresh
    removed: int = 0


def index_path(folder: Path, perceptor) -> Path:
    """The index file for one folder and one perceptor model (in the folder, hidden)."""
    identity = json.dumps({"plugin": perceptor.name, "params": repr(perceptor.params),
                           "version": str(perceptor.version)}, sort_keys=True)
    return Path(folder) / f".pixloom-index-{hashlib.sha256(identity.encode()).hexdigest()[:12]}.safetensors"


def _load_index(path: Path):
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if int(meta.get("version", 0)) != INDEX_VERSION:
                return None
            return json.loads(meta["entries"]), f.get_tensor("embeddings")
    except (OSError, SafetensorError, KeyError, ValueError, json.JSONDecodeError):
        return None  # missing or unreadable: rebuild it


def refresh_index(folder: Path, perceptor) -> SearchIndex:
    """Load the folder's index, re-embed new or changed images, drop removed ones, save it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    files = image_files(folder)
    path = index_path(folder, perceptor)
    old = _load_index(path) if path.exists() else None
    known = {}
    if old is not None:
        entries, embeds = old
        known = {(e["path"], e["size"], e["mtime_ns"]): embeds[i] for i, e in enumerate(entries)}
    entries, vectors, todo = [], [], []
    for p in files:
        st = p.stat()
        key = (str(p.relative_to(folder)), st.st_size, st.st_mtime_ns)
        entries.append({"path": key[0], "size": key[1], "mtime_ns": key[2]})
        vectors.append(known.get(key))
        if vectors[-1] is None:
            todo.append(len(entries) - 1)
    if todo:
        fresh = embed_images(perceptor, [files[i] for i in todo])
        for j, i in enumerate(todo):
            vectors[i] = fresh[j]
    now = {e["path"] for e in entries}
    removed = len({key[0] for key in known} - now)
    embeddings = torch.stack(vectors) if vectors else torch.empty(0, 0)
    if todo or removed or old is None:
        meta = {"version": str(INDEX_VERSION), "entries": json.dumps(entries)}
        tensors = {"embeddings": embeddings.contiguous() if vectors else torch.zeros(0, 1)}
        try:
            atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        except PixloomError:
            pass  # a read-only folder still searches; it just is not cached
    return SearchIndex(entries, embeddings, updated=len(todo), removed=removed)


def search(folder: Path, perceptor, text: str, top: int = 5) -> list:
    """[(path, score)] of the ``top`` images most similar to ``text``, best first."""
    index = refresh_index(folder, perceptor)
    if not index.entries:
        return []
    sims = index.embeddings @ embed_texts(perceptor, [text])[0]
    order = sims.argsort(descending=True)[:top]
    return [(Path(folder) / index.entries[i]["path"], float(sims[i])) for i in order.tolist()]
