"""Choosing the torch device: never assume CUDA, use it when present."""
from __future__ import annotations

import functools

import torch

from .errors import PresetError


def keeps_torch_threads(fn):
    """Decorate a function that calls ``torch.set_num_threads``: the caller's
    thread count is restored when it returns, so that a training or a benchmark
    run in-process (a test, a notebook) leaves the rest of the process as it was."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else is checked."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise PresetError(f"run.device: unknown device {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise PresetError(f"run.device: {name!r} requested but CUDA is not available here (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PresetError(f"run.device: {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise PresetError(f"run.device: {name!r} requested but MPS is not available here (use auto or cpu)")
    elif device.type != "cpu":
        raise PresetError(f"run.device: unsupported device {name!r} (valid: auto, cpu, cuda, cuda:N, mps)")
    return device


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, NumPy's and torch's RNGs; return a CPU generator for plugin use."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_states(device: torch.device) -> tuple:
    """Python's, NumPy's and torch's RNG states (and every CUDA device's on CUDA), for set_rng_states."""
    import random

    import numpy as np

    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def rng_payload(device: torch.device) -> dict:
    """:func:`rng_states` as tensors, numbers and strings, which a weights_only
    ``torch.load`` reads back (NumPy's key array becomes an int64 tensor)."""
    py, np_state, torch_state, cuda = rng_states(device)
    return {"python": [int(py[0]), torch.tensor(py[1], dtype=torch.int64), py[2]],
            "numpy": [str(np_state[0]), torch.from_numpy(np_state[1].astype("int64")), int(np_state[2]),
                      int(np_state[3]), float(np_state[4])],
            "torch": torch_state, "cuda": list(cuda or [])}


def set_rng_payload(payload: dict) -> None:
    """Put back the RNG states of :func:`rng_payload` (CUDA's only where CUDA is here)."""
    import numpy as np

    version, keys, gauss = payload["python"]
    name, np_keys, pos, has_gauss, cached = payload["numpy"]
    cuda = payload["cuda"] if payload["cuda"] and torch.cuda.is_available() else None
    set_rng_states(((version, tuple(int(k) for k in keys.tolist()), gauss),
                    (name, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached),
                    payload["torch"], cuda))


def set_rng_states(states: tuple) -> None:
    import random

    import numpy as np

    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    if states[3] is not None:
        torch.cuda.set_rng_state_all(states[3])
