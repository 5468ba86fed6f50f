"""Resume files: what an interrupted render needs to continue exactly where it
stopped. Tensors, numbers and strings only, so loading never unpickles code
(``torch.load(weights_only=True)``)."""
from __future__ import annotations

import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .device import rng_payload, set_rng_payload
from .errors import CheckpointError
from .files import write_new

FORMAT = "pixloom-resume"
VERSION = 2  # 2: Python's and NumPy's RNG states as well as torch's ("rngs"); 1 is still read


def save_resume(run, optimizer, state, history: list, steps: int) -> Path:
    """Write ``<name>.resume.pt`` (never replacing another run's) and return its path."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "preset": OmegaConf.to_yaml(run.resolved),
        "step": int(state.step),
        "steps": int(steps),
        "lr": float(state.extra.get("base_lr", state.lr)),  # the base rate, before the schedule
        "generator": {k: v.detach().cpu() for k, v in run.generator.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rngs": rng_payload(run.device),  # a plugin drawing from random or numpy continues exactly too
        "history": json.dumps(history),
    }
    return write_new(run.out_dir, run.stem, ".resume.pt", lambda tmp: torch.save(payload, tmp))


@dataclass
class ResumeState:
    path: Path
    payload: dict

    @property
    def preset(self) -> dict:
        import yaml

        return yaml.safe_load(self.payload["preset"])

    @property
    def lr(self) -> float:
        return float(self.payload["lr"])

    def restore(self, run, optimizer) -> tuple:
        """Put the generator, optimiser and RNGs back; return (start step, history)."""
        try:
            run.generator.load_state_dict(self.payload["generator"])
            optimizer.load_state_dict(self.payload["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"--resume {self.path}: does not match this preset's generator ({exc})") from exc
        if "rngs" in self.payload:
            set_rng_payload(self.payload["rngs"])
        else:  # version 1: torch's states only
            torch.set_rng_state(self.payload["rng"])
            if self.payload.get("cuda_rng") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self.payload["cuda_rng"])
        return int(self.payload["step"]), json.loads(self.payload["history"])


def load_resume(path) -> ResumeState:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"--resume {path}: is a directory, not a .resume.pt file")
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such file")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only met a global it does not allow
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found or "weights only" in str(exc).lower():
            named = f" ({found.group(1)})" if found else ""
            raise CheckpointError(f"--resume {path}: refused: it holds Python objects whose unpickling can run "
                                  f"code{named}; a pixloom resume file holds only tensors, numbers and "
                                  f"strings") from exc
        raise CheckpointError(f"--resume {path}: not a readable pixloom resume file (truncated or corrupt: "
                              f"{type(exc).__name__})") from exc
    except Exception as exc:  # corrupt, truncated, or not ours
        raise CheckpointError(f"--resume {path}: not a readable pixloom resume file (truncated or corrupt: "
                              f"{type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"--resume {path}: not a pixloom resume file")
    if payload.get("version") not in (1, VERSION):
        raise CheckpointError(f"--resume {path}: resume format {payload.get('version')} is not supported")
    return ResumeState(path, payload)
