"""Published model files: a registry of well-known ones, the cache they live in,
and loading torch files without running code from them.

The registry names each model by its usual name (``ViT-B/32``,
``imagenet_f16_16384``, ``openai-dvae``) and lists its files: where to get
them (mirrors after the primary address), about how large they are, and their
sha256 where the publisher states one (OpenAI's CLIP URLs embed it; no hash is
published for the taming or DALL-E files, so those are ``None`` rather than
guessed).

Cache: ``$PIXLOOM_HOME/models/<group>/<file>``, with ``PIXLOOM_HOME``
defaulting to ``$XDG_CACHE_HOME/pixloom`` (``~/.cache/pixloom``).

Loading (:func:`load_torch_file`) follows three rules:

1. ``torch.load(weights_only=True)``: tensors and plain containers only.
2. Names a published checkpoint carries only as inert metadata (a Lightning
   callback class used as a dict key, an OmegaConf node, a numpy scalar) are
   replaced by empty stand-in objects that never run anything; callers that
   read a pickled module (the DALL-E ``.pkl``) may add module classes to that
   list and rebuild the module from the stand-ins' tensors themselves.
3. Anything else needs full unpickling, which can run arbitrary code: it is done
   only when the file's sha256 equals the registry's or the user trusts the file
   (``trust: true``, ``PIXLOOM_TRUST_CHECKPOINTS=1``, ``--trust``); otherwise a
   one-line :class:`CheckpointError` refuses it.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .errors import CheckpointError

HOME_ENV = "PIXLOOM_HOME"
TRUST_ENV = "PIXLOOM_TRUST_CHECKPOINTS"
OFFLINE_ENV = "PIXLOOM_OFFLINE"

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class KnownFile:
    """One published file."""

    filename: str  # its name in the cache
    urls: tuple  # the publisher's address first, then mirrors
    sha256: Optional[str] = None  # None: the publisher states none
    approx_mb: Optional[int] = None  # for messages and progress only, never checked
    needs_unpickling: bool = False  # a whole pickled object, not a state dict


@dataclass(frozen=True)
class KnownModel:
    """A model and its files by role (``weights``; ``config`` + ``checkpoint``;
    ``encoder`` + ``decoder``)."""

    name: str
    kind: str  # clip | vqgan | dvae
    group: str  # cache sub-folder
    description: str
    files: dict = field(default_factory=dict)  # role -> KnownFile
    aliases: tuple = ()


_CLIP_HOSTS = ("https://openaipublic.azureedge.net/clip/models/",
               "https://openaipublic.blob.core.windows.net/clip/models/")


def _clip(name: str, sha: str, filename: str, mb: int, description: str) -> KnownModel:
    urls = tuple(f"{host}{sha}/{filename}" for host in _CLIP_HOSTS)
    return KnownModel(name, "clip", "clip", description,
                      {"weights": KnownFile(filename, urls, sha, mb)},
                      aliases=(filename[:-3], name.lower(), filename[:-3].lower()))


def _heibox(share: str, path: str) -> str:
    return f"https://heibox.uni-heidelberg.de/d/{share}/files/?p={path}&dl=1"


def _vqgan(name, description, config_urls, ckpt_urls, mb, aliases=()) -> KnownModel:
    return KnownModel(name, "vqgan", "vqgan", description, {
        "config": KnownFile(f"{name}.yaml", tuple(config_urls)),
        "checkpoint": KnownFile(f"{name}.ckpt", tuple(ckpt_urls), approx_mb=mb),
    }, aliases=aliases)


# sha256 of OpenAI's CLIP files: the hash is the folder name in OpenAI's own URLs (clip/clip.py).
REGISTRY: tuple = (
    _clip("RN50", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt", 244,
          "OpenAI CLIP ResNet-50, 224 px, 1024-d embeddings"),
    _clip("RN101", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt", 278,
          "OpenAI CLIP ResNet-101, 224 px, 512-d embeddings"),
    _clip("RN50x4", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt", 402,
          "OpenAI CLIP ResNet-50x4, 288 px, 640-d embeddings"),
    _clip("ViT-B/32", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af", "ViT-B-32.pt", 338,
          "OpenAI CLIP ViT-B/32, 224 px, 512-d embeddings"),
    _clip("ViT-B/16", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f", "ViT-B-16.pt", 335,
          "OpenAI CLIP ViT-B/16, 224 px, 512-d embeddings"),
    _clip("ViT-L/14", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836", "ViT-L-14.pt", 890,
          "OpenAI CLIP ViT-L/14, 224 px, 768-d embeddings"),
    _vqgan("imagenet_f16_1024", "taming VQGAN, ImageNet, f=16, 1024 codes",
           [_heibox("8088892a516d4e3baf92", "%2Fconfigs%2Fmodel.yaml"),
            "https://heibox.uni-heidelberg.de/f/6ecf2af6c658432c8298/?dl=1",
            "http://mirror.io.community/blob/vqgan/vqgan_imagenet_f16_1024.yaml"],
           [_heibox("8088892a516d4e3baf92", "%2Fckpts%2Flast.ckpt"),
            "https://heibox.uni-heidelberg.de/f/140747ba53464f49b476/?dl=1",
            "http://mirror.io.community/blob/vqgan/vqgan_imagenet_f16_1024.ckpt"], 958,
           aliases=("vqgan_imagenet_f16_1024",)),
    _vqgan("imagenet_f16_16384", "taming VQGAN, ImageNet, f=16, 16384 codes",
           [_heibox("a7530b09fed84f80a887", "%2Fconfigs%2Fmodel.yaml"),
            "http://mirror.io.community/blob/vqgan/vqgan_imagenet_f16_16384.yaml"],
           [_heibox("a7530b09fed84f80a887", "%2Fckpts%2Flast.ckpt"),
            "http://mirror.io.community/blob/vqgan/vqgan_imagenet_f16_16384.ckpt"], 980,
           aliases=("vqgan_imagenet_f16_16384",)),
    _vqgan("gumbel_f8_8192", "taming VQGAN, OpenImages, f=8, 8192 codes, Gumbel quantizer",
           [_heibox("2e5662443a6b4307b470", "%2Fconfigs%2Fmodel.yaml")],
           [_heibox("2e5662443a6b4307b470", "%2Fckpts%2Flast.ckpt")], 376,
           aliases=("openimages_f16_8192", "vqgan_gumbel_f8_8192", "gumbel_8192")),
    _vqgan("wikiart_f16_16384", "VQGAN fine-tuned on WikiArt, f=16, 16384 codes",
           ["https://github.com/pixray/pixray/releases/download/v1.7.1/vqgan_wikiart_16384.yaml",
            "http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.yaml",
            "http://mirror.io.community/blob/vqgan/wikiart_16384.yaml"],
           ["https://github.com/pixray/pixray/releases/download/v1.7.1/vqgan_wikiart_16384.ckpt",
            "http://eaidata.bmk.sh/data/Wikiart_16384/wikiart_f16_16384_8145600.ckpt",
            "http://mirror.io.community/blob/vqgan/wikiart_16384.ckpt"], 980,
           aliases=("wikiart", "wikiart_16384")),
    KnownModel("openai-dvae", "dvae", "dalle", "OpenAI's DALL-E dVAE: 8192 codes, 32x32 tokens for 256 px", {
        "encoder": KnownFile("encoder.pkl", ("https://cdn.openai.com/dall-e/encoder.pkl",), needs_unpickling=True),
        "decoder": KnownFile("decoder.pkl", ("https://cdn.openai.com/dall-e/decoder.pkl",), needs_unpickling=True),
    }, aliases=("dalle", "dall-e", "dvae")),
)


def known_models(kind: Optional[str] = None) -> list:
    return [m for m in REGISTRY if kind is None or m.kind == kind]


def find_model(name: str, kind: Optional[str] = None) -> Optional[KnownModel]:
    """The registry entry called ``name`` (or one of its aliases), or None."""
    key = str(name).strip()
    for m in known_models(kind):
        if key == m.name or key in m.aliases or key.lower() == m.name.lower():
            return m
    return None


def get_model(name: str, kind: Optional[str] = None) -> KnownModel:
    found = find_model(name, kind)
    if found is None:
        choices = ", ".join(m.name for m in known_models(kind))
        raise CheckpointError(f"unknown model {name!r} (known: {choices})")
    return found


# --------------------------------------------------------------------------- cache


def home() -> Path:
    """pixloom's cache folder: $PIXLOOM_HOME, else the user's cache dir + /pixloom."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "pixloom" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pixloom"


def cache_path(model: KnownModel, role: str) -> Path:
    return home() / "models" / model.group / model.files[role].filename


def model_paths(model: KnownModel) -> dict:
    """role -> cache path (present or not)."""
    return {role: cache_path(model, role) for role in model.files}


def ensure_model(model: KnownModel, roles=None, progress: bool = True) -> dict:
    """role -> path of each file of ``model``, downloading those missing
    (unless $PIXLOOM_OFFLINE is set, which makes a missing file a one-line error)."""
    from .download import download_known

    out = {}
    for role in roles or model.files:
        path = cache_path(model, role)
        if not path.is_file():
            if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
                raise CheckpointError(missing_message(model, role, f"{OFFLINE_ENV} is set"))
            download_known(model, role, progress=progress)
        out[role] = path
    return out


def missing_message(model: KnownModel, role: str, why: str) -> str:
    known = model.files[role]
    sha = f" (sha256 {known.sha256})" if known.sha256 else ""
    return (f"{model.name}: {known.filename} is not in the cache and cannot be downloaded ({why}); "
            f"put it at {cache_path(model, role)}{sha}, from {known.urls[0]}")


# --------------------------------------------------------------------------- hashing and trust


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def trust_from_env() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def registry_sha256(path: Path) -> Optional[str]:
    """The registry's sha256 for a file in the cache (by its place there), else None."""
    path = Path(path).resolve()
    for m in REGISTRY:
        for role, known in m.files.items():
            if known.sha256 and cache_path(m, role).resolve() == path:
                return known.sha256
    return None


def _trusted(path: Path, sha256: Optional[str], trust: bool) -> tuple:
    """(trusted?, why) for a file that needs full unpickling."""
    if trust or trust_from_env():
        return True, "trusted by the user"
    expected = sha256 or registry_sha256(path)
    if expected:
        actual = sha256_file(path)
        if actual == expected:
            return True, "sha256 matches the registry"
        return False, f"its sha256 {actual[:12]}... is not the published {expected[:12]}..."
    return False, "no published sha256 vouches for it"


# --------------------------------------------------------------------------- safe loading

# Globals that published checkpoints carry only as metadata: replaced by stand-ins.
METADATA_GLOBALS = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.", "numpy.",
                    "argparse.Namespace", "pathlib.", "taming.", "main.")
# Never stand-ins, whatever a caller allows: these are how pickles run code.
_NEVER = ("builtins.", "__builtin__.", "os.", "posix.", "nt.", "subprocess.", "sys.", "shutil.",
          "importlib.", "runpy.", "code.", "pickle.", "_pickle.", "marshal.", "types.", "ctypes.",
          "socket.", "functools.", "operator.", "codecs.", "io.", "webbrowser.", "pty.", "torch.")


class Opaque:
    """A stand-in for a class or function a checkpoint names but pixloom does not
    import: calling or building it only records what it was given."""

    _qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        obj.__dict__["_state"] = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __repr__(self):
        return f"<stand-in {self._qualname}>"


def _stand_in(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (Opaque,), {"_qualname": qualname})


def _stubbable(name: str, allowed: tuple) -> bool:
    if any(name.startswith(p) for p in _NEVER) and not name.startswith("torch.nn.modules."):
        return False
    return any(name == p or name.startswith(p) for p in allowed)


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``): a zip with code/ and constants.pkl."""
    if not _is_zip(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def check_file(path: Path, what: str = "checkpoint") -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{what} {path}: is a directory, not a file")
    if not path.is_file():
        raise CheckpointError(f"{what} {path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path}: is empty (an interrupted download?)")
    return path


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, with its type when that says more."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if ". " in text[:-1]:
        text = text[: text.index(". ") + 1]
    if len(text) < 12:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text[:200]


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def scan_globals(path: Path) -> Optional[list]:
    """Every global (module.name) a torch file's pickles name, read statically with
    pickletools (nothing is unpickled); None when the file cannot be parsed."""
    import pickletools

    try:
        if _is_zip(path):
            with zipfile.ZipFile(path) as z:
                member = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return None
                streams = [z.read(member)]
        else:
            streams = [Path(path).read_bytes()]
    except (OSError, zipfile.BadZipFile, RuntimeError):
        return None
    found = []
    import io as _io

    for data in streams:
        buf = _io.BytesIO(data)
        while buf.tell() < len(data):
            strings = []
            try:
                for op, arg, _ in pickletools.genops(buf):
                    if op.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:
                break  # the end of the pickles (a legacy file's raw storage bytes follow them)
    return list(dict.fromkeys(found))


def _unsafe_globals(path: Path) -> Optional[list]:
    """Globals of a torch file that weights_only does not allow (None: not knowable here)."""
    import torch

    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is not None and _is_zip(path):
        try:
            return list(finder(str(path)))
        except Exception:
            pass
    names = scan_globals(path)
    if names is None:
        return None
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = set(_get_allowed_globals())
    except Exception:  # pragma: no cover - private API moved
        return None
    renamed = {"__builtin__.": "builtins.", "copy_reg.": "copyreg."}  # protocol-2 spellings
    for old, new in renamed.items():
        names = [new + n[len(old):] if n.startswith(old) else n for n in names]
    return [n for n in names if n not in allowed]


def _weights_only(path: Path, stubs: dict):
    import torch

    with torch.serialization.safe_globals([(cls, name) for name, cls in stubs.items()]):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def _truncated(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in ("truncated", "ran out of input", "eof", "unexpected end"))


class _NeedsUnpickling(Exception):
    def __init__(self, names):
        super().__init__(", ".join(names))
        self.names = names


def _load_restricted(path: Path, allowed: tuple):
    """weights_only load with stand-ins for the allowed names; raises _NeedsUnpickling."""
    stubs: dict = {}
    unsafe = _unsafe_globals(path)
    if unsafe:
        bad = [n for n in unsafe if not _stubbable(n, allowed)]
        if bad:
            raise _NeedsUnpickling(bad)
        stubs = {n: _stand_in(n) for n in unsafe}
    for _ in range(64):  # legacy (non-zip) files: learn the names one error at a time
        try:
            return _weights_only(path, stubs)
        except pickle.UnpicklingError as exc:
            text = str(exc)
            match = _GLOBAL_RE.search(text)
            if match and _stubbable(match.group(1), allowed) and match.group(1) not in stubs:
                stubs[match.group(1)] = _stand_in(match.group(1))
                continue
            if _truncated(text):
                raise
            if match or "weights only" in text.lower():
                raise _NeedsUnpickling([match.group(1)] if match else ["Python objects, not only tensors"]) from exc
            raise
    raise _NeedsUnpickling(sorted(stubs))


def load_torch_file(path, *, what: str = "checkpoint", sha256: Optional[str] = None, trust: bool = False,
                    allow_stand_ins: tuple = METADATA_GLOBALS):
    """A ``torch.save`` file's object, loaded without running code from it (see the
    module docstring). ``sha256`` is the expected hash (default: the registry's for
    a cached file); ``trust`` allows full unpickling of this file."""
    import torch

    path = check_file(path, what)
    if is_torchscript(path):
        raise CheckpointError(f"{what} {path}: is a TorchScript archive, not a torch.save file")
    try:
        return _load_restricted(path, tuple(allow_stand_ins))
    except _NeedsUnpickling as exc:
        names = exc.names
    except Exception as exc:  # torch raises many types for truncated or corrupt files
        raise CheckpointError(f"{what} {path}: truncated or corrupt ({_first_line(exc)})") from exc
    ok, why = _trusted(path, sha256, trust)
    if not ok:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise CheckpointError(
            f"{what} {path}: refused: loading it needs full unpickling, which can run code ({shown}), "
            f"and {why}; if you trust its source, set trust: true or {TRUST_ENV}=1")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{what} {path}: cannot be loaded ({_first_line(exc)})") from exc


def load_torchscript_state_dict(path, *, what: str = "model", sha256: Optional[str] = None,
                                trust: bool = False) -> dict:
    """The state dict of a TorchScript archive (OpenAI's CLIP .pt files).

    Loading TorchScript compiles and runs the archive's own code, so it follows the
    full-unpickling rule: the sha256 must match the registry, or the user trusts it."""
    import torch

    path = check_file(path, what)
    ok, why = _trusted(path, sha256, trust)
    if not ok:
        raise CheckpointError(
            f"{what} {path}: refused: a TorchScript archive runs its own code when loaded, and {why}; "
            f"if you trust its source, set trust: true or {TRUST_ENV}=1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jit.load is deprecated, the files are not
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"{what} {path}: truncated or corrupt TorchScript archive ({_first_line(exc)})") from exc
    return {k: v for k, v in module.state_dict().items()}


def stand_in_tree(obj) -> bool:
    """Whether ``obj`` was rebuilt from stand-ins (see :func:`module_state`)."""
    return isinstance(obj, Opaque)


def module_state(obj, prefix: str = "") -> dict:
    """The state dict (parameters and buffers, dotted names) of a pickled
    ``nn.Module`` loaded as stand-ins: it walks ``_parameters``, ``_buffers`` and
    ``_modules`` of each stand-in's recorded ``__dict__``."""
    import torch

    state = getattr(obj, "_state", None)
    if not isinstance(state, dict):
        state = {k: v for k, v in vars(obj).items() if not k.startswith("_") or k in
                 ("_parameters", "_buffers", "_modules")}
    out = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if torch.is_tensor(value):
                out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(module_state(child, f"{prefix}{name}."))
    return out


def module_attrs(obj) -> dict:
    """A stand-in module's plain attributes (ints, floats, strings, bools)."""
    state = getattr(obj, "_state", None)
    if not isinstance(state, dict):
        state = vars(obj)
    return {k: v for k, v in state.items() if isinstance(v, (int, float, str, bool))}
