"""SIGKILL a real ``pixloom`` process in the middle of writing each kind of output
(PNG, step PNGs, GIF, MP4, contact sheet, the render's .resume.pt, the
animation's frame and state files): no file under its final name is ever
truncated, a state file keeps its previous complete version, and the run
resumes from what was saved.

To land the kill inside a write every time, the child runs with a small shim
(``stall.py`` below) around :func:`pixloom.files._write_temp`: when the file
named by ``STALL_ON`` is being written, the shim lets the real writer finish,
cuts the temporary file back to half its bytes (what a kill mid-write leaves),
reports the temporary path and sleeps; the test then kills the process. One
test kills at an unprepared moment instead, with no shim.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import imageio_ffmpeg
import pytest
import yaml
from PIL import Image, ImageSequence

from conftest import make_tiny_preset, subprocess_env

STEM = "a-red-circle"

STALL = textwrap.dedent('''
    """Test shim: stall (then get killed) in the middle of writing one output."""
    import os
    import time
    from pathlib import Path

    import pixloom.files as files

    PATTERN = os.environ["STALL_ON"]
    NTH = int(os.environ.get("STALL_NTH", "1"))
    REPORT = Path(os.environ["STALL_REPORT"])
    _real = files._write_temp
    _seen = [0]


    def _write_temp(folder, name, write):
        if not name.endswith(PATTERN):
            return _real(folder, name, write)
        _seen[0] += 1
        if _seen[0] != NTH:
            return _real(folder, name, write)

        def half_written(tmp):
            write(tmp)
            data = Path(tmp).read_bytes()
            Path(tmp).write_bytes(data[: len(data) // 2])
            REPORT.write_text(str(tmp))
            time.sleep(600)

        return _real(folder, name, half_written)


    files._write_temp = _write_temp
''')

SIGINT_AT_STEP_2 = '''
import os, signal
from pixloom.hookspecs import hookimpl

@hookimpl
def pixloom_step(state):
    if state.step == 2:
        os.kill(os.getpid(), signal.SIGINT)
'''


# ------------------------------------------------------------------ checking what is left

def _complete(path: Path) -> None:
    """Raise unless ``path`` is a complete file of its kind."""
    name = path.name
    if name.endswith(".png"):
        with Image.open(path) as im:
            im.load()
    elif name.endswith(".gif"):
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                frame.load()
    elif name.endswith(".mp4"):
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        count = sum(1 for _ in reader)
        assert count >= 1 and meta["size"], path
    elif name.endswith(".safetensors"):
        from safetensors.torch import safe_open

        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                f.get_tensor(key)
    elif name.endswith(".resume.pt"):
        from pixloom.resume import load_resume

        load_resume(path)
    elif name.endswith(".json"):
        json.loads(path.read_text())


def final_files(root: Path) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".part"))


def assert_all_complete(root: Path) -> list:
    files = final_files(root)
    for path in files:
        try:
            _complete(path)
        except Exception as exc:  # noqa: BLE001 - any failure to decode is the bug
            raise AssertionError(f"{path} is under its final name but incomplete: {exc!r}") from exc
    return files


# ------------------------------------------------------------------ running and killing

def _preset(tiny_clip_path, tmp_path, animation: bool, plugins: list, save_every: int = 0) -> Path:
    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["run"]["steps"] = 6
    preset["output"]["save_every"] = save_every
    preset["output"]["plugins"] = plugins
    preset["losses"][0]["params"]["prompts"] = ["a red circle"]
    if animation:
        preset["animation"] = {"frames": 4, "fps": 8, "first_steps": 2, "steps": 2,
                               "camera": {"zoom": 1.05}}
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


def _start(args: list, tmp_path: Path, stall_on: str | None = None, nth: int = 1) -> tuple:
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir(exist_ok=True)
    (shim_dir / "stall.py").write_text(STALL)
    report = tmp_path / "stalled-at"
    env = {"OMP_NUM_THREADS": "1", "STALL_REPORT": str(report)}
    code = "import sys\n"
    if stall_on:
        env.update(STALL_ON=stall_on, STALL_NTH=str(nth))
        code += f"sys.path.insert(0, {str(shim_dir)!r}); import stall\n"
    code += "from pixloom.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=str(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(env))
    return proc, report


def _kill_when_stalled(proc, report: Path, timeout: float = 120) -> Path:
    deadline = time.time() + timeout
    while not report.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the process ended (code {proc.returncode}) before the write:\n{err}")
        assert time.time() < deadline, "the write never started"
        time.sleep(0.02)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return Path(report.read_text())


def _check_half_written(tmp: Path, final: Path) -> None:
    """The kill landed mid-write: a half temporary file, named after ``final``."""
    assert tmp.exists() and tmp.parent == final.parent, tmp
    assert tmp.name.startswith(f".{final.name}.") and tmp.name.endswith(".part"), tmp.name


# ------------------------------------------------------------------ renders

@pytest.mark.parametrize("stall_on, final", [
    (f"{STEM}.png", f"{STEM}.png"),
    (".losses.png", f"{STEM}.losses.png"),
    ("step-000004.png", f"{STEM}.steps/step-000004.png"),
], ids=["final-png", "loss-plot", "step-png"])
def test_sigkill_while_a_render_writes_a_png(stall_on, final, tiny_clip_path, tmp_path):
    preset = _preset(tiny_clip_path, tmp_path, animation=False, plugins=["png"], save_every=2)
    proc, report = _start(["render", preset, "--quiet"], tmp_path, stall_on)
    tmp = _kill_when_stalled(proc, report)
    out = tmp_path / "out"
    _check_half_written(tmp, out / final)
    assert not (out / final).exists()
    files = assert_all_complete(out)
    if final.startswith(f"{STEM}.steps"):  # the earlier step image is there and whole
        assert out / f"{STEM}.steps" / "step-000002.png" in files


def test_sigkill_while_writing_the_resume_file_after_ctrl_c(tiny_clip_path, tmp_path):
    preset = _preset(tiny_clip_path, tmp_path, animation=False, plugins=["png"])
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "ctrl_c.py").write_text(SIGINT_AT_STEP_2)
    proc, report = _start(["render", preset, "--quiet", "--plugins-dir", plugins], tmp_path, ".resume.pt")
    tmp = _kill_when_stalled(proc, report)
    out = tmp_path / "out"
    _check_half_written(tmp, out / f"{STEM}.resume.pt")
    assert not (out / f"{STEM}.resume.pt").exists()
    files = assert_all_complete(out)
    assert out / f"{STEM}.png" in files  # the image of the interrupted run was saved first


# ------------------------------------------------------------------ animations

ANIMATION_OUTPUTS = ["frames", "gif", "mp4", {"name": "contact", "params": {"every": 1}}]


@pytest.mark.parametrize("stall_on, nth, final", [
    ("animation.safetensors", 3, "state/animation.safetensors"),  # after frame 1 (the 1st is the empty state)
    ("frame-00002.png", 1, "frames/frame-00002.png"),
    (".gif", 1, f"{STEM}.gif"),
    (".mp4", 1, f"{STEM}.mp4"),
    (".contact.png", 1, f"{STEM}.contact.png"),
], ids=["state", "frame-png", "gif", "mp4", "contact-sheet"])
def test_sigkill_while_an_animation_writes_then_resume(stall_on, nth, final, tiny_clip_path, tmp_path):
    from pixloom.animate import animate
    from pixloom.animation_state import load_state

    preset = _preset(tiny_clip_path, tmp_path, animation=True, plugins=ANIMATION_OUTPUTS)
    proc, report = _start(["animate", preset, "--quiet"], tmp_path, stall_on, nth)
    tmp = _kill_when_stalled(proc, report)
    run_dir = tmp_path / "out" / f"{STEM}.anim"
    target = run_dir / final
    _check_half_written(tmp, target)
    if final == "state/animation.safetensors":
        assert load_state(run_dir).frames_done == 1  # the previous, complete version
    else:
        assert not target.exists()
    assert_all_complete(run_dir)

    result = animate(resume=run_dir)  # nothing was lost: the run goes on from its last complete state
    assert len(result.frames) == 4
    names = {p.relative_to(run_dir).as_posix() for p in assert_all_complete(run_dir)}
    assert {f"{STEM}.gif", f"{STEM}.mp4", f"{STEM}.contact.png", "frames/frame-00003.png"} <= names


def test_sigkill_at_an_unprepared_moment_leaves_only_complete_files(tiny_clip_path, tmp_path):
    """No shim: kill a longer animation some time after its first frame, wherever it is."""
    from pixloom.animate import animate
    from pixloom.animation_state import frame_path

    preset = _preset(tiny_clip_path, tmp_path, animation=True, plugins=ANIMATION_OUTPUTS)
    data = yaml.safe_load(preset.read_text())
    data["animation"]["frames"] = 24
    preset.write_text(yaml.safe_dump(data))
    proc, _ = _start(["animate", preset, "--quiet"], tmp_path)
    run_dir = tmp_path / "out" / f"{STEM}.anim"
    deadline = time.time() + 120

    def wait_for(index):
        while not frame_path(run_dir, index).exists():
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() is not None else ""
            time.sleep(0.005)
        return time.time()

    # Somewhere within the next two frames' time, measured on this machine, so the
    # kill lands mid-run however fast the machine is (a fixed delay let a fast CI
    # machine finish all 24 frames first).
    second = wait_for(2)
    frame_time = wait_for(3) - second
    time.sleep(random.Random(os.getpid()).uniform(0.0, 2.0 * frame_time))
    assert proc.poll() is None, "the animation finished before the kill: make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert_all_complete(run_dir)
    result = animate(resume=run_dir)
    assert len(result.frames) == 24
