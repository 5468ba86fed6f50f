"""Finding and loading model files: the embedded ones shipped as package data,
and files a user names by path.

pixloom's own weights are .safetensors files: a state dict with exactly the keys
of the upstream model class, plus string metadata under ``pixloom.*`` keys that
says how to use it (tokenizer, normalisation). Loading one never unpickles.
"""
from __future__ import annotations

import functools
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError

_SCOPES: list = []  # the caches of the open sharing_loads() scopes, innermost last


@contextmanager
def sharing_loads():
    """Within it, a :func:`shared` loader called again with equal arguments returns
    the frozen model it loaded the first time instead of reading the file again.
    One scope is one preset's build (a render's starts, its generator and losses):
    a run's best-of-N starts then hold one copy of each model, not N. The cache
    goes with the scope; the runs built in it keep their models."""
    _SCOPES.append({})
    try:
        yield
    finally:
        _SCOPES.pop()


def shared(load):
    """Mark ``load`` as a loader of a frozen model (see :func:`sharing_loads`).
    Callable arguments (a preset's path ``resolve``) are left out of the key:
    within one scope they resolve names the same way."""

    @functools.wraps(load)
    def loader(*args, **kwargs):
        if not _SCOPES:
            return load(*args, **kwargs)
        key = (load.__module__, load.__qualname__, tuple(a for a in args if not callable(a)),
               tuple(sorted((k, v) for k, v in kwargs.items() if not callable(v))))
        cache = _SCOPES[-1]
        try:
            hash(key)
        except TypeError:  # an argument that cannot be a key (a list): load as usual
            return load(*args, **kwargs)
        if key not in cache:
            cache[key] = load(*args, **kwargs)
        return cache[key]

    return loader

def weights_dir() -> Path:
    """The folder of the embedded weights (package data of pixloom.plugins)."""
    import pixloom.plugins as _plugins

    return Path(_plugins.__file__).resolve().parent / "weights"


def embedded_models() -> dict[str, Path]:
    """Embedded model names (file stems) mapped to their files."""
    folder = weights_dir()
    return {p.stem: p for p in sorted(folder.glob("*.safetensors"))}


def resolve_model_file(name: str) -> Path:
    """An embedded model name or a path to a model file, as a Path that exists."""
    known = embedded_models()
    if name in known:
        return known[name]
    path = Path(name).expanduser()
    if path.is_dir():
        raise CheckpointError(f"model {name!r} is a directory, not a model file")
    if path.is_file():
        return path
    choices = ", ".join(known) or "none shipped"
    raise CheckpointError(f"unknown model {name!r}: not an embedded model ({choices}) and no such file")


@dataclass
class SafetensorsModel:
    state_dict: dict
    metadata: dict


def read_safetensors(path: Path) -> SafetensorsModel:
    """Read a .safetensors file into float32 tensors and its parsed pixloom metadata."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw_meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({_first_line(exc)})") from exc
    meta = {}
    for key, value in raw_meta.items():
        if key.startswith("pixloom."):
            try:
                meta[key[len("pixloom."):]] = json.loads(value)
            except json.JSONDecodeError:
                meta[key[len("pixloom."):]] = value
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    return SafetensorsModel(state, meta)


def read_model(path: Path, fmt: str, what: str, default_format=None) -> SafetensorsModel:
    """``read_safetensors`` of a file whose ``format`` metadata must be ``fmt``
    (``default_format`` stands in when a file has none); else a one-line refusal
    naming ``what`` was expected."""
    loaded = read_safetensors(path)
    found = loaded.metadata.get("format", default_format)
    if found != fmt:
        raise CheckpointError(f"{path}: holds a {found!r} model, not a {what}")
    return loaded


def write_safetensors(path: Path, state_dict: dict, metadata: dict, dtype=None) -> None:
    """Write a state dict with pixloom metadata (values JSON-encoded), atomically."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        tensors[k] = v
    meta = {f"pixloom.{k}": json.dumps(v) for k, v in metadata.items()}
    from .files import atomic_write

    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
