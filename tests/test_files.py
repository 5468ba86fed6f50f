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
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4"]

    def go(seed):
        return pixloom.render("default", steps=3, size=32, seed=seed, out=tmp_path, overrides=over)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(go, [1, 2])
    assert a.files[0] != b.files[0]
    assert not np.array_equal(np.asarray(Image.open(a.files[0])), np.asarray(Image.open(b.files[0])))
    assert len(list(tmp_path.glob("*.png"))) == 4  # two images, two loss plots
