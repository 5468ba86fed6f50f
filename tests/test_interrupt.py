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
            f"perceptors.0.params.model={tiny}", "augment.params.num=4", "run.candidates=1"]


def _pixels(path):
    return np.asarray(Image.open(path)).astype(int)


READY_PLUGIN = """
import os, time
from pathlib import Path
from pixloom.hookspecs import hookimpl

HERE = Path(__file__).parent

@hookimpl
def pixloom_step(state):
    # at the chosen step, say so and wait until the test has sent SIGINT: the signal
    # arrives while the run is busy, at a known step, with no sleeps to tune
    if state.frame == {frame} and state.step == {step} and not (HERE / "ready").exists():
        (HERE / "ready").touch()
        for _ in range(1200):
            if (HERE / "sent").exists():
                break
            time.sleep(0.025)
"""


def _ctrl_c_when_ready(proc, plugins: Path, timeout: float = 120) -> str:
    """Send SIGINT once the child is at the chosen step; return its stderr after it exits."""
    deadline = time.time() + timeout
    while not (plugins / "ready").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline, "the run never reached the chosen step"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    (plugins / "sent").touch()
    _, err = proc.communicate(timeout=120)
    return err


def _ready_plugin(tmp_path, frame: int, step: int) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "ready.py").write_text(READY_PLUGIN.format(frame=frame, step=step))
    return folder


def test_sigint_in_a_subprocess_exits_130_with_a_resume_file_that_continues(tmp_path, tiny_clip_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    plugins = _ready_plugin(tmp_path, frame=0, step=5)
    proc = subprocess.Popen([sys.executable, "-m", "pixloom", *_args(tiny_clip_path, out, 12),
                             "--plugins-dir", str(plugins)], stderr=subprocess.PIPE, text=True, env=env)
    err = _ctrl_c_when_ready(proc, plugins)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step 5/12" in lines[0] and "--resume" in lines[0], err
    resume = out / f"{STEM}.resume.pt"
    assert resume.is_file() and (out / f"{STEM}.png").is_file()
    with Image.open(out / f"{STEM}.png") as im:  # the image so far, complete
        im.load()
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))
    proc = subprocess.run([sys.executable, "-m", "pixloom", "render", "--resume", str(resume), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "12 steps" in proc.stderr
    assert Path(proc.stdout.split()[0]).name == f"{STEM}-2.png"  # the interrupted image is kept too


def test_sigint_during_pixloom_animate_saves_frames_and_state_exits_130_and_resumes(tmp_path, tiny_clip_path):
    import yaml

    from conftest import make_tiny_preset

    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["losses"][0]["params"]["prompts"] = ["a red circle"]
    preset["animation"] = {"frames": 4, "fps": 8, "first_steps": 3, "steps": 2, "camera": {"zoom": 1.05}}
    preset["output"]["plugins"] = ["frames", "gif", "mp4"]
    path = tmp_path / "anim.yaml"
    path.write_text(yaml.safe_dump(preset))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    plugins = _ready_plugin(tmp_path, frame=2, step=1)
    proc = subprocess.Popen([sys.executable, "-m", "pixloom", "animate", str(path), "--quiet",
                             "--plugins-dir", str(plugins)], stderr=subprocess.PIPE, text=True, env=env)
    err = _ctrl_c_when_ready(proc, plugins)
    run_dir = tmp_path / "out" / "a-red-circle.anim"
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted during frame 2 of 4: frames 0-1 are saved" in lines[0], err
    assert lines[0].endswith(f"continue with: pixloom animate --resume {run_dir}")
    from pixloom.animation_state import load_state

    assert load_state(run_dir).frames_done == 2  # the resumable state
    for i in (0, 1):  # the images so far
        with Image.open(run_dir / "frames" / f"frame-{i:05d}.png") as im:
            im.load()
    assert not (run_dir / "frames" / "frame-00002.png").exists()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".part")]

    done = subprocess.run([sys.executable, "-m", "pixloom", "animate", "--resume", str(run_dir), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    written = done.stdout.split()
    assert f"{run_dir}/a-red-circle.gif" in written and f"{run_dir}/a-red-circle.mp4" in written
    assert len(list((run_dir / "frames").glob("frame-*.png"))) == 4
    assert load_state(run_dir).info["complete"] is True


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path, tiny_clip_path):
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1"]

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


DICE_PLUGIN = """
import random
from dataclasses import dataclass
import numpy as np
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

@dataclass
class P:
    pass

class Dice(Loss):
    # a weight drawn from Python's and NumPy's global RNGs every step
    name = "dice"
    version = "1"
    Params = P

    def forward(self, inputs):
        return inputs.image.mean() * (random.random() + float(np.random.rand()))

@hookimpl
def pixloom_register_losses():
    return [Dice]
"""


def test_a_plugin_drawing_from_python_and_numpy_random_resumes_exactly(tmp_path, tiny_clip_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "dice.py").write_text(DICE_PLUGIN)
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1",
            "losses=[{name: clip, params: {prompts: ['a red circle']}}, {name: dice, weight: 5.0}]"]

    def interrupt_at_6(state):
        if state.step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(pixloom.errors.PixloomError):
        pixloom.render("default", steps=12, size=32, out=tmp_path / "a", overrides=over, plugins_dirs=[plugins],
                       callbacks=[interrupt_at_6])
    [saved] = (tmp_path / "a").glob("*.resume.pt")
    resumed = pixloom.render(resume=saved, plugins_dirs=[plugins])
    whole = pixloom.render("default", steps=12, size=32, out=tmp_path / "b", overrides=over, plugins_dirs=[plugins])
    assert [row["dice"] for row in resumed.history] == [row["dice"] for row in whole.history]
    assert np.array_equal(_pixels(resumed.files[0]), _pixels(whole.files[0]))
    # a version-1 file (torch's RNG state only, before 2026-12-07) still resumes
    import torch

    payload = torch.load(saved, weights_only=True)
    payload.update(version=1, rng=payload.pop("rngs")["torch"], cuda_rng=[])
    old = tmp_path / "old.resume.pt"
    torch.save(payload, old)
    again = pixloom.render(resume=old, plugins_dirs=[plugins], out=tmp_path / "c")
    assert again.steps == 12 and len(again.history) == 12


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
    value: str = "nan"

class Exploding(Loss):
    name = "exploding"
    Params = P
    def forward(self, inputs):
        if inputs.step >= self.params.at and not (self.params.once and STATE["fired"]):
            STATE["fired"] = True
            return inputs.image.mean() * float(self.params.value)
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
                       overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1",
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
                            overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1",
                                       "losses.1.name=exploding", "losses.1.params.once=true", "run.on_nan=recover",
                                       "run.lr=0.1"])
    assert result.steps == 8 and len(result.history) == 8
    assert all(np.isfinite(list(row.values())).all() for row in result.history)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.05)


def test_inf_loss_stops_naming_the_loss(tmp_path, tiny_clip_path, nan_plugins):
    with pytest.raises(RunError) as info:
        pixloom.render("default", plugins_dirs=[nan_plugins], steps=10, size=32, out=tmp_path,
                       overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1",
                                  "losses.1.name=exploding", "losses.1.params.value=inf"])
    assert "loss exploding became inf at step 4" in str(info.value)


PARAMS_PLUGIN = """
import torch
from pixloom.hookspecs import hookimpl

@hookimpl
def pixloom_step(state):
    if state.step == 3:
        with torch.no_grad():
            state.parameters[0].view(-1)[0] = float("inf")
"""


def test_inf_in_the_parameters_stops_at_the_last_good_image(tmp_path, tiny_clip_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "poison.py").write_text(PARAMS_PLUGIN)
    with pytest.raises(RunError) as info:
        pixloom.render("default", plugins_dirs=[plugins], steps=10, size=32, out=tmp_path / "out",
                       overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1"])
    message = str(info.value)
    assert "the generator's parameters became NaN or infinite at step 4" in message
    assert "last good image" in message and "\n" not in message
    image = tmp_path / "out" / f"{STEM}.png"
    assert np.isfinite(_pixels(image)).all() and _pixels(image).std() > 0
