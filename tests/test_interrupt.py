"""Interruptions and numerical faults never lose work."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixloom
import pixloom.errors
from pixloom.errors import RunError

STEM = "a-red-circle-on-a-blue-background"


def _args(tiny, out, steps):
    return ["render", "default", "--steps", str(steps), "--size", "32x32", "--out", str(out), "--quiet",
            f"perceptors.0.params.model={tiny}", "augment.params.num=4"]


def _pixels(path):
    return np.asarray(Image.open(path)).astype(int)


def test_sigint_in_a_subprocess_exits_130_with_a_resume_file_that_continues(tmp_path, tiny_clip_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pixloom", *_args(tiny_clip_path, out, 1_000_000)],
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(12)  # imports, model load, then some steps
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0], err
    resume = out / f"{STEM}.resume.pt"
    assert resume.is_file() and (out / f"{STEM}.png").is_file()
    assert not list(out.glob("*.part"))
    step = int(lines[0].split("interrupted at step ")[1].split("/")[0])
    proc = subprocess.run([sys.executable, "-m", "pixloom", "render", "--resume", str(resume), "--quiet",
                           "--steps", str(step + 3)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"{step + 3} steps" in proc.stderr


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path, tiny_clip_path):
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4"]

    def interrupt_at_10(state):
        if state.step == 10:
            os.kill(os.getpid(), signal.SIGINT)  # the render's handler turns it into a clean stop

    with pytest.raises(pixloom.errors.PixloomError) as info:
        pixloom.render("default", steps=30, size=32, out=tmp_path / "a", overrides=over, callbacks=[interrupt_at_10])
    assert info.value.exit_code == 130 and "interrupted at step 10/30" in str(info.value)
    resumed = pixloom.render(resume=tmp_path / "a" / f"{STEM}.resume.pt")
    whole = pixloom.render("default", steps=30, size=32, out=tmp_path / "b", overrides=over)
    assert resumed.steps == 30 and len(resumed.history) == 30
    assert resumed.history == whole.history
    assert np.array_equal(_pixels(resumed.files[0]), _pixels(whole.files[0]))


NAN_PLUGIN = '''
import torch
from dataclasses import dataclass
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

STATE = {"fired": False}

@dataclass
class P:
    at: int = 3
    once: bool = False

class Exploding(Loss):
    name = "exploding"
    Params = P
    def forward(self, inputs):
        if inputs.step >= self.params.at and not (self.params.once and STATE["fired"]):
            STATE["fired"] = True
            return inputs.image.mean() * float("nan")
        return inputs.image.mean() * 0.0

@hookimpl
def pixloom_register_losses():
    return [Exploding]
'''


@pytest.fixture
def nan_plugins(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "exploding.py").write_text(NAN_PLUGIN)
    return folder


def test_nan_loss_stops_at_last_good_image_naming_the_loss(tmp_path, tiny_clip_path, nan_plugins):
    out = tmp_path / "out"
    with pytest.raises(RunError) as info:
        pixloom.render("default", plugins_dirs=[nan_plugins], steps=10, size=32, out=out,
                       overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4",
                                  "losses.1.name=exploding", "losses.1.weight=1"])
    message = str(info.value)
    assert "loss exploding became nan at step 4" in message
    assert "last good image" in message
    saved = list(out.glob("*.png"))
    assert any(p.name == f"{STEM}.png" for p in saved)
    assert np.isfinite(_pixels(out / f"{STEM}.png")).all()


def test_nan_cli_exit_code_and_one_line(tmp_path, tiny_clip_path, nan_plugins):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pixloom", *_args(tiny_clip_path, tmp_path, 10),
                           "--plugins-dir", str(nan_plugins), "losses.1.name=exploding"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "loss exploding" in lines[0] and "Traceback" not in proc.stderr


def test_nan_recover_halves_lr_and_finishes(tmp_path, tiny_clip_path, nan_plugins):
    lrs = []
    result = pixloom.render("default", plugins_dirs=[nan_plugins], steps=8, size=32, out=tmp_path,
                            callbacks=[lambda s: lrs.append(s.lr)],
                            overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4",
                                       "losses.1.name=exploding", "losses.1.params.once=true", "run.on_nan=recover"])
    assert result.steps == 8 and len(result.history) == 8
    assert all(np.isfinite(list(row.values())).all() for row in result.history)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.05)
