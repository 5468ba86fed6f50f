"""Hostile and broken model and state files, through every loader that reads one:
a file whose unpickling would run code is refused before any of it runs (the
payloads below would create a marker file: it must not exist afterwards), and a
truncated or corrupt file is one clear line naming it (exit code 2).

Loaders: the VQGAN .ckpt (taming), the dVAE .pkl (OpenAI dall_e), a CLIP .pt,
a render's .resume.pt and an animation's state file; each through its Python
loader and through the ``pixloom`` command a user would run.
"""
from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from pixloom import checkpoints
from pixloom.errors import CheckpointError

from tiny_models import tiny_clip
from tiny_token_models import TINY_DVAE, save_lightning_checkpoint, tiny_vqgan


@pytest.fixture(autouse=True)
def _no_trust(monkeypatch):
    monkeypatch.delenv(checkpoints.TRUST_ENV, raising=False)


# ------------------------------------------------------------------ payloads

class SystemPayload:
    """Unpickling this runs a shell command (os.system) that creates the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class ExecPayload:
    """Unpickling this calls builtins.exec on Python source that creates the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class SubprocessPayload:
    """Unpickling this starts ``touch MARKER`` through subprocess.call."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


PAYLOADS = {"os.system": SystemPayload, "builtins.exec": ExecPayload, "subprocess.call": SubprocessPayload}
FORMATS = ["zip", "legacy"]  # torch.save's current format and the pre-1.6 one published checkpoints use


def _save(obj, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def _sanity_check_payload(payload_cls, tmp_path):
    """The payload really runs code when unpickled without protection (so the
    refusals below mean something)."""
    marker = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(payload_cls(marker)))
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("kind", PAYLOADS)
def test_the_payloads_do_run_code_when_unpickled_naively(kind, tmp_path):
    _sanity_check_payload(PAYLOADS[kind], tmp_path)


# ------------------------------------------------------------------ hostile files, one maker per loader

def _vqgan_files(folder: Path, payload) -> dict:
    """A taming config and a Lightning-shaped .ckpt with the payload among its keys."""
    model = tiny_vqgan()
    cfg = model.config
    (folder / "evil.yaml").write_text(yaml.safe_dump({"model": {
        "target": "taming.models.vqgan.VQModel",
        "params": {"embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed, "ddconfig": dict(cfg.ddconfig)}}}))
    return {"state_dict": model.state_dict(), "global_step": 3, "hparams": payload}


def _dvae_object(payload):
    """A whole pickled dall_e decoder (as OpenAI publishes them) carrying the payload."""
    from pixloom.dvae import DVAEConfig, make_decoder

    decoder = make_decoder(DVAEConfig(**TINY_DVAE))
    decoder.evil = payload
    return decoder


def _clip_object(payload):
    return {**tiny_clip().state_dict(), "evil": payload}


def _resume_object(payload):
    return {"format": "pixloom-resume", "version": 1, "preset": "run: {steps: 2}\n", "step": 1, "steps": 2,
            "lr": 0.1, "generator": {}, "optimizer": {}, "history": "[]", "evil": payload}


def _hostile(loader: str, folder: Path, payload, fmt: str) -> Path:
    if loader == "vqgan":
        return _save(_vqgan_files(folder, payload), folder / "evil.ckpt", fmt)
    if loader == "dvae":
        return _save(_dvae_object(payload), folder / "decoder.pkl", fmt)
    if loader == "clip":
        return _save(_clip_object(payload), folder / "evil.pt", fmt)
    if loader == "resume":
        return _save(_resume_object(payload), folder / "evil.resume.pt", fmt)
    raise AssertionError(loader)


def _load(loader: str, path: Path):
    if loader == "vqgan":
        from pixloom.vqgan import load_vqgan

        return load_vqgan(str(path.with_suffix(".yaml")), str(path))
    if loader == "dvae":
        from pixloom.dvae import load_dvae

        return load_dvae(str(path), need_encoder=False)
    if loader == "clip":
        from pixloom.clip_loading import load_clip

        return load_clip(str(path))
    if loader == "resume":
        from pixloom.resume import load_resume

        return load_resume(path)
    raise AssertionError(loader)


LOADERS = ["vqgan", "dvae", "clip", "resume"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("loader", LOADERS)
def test_a_file_that_would_run_code_is_refused_by_every_loader(loader, kind, fmt, tmp_path):
    marker = tmp_path / "pwned"
    path = _hostile(loader, tmp_path, PAYLOADS[kind](marker), fmt)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as info:
        _load(loader, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "refused" in message, message
    assert not marker.exists(), "the payload ran"


def _cli_args(loader: str, path: Path, preset: dict, write_preset) -> list:
    if loader == "vqgan":
        preset["generator"] = {"name": "vqgan", "params": {"model": str(path.with_suffix(".yaml")),
                                                           "checkpoint": str(path)}}
        return ["render", write_preset(preset)]
    if loader == "dvae":
        preset["generator"] = {"name": "dalle", "params": {"model": str(path)}}
        return ["render", write_preset(preset)]
    if loader == "clip":
        return ["render", write_preset(preset), f"perceptors.0.params.model={path}"]
    if loader == "resume":
        return ["render", "--resume", path]
    raise AssertionError(loader)


@pytest.mark.parametrize("loader", LOADERS)
def test_the_cli_refuses_a_hostile_file_in_one_line_and_runs_nothing(loader, tmp_path, tiny_preset,
                                                                    write_preset, run_cli):
    marker = tmp_path / "pwned"
    path = _hostile(loader, tmp_path, SystemPayload(marker), "legacy")
    out = tmp_path / "out"
    result = run_cli(*_cli_args(loader, path, tiny_preset, write_preset))
    assert result.code == 2, result.err
    line = result.error_line()
    assert "refused" in line and path.name in line
    assert not marker.exists()
    assert not out.exists() or not any(out.iterdir())  # nothing was rendered


def test_an_animation_state_that_is_a_hostile_pickle_is_not_unpickled(tmp_path, run_cli):
    """The animation state is .safetensors (tensors and JSON, no code by design);
    a pickle put in its place is refused as unreadable, and never unpickled."""
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "x.anim"
    (run_dir / "state").mkdir(parents=True)
    _save({"evil": SystemPayload(marker)}, run_dir / "state" / "animation.safetensors", "legacy")
    result = run_cli("animate", "--resume", run_dir)
    assert result.code == 2
    assert "not a readable animation state" in result.error_line()
    assert not marker.exists()


def test_trust_is_what_lets_a_pickle_run(tmp_path):
    """The refusal is the safety: with trust the same file would be unpickled in
    full (shown with a harmless class, never the payload)."""
    from fractions import Fraction

    path = _save({"state_dict": tiny_clip().state_dict(), "note": Fraction(1, 3)}, tmp_path / "clip.pt", "zip")
    from pixloom.clip_loading import load_clip

    with pytest.raises(CheckpointError, match="refused"):
        load_clip(str(path))
    assert load_clip(str(path), trust=True).model is not None


# ------------------------------------------------------------------ truncated and corrupt files

def _good(loader: str, folder: Path) -> Path:
    if loader == "vqgan":
        obj = _vqgan_files(folder, None)
        return save_lightning_checkpoint(folder / "evil.ckpt", obj["state_dict"])
    if loader == "dvae":
        from pixloom.dvae import DVAEConfig, make_decoder

        return _save(make_decoder(DVAEConfig(**TINY_DVAE)), folder / "decoder.pkl", "zip")
    if loader == "clip":
        return _save(tiny_clip().state_dict(), folder / "evil.pt", "zip")
    if loader == "resume":
        return _save({k: v for k, v in _resume_object(None).items() if k != "evil"}, folder / "evil.resume.pt", "zip")
    raise AssertionError(loader)


DAMAGE = {
    "half": lambda data: data[: len(data) // 2],
    "tail-cut": lambda data: data[:-200],
    "garbage": lambda data: b"this is not a checkpoint at all\n" * 8,
    "flipped-bytes": lambda data: data[:200] + bytes(b ^ 0xFF for b in data[200:600]) + data[600:],
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("loader", LOADERS)
def test_a_truncated_or_corrupt_file_is_one_clear_line(loader, damage, tmp_path):
    path = _good(loader, tmp_path)
    _load(loader, path)  # the undamaged file loads
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.raises(CheckpointError) as info:
        _load(loader, path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert any(w in message for w in ("truncated or corrupt", "not a readable", "cannot be loaded")), message


@pytest.mark.parametrize("loader", LOADERS)
def test_an_empty_file_is_one_clear_line(loader, tmp_path):
    path = _good(loader, tmp_path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        _load(loader, path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("loader", LOADERS)
def test_the_cli_reports_a_truncated_file_in_one_line(loader, tmp_path, tiny_preset, write_preset, run_cli):
    path = _good(loader, tmp_path)
    path.write_bytes(path.read_bytes()[:-300])
    result = run_cli(*_cli_args(loader, path, tiny_preset, write_preset))
    assert result.code == 2, result.err
    assert path.name in result.error_line()


def test_a_truncated_animation_state_is_one_clear_line(tmp_path, tiny_clip_path, write_preset, run_cli):
    from conftest import make_tiny_preset

    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["animation"] = {"frames": 3, "first_steps": 1, "steps": 1}
    preset["output"]["plugins"] = ["frames"]
    stop = tmp_path / "plugins"
    stop.mkdir()
    (stop / "stop.py").write_text(
        "from pixloom.hookspecs import hookimpl\n\n"
        "@hookimpl\ndef pixloom_step(state):\n    if state.frame == 1:\n        raise KeyboardInterrupt\n")
    first = run_cli("animate", write_preset(preset), "--quiet", "--plugins-dir", stop)
    assert first.code == 130, first.err
    run_dir = next((tmp_path / "out").glob("*.anim"))
    state = run_dir / "state" / "animation.safetensors"
    state.write_bytes(state.read_bytes()[:-100])
    result = run_cli("animate", "--resume", run_dir)
    assert result.code == 2
    line = result.error_line()
    assert "animation.safetensors" in line and "not a readable animation state" in line
