"""Shared fixtures: a tiny random CLIP, a preset that renders in a fraction of a
second on the CPU, and two ways to run the ``pixloom`` command (in-process for
speed, as a subprocess for real exit codes and stderr).

Nothing global is changed here: the tiny models are small enough that the
thread count does not matter (run with ``OMP_NUM_THREADS=1`` on a busy machine).
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tiny_models import TINY_TEXT_DENOISER, save_tiny_clip, save_tiny_denoiser

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def error_line(self) -> str:
        """The single stderr line of a failed command (asserts that there is exactly one)."""
        lines = self.err.splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{self.err}"
        assert "Traceback" not in self.err
        return lines[0]


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    """A tiny random CLIP (ModifiedResNet, 32 px input, word tokenizer) as .safetensors."""
    return save_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip.safetensors")


@pytest.fixture(scope="session")
def tiny_denoiser_path(tmp_path_factory) -> Path:
    """A tiny random world denoiser (the ``diffusion`` generator's model) as .safetensors."""
    return save_tiny_denoiser(tmp_path_factory.mktemp("models") / "tiny-denoiser.safetensors")


@pytest.fixture(scope="session")
def tiny_text_denoiser_path(tmp_path_factory) -> Path:
    """A tiny random denoiser conditioned on shapes-clip's text embeddings."""
    return save_tiny_denoiser(tmp_path_factory.mktemp("models") / "tiny-text-denoiser.safetensors",
                              config=TINY_TEXT_DENOISER)


def make_tiny_preset(model_path, out_dir) -> dict:
    """A preset shaped like presets/default.yaml (clip + smoothness losses) that
    renders a 32 px image in a few steps with the tiny CLIP."""
    return {
        "description": "tiny test preset",
        "run": {"steps": 4, "seed": 0, "device": "cpu", "size": [32, 32], "lr": 0.1,
                "optimizer": "adam", "progress": False},
        "generator": {"name": "pixel", "params": {"init": "noise"}},
        "perceptors": [{"name": "clip", "params": {"model": str(model_path)}}],
        "augment": {"name": "cutouts", "params": {"num": 4, "min_scale": 0.3, "overview": 1}},
        "losses": [
            {"name": "clip", "weight": 1.0, "params": {"prompts": ["a red circle on a blue background"]}},
            {"name": "smoothness", "weight": 0.1},
        ],
        "output": {"dir": str(out_dir), "save_every": 0, "plugins": ["png"]},
    }


@pytest.fixture
def tiny_preset(tiny_clip_path, tmp_path) -> dict:
    """A fresh dict preset (safe to modify) writing into ``tmp_path / "out"``."""
    return copy.deepcopy(make_tiny_preset(tiny_clip_path, tmp_path / "out"))


@pytest.fixture
def write_preset(tmp_path):
    """``write_preset(data, name="tiny.yaml") -> Path``: a preset dict as a YAML file in tmp_path."""

    def write(data: dict, name: str = "tiny.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_preset_file(tiny_preset, write_preset) -> Path:
    return write_preset(tiny_preset)


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*args) -> CliResult``: ``pixloom.cli.main(args)`` in this process."""
    from pixloom.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def subprocess_env(extra: dict | None = None, pythonpath=()) -> dict:
    env = dict(os.environ)
    env.pop("PIXLOOM_TRACE_PLUGINS", None)
    if pythonpath:
        parts = [str(p) for p in pythonpath]
        if env.get("PYTHONPATH"):
            parts.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(parts)
    env.update(extra or {})
    return env


@pytest.fixture
def run_cli_subprocess(tmp_path):
    """``run_cli_subprocess(*args, env=None, pythonpath=(), cwd=tmp_path) -> CliResult``:
    ``python -m pixloom ARGS`` in a new process."""

    def run(*args, env=None, pythonpath=(), cwd=None, timeout=180) -> CliResult:
        proc = subprocess.run([sys.executable, "-m", "pixloom", *(str(a) for a in args)],
                              capture_output=True, text=True, cwd=str(cwd or tmp_path),
                              env=subprocess_env(env, pythonpath), timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run

