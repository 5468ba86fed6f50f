"""OpenAI's CLIP code, imported without the ``clip`` package's ``__init__``.

``clip/__init__.py`` imports ``clip/clip.py``, which imports torchvision; the
model (``clip/model.py``) and the BPE tokenizer (``clip/simple_tokenizer.py``)
need only torch, ftfy and regex. We load those two files as modules directly,
so pixloom uses OpenAI's own model code with or without torchvision.
"""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from .errors import PixloomError


@lru_cache(maxsize=None)
def _clip_dir() -> Path:
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise PixloomError(
            "OpenAI's CLIP code is not installed: pip install --no-deps clip-anytorch ftfy regex"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _load(stem: str) -> ModuleType:
    name = f"pixloom._openai_clip.{stem}"
    if name in sys.modules:
        return sys.modules[name]
    path = _clip_dir() / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def clip_model() -> ModuleType:
    """OpenAI's ``clip/model.py`` (CLIP, build_model, ModifiedResNet, ...)."""
    return _load("model")


def simple_tokenizer() -> ModuleType:
    """OpenAI's ``clip/simple_tokenizer.py`` (SimpleTokenizer with its BPE vocabulary)."""
    return _load("simple_tokenizer")
