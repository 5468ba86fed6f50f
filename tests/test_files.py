"""Outputs are never half-written under their final name, never overwrite
another run's files, and a full disk is a clear error that keeps older outputs."""
import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pixloom
from pixloom.errors import OutputError
from pixloom.files import atomic_write, write_new


def test_write_new_never_replaces(tmp_path):
    a = write_new(tmp_path, "x", ".txt", lambda p: p.write_text("one"))
    b = write_new(tmp_path, "x", ".txt", lambda p: p.write_text("two"))
    assert (a.name, b.name) == ("x.txt", "x-2.txt")
    assert a.read_text() == "one" and b.read_text() == "two"
    assert not list(tmp_path.glob(".*.part"))


def test_failed_write_leaves_nothing_and_keeps_old(tmp_path):
    target = tmp_path / "state.bin"
    atomic_write(target, lambda p: p.write_bytes(b"old"))

    def full_disk(path):
        path.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk full"):
        atomic_write(target, full_disk)
    with pytest.raises(OutputError, match="disk full"):
        write_new(tmp_path, "img", ".png", full_disk)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]


def test_render_on_a_full_disk_is_one_line_exit_4_and_keeps_previous_outputs(tmp_path, tiny_clip_path, monkeypatch):
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4"]
    first = pixloom.render("default", steps=2, size=32, out=tmp_path, overrides=over)
    before = {p: p.read_bytes() for p in first.files}

    from PIL import Image as PILImage

    def no_space(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", no_space)
    from pixloom.cli import main

    code = main(["render", "default", "--steps", "2", "--size", "32", "--out", str(tmp_path), "--quiet", *over])
    assert code == 4
    assert {p: p.read_bytes() for p in first.files} == before
    assert not list(tmp_path.glob(".*.part"))


def test_sigkill_mid_write_never_leaves_a_truncated_file(tmp_path):
    script = textwrap.dedent(f"""
        import time, numpy as np
        from PIL import Image
        from pixloom.files import write_new
        big = Image.fromarray((np.random.rand(3000, 3000, 3) * 255).astype('uint8'))
        def slow(path):
            big.save(path, format='PNG', compress_level=9)
        print('ready', flush=True)
        while True:
            write_new({str(tmp_path)!r}, 'frame', '.png', slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    while not list(tmp_path.glob(".frame.png.*.part")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # well inside a multi-second PNG encode
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(tmp_path.glob(".frame.png.*.part")), "the kill did not land mid-write"
    for final in tmp_path.glob("frame*.png"):
        with Image.open(final) as im:
            im.load()  # every file under a final name is complete


def test_two_renders_into_one_folder_keep_both(tmp_path, tiny_clip_path):
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4", "run.candidates=1"]

    def go(seed):
        return pixloom.render("default", steps=3, size=32, seed=seed, out=tmp_path, overrides=over)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(go, [1, 2])
    assert a.files[0] != b.files[0]
    assert not np.array_equal(np.asarray(Image.open(a.files[0])), np.asarray(Image.open(b.files[0])))
    assert len(list(tmp_path.glob("*.png"))) == 4  # two images, two loss plots


# ---------------------------------------------------------------- two real processes, one folder

BARRIER_PLUGIN = '''
import os, time
from pathlib import Path
from pixloom.hookspecs import hookimpl

HERE = Path(__file__).parent

@hookimpl
def pixloom_step(state):
    # at the last step, wait for the other process: both then write their outputs at once
    if state.step == state.total_steps:
        (HERE / f"ready-{os.getpid()}").touch()
        for _ in range(2400):
            if len(list(HERE.glob("ready-*"))) >= 2:
                return
            time.sleep(0.025)
'''


def test_two_processes_rendering_the_same_preset_into_one_folder_never_overwrite(tmp_path, tiny_clip_path,
                                                                                 write_preset):
    """Same preset, same output name, same folder, outputs written at the same moment
    (a barrier plugin holds both at their last step): every file of each run survives."""
    from conftest import make_tiny_preset, subprocess_env

    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["output"].update(name="same", save_every=2)
    path = write_preset(preset)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "barrier.py").write_text(BARRIER_PLUGIN)
    procs = [subprocess.Popen([sys.executable, "-m", "pixloom", "render", str(path), "--plugins-dir", str(plugins),
                               "--seed", str(seed)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env({"OMP_NUM_THREADS": "1"}))
             for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert len(list(plugins.glob("ready-*"))) == 2  # both reached the barrier
    files = [set(out.split()) for out, _ in outs]
    assert files[0] and files[1] and not files[0] & files[1]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"same.png", "same-2.png", "same.losses.png", "same-2.losses.png",
                                               "same.steps", "same-2.steps"}
    a, b = (next(Path(x) for x in f if not x.endswith(".losses.png")) for f in files)  # each run's own image
    seeds = {Image.open(a).text["pixloom:seed"], Image.open(b).text["pixloom:seed"]}
    assert seeds == {"1", "2"}
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    for steps in ("same.steps", "same-2.steps"):
        assert sorted(p.name for p in (out / steps).iterdir()) == ["step-000002.png", "step-000004.png"]
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


def test_two_animations_into_one_folder_get_their_own_run_folders(tmp_path, tiny_clip_path):
    from conftest import make_tiny_preset

    from pixloom.animate import animate

    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["animation"] = {"frames": 2, "first_steps": 1, "steps": 1}
    preset["output"]["plugins"] = ["frames", "gif"]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda seed: animate(preset, seed=seed), [1, 2])
    assert a.run_dir != b.run_dir and a.run_dir.parent == b.run_dir.parent
    assert not set(a.files) & set(b.files)
    for result in (a, b):
        assert all(p.is_file() for p in result.files)


# ---------------------------------------------------------------- a really full disk

FULL_DISK_SCRIPT = '''
import errno, json, os, subprocess, sys
from pathlib import Path

disk, preset = Path(sys.argv[1]), sys.argv[2]
out = disk / "out"
env = dict(os.environ, OMP_NUM_THREADS="1")

def render():
    return subprocess.run([sys.executable, "-m", "pixloom", "render", preset, "--out", str(out), "--quiet"],
                          capture_output=True, text=True, env=env)

first = render()
before = {p.name: p.read_bytes() for p in out.iterdir()}
fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)  # fill what space is left
try:
    while True:
        os.write(fd, bytes(4096))
except OSError as exc:
    assert exc.errno == errno.ENOSPC, exc
os.close(fd)
second = render()
after = {p.name: p.read_bytes() for p in out.iterdir()}
print(json.dumps({"first": first.returncode, "first_err": first.stderr, "second": second.returncode,
                  "second_err": second.stderr, "before": sorted(before), "after": sorted(after),
                  "intact": all(after.get(k) == v for k, v in before.items())}))
'''


def test_a_really_full_disk_is_exit_4_and_keeps_previous_outputs(tmp_path, tiny_preset, write_preset):
    """A 2 MiB tmpfs in a private mount namespace (``unshare``, root or a user
    namespace): the first render fits, then the disk is filled up and a second
    render is refused with one line; the first one's files are untouched."""
    import json
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    disk = tmp_path / "disk"
    disk.mkdir()
    preset = write_preset(tiny_preset)
    (tmp_path / "full.py").write_text(FULL_DISK_SCRIPT)
    flags = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    probe = subprocess.run(["unshare", *flags, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    command = (f"mount -t tmpfs -o size=2m tmpfs '{disk}' && "
               f"'{sys.executable}' '{tmp_path / 'full.py'}' '{disk}' '{preset}'")
    proc = subprocess.run(["unshare", *flags, "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0 and "mount" in proc.stderr and not proc.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["first"] == 0, result["first_err"]
    assert result["second"] == 4, result["second_err"]
    lines = result["second_err"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixloom: error:") and "disk full" in lines[0], lines
    assert result["intact"] and set(result["before"]) <= set(result["after"])
    assert not [n for n in result["after"] if n.endswith(".part")]
    assert list(disk.iterdir()) == []  # the tmpfs was private to the namespace


# ---------------------------------------------------------------- an animation that runs out of disk

def test_an_animation_that_runs_out_of_disk_keeps_its_frames_and_resumes(tmp_path, tiny_clip_path, monkeypatch,
                                                                         run_cli, write_preset):
    """ENOSPC while writing frame 2: exit 4, one line saying what is saved and how
    to go on; frames 0-1 and the state are intact; once there is room, --resume
    finishes the animation."""
    from conftest import make_tiny_preset

    import pixloom.files as files

    preset = make_tiny_preset(tiny_clip_path, tmp_path / "out")
    preset["animation"] = {"frames": 4, "first_steps": 2, "steps": 1}
    preset["output"]["plugins"] = ["frames", "gif"]
    real = files._write_temp

    def disk_fills_at_frame_2(folder, name, write):
        if name == "frame-00002.png":
            def partial(tmp):
                tmp.write_bytes(b"\x89PNG half")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(folder, name, partial)
        return real(folder, name, write)

    monkeypatch.setattr(files, "_write_temp", disk_fills_at_frame_2)
    result = run_cli("animate", write_preset(preset), "--quiet")
    run_dir = tmp_path / "out" / "a-red-circle-on-a-blue-background.anim"
    assert result.code == 4, result.err
    line = result.error_line()
    assert "frame-00002.png: disk full" in line and "frames 0-1 are saved" in line
    assert line.endswith(f"continue with: pixloom animate --resume {run_dir}")
    saved = sorted(p.name for p in (run_dir / "frames").iterdir())
    assert saved == ["frame-00000.png", "frame-00001.png"]
    for name in saved:
        Image.open(run_dir / "frames" / name).load()
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".part")]

    monkeypatch.setattr(files, "_write_temp", real)  # room again
    done = run_cli("animate", "--resume", run_dir, "--quiet")
    assert done.code == 0, done.err
    assert len(list((run_dir / "frames").glob("frame-*.png"))) == 4 and (run_dir / "a-red-circle-on-a-blue-background.gif").is_file()
