"""Animations end to end with the tiny CLIP at 32 px: outputs, coherence,
exact resume after an interruption, the CLI, the shipped presets."""
import copy
import math

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

import pixloom
from conftest import make_tiny_preset
from pixloom.animate import AnimationInterrupted, animate
from pixloom.animation_state import load_state

FRAMES = 16
STEM = "a-red-circle"


def tiny_animation(model, out, frames=FRAMES) -> dict:
    """16 frames of 32 px: a slow zoom and turn while the prompt morphs."""
    preset = make_tiny_preset(model, out)
    preset["run"]["lr"] = 0.03
    preset["animation"] = {
        "frames": frames, "fps": 8, "first_steps": 8, "steps": 3,
        "camera": {"zoom": 1.03, "angle": 1},
        "prompts": {0: "a red circle", 15: "a blue star"},
    }
    preset["output"]["plugins"] = ["frames", "gif", "mp4", {"name": "contact", "params": {"every": 4}}]
    return preset


@pytest.fixture(scope="module")
def whole(tiny_clip_path, tmp_path_factory):
    """One uninterrupted animation, shared by the tests that only read it."""
    return animate(tiny_animation(tiny_clip_path, tmp_path_factory.mktemp("whole")))


def _array(image):
    return np.asarray(image).astype(np.float64) / 255


def test_animation_writes_frames_gif_mp4_and_contact_sheet(whole):
    run_dir = whole.run_dir
    assert run_dir.name == f"{STEM}.anim" and len(whole.frames) == FRAMES
    names = sorted(p.relative_to(run_dir).as_posix() for p in whole.files)
    assert names == sorted([f"frames/frame-{i:05d}.png" for i in range(FRAMES)]
                           + [f"{STEM}.gif", f"{STEM}.mp4", f"{STEM}.contact.png"])
    for i in (0, FRAMES - 1):
        with Image.open(run_dir / "frames" / f"frame-{i:05d}.png") as im:
            assert im.text["pixloom:frame"] == str(i)
            assert np.array_equal(np.asarray(im.convert("RGB")), np.asarray(whole.frames[i]))

    gif = iio.imread(run_dir / f"{STEM}.gif", index=None)
    assert gif.shape[:3] == (FRAMES, 32, 32)

    mp4 = run_dir / f"{STEM}.mp4"
    meta = next(imageio_ffmpeg.read_frames(str(mp4)))
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 8
    decoded = list(iio.imiter(mp4, plugin="FFMPEG"))
    assert len(decoded) == FRAMES and decoded[0].shape == (32, 32, 3)
    # lossy, but the same pictures
    assert np.abs(decoded[5].astype(int) - np.asarray(whole.frames[5]).astype(int)).mean() < 12

    with Image.open(run_dir / f"{STEM}.contact.png") as sheet:
        assert sheet.size == (2 * 34 + 2, 2 * (32 + 12 + 2) + 2)  # frames 0, 4, 8, 12
    assert not list(run_dir.rglob("*.part"))
    state = load_state(run_dir)
    assert state.info["complete"] and state.frames_done == FRAMES


def test_consecutive_frames_are_coherent(whole):
    """Each frame starts from the last one moved, so neighbours are alike: the mean
    absolute difference of consecutive frames (pixels in 0..1) is under half the
    mean difference of frames 12 apart (measured: about 0.01 against 0.055)."""
    frames = [_array(f) for f in whole.frames]
    near = np.mean([np.abs(frames[i + 1] - frames[i]).mean() for i in range(FRAMES - 1)])
    far = np.mean([np.abs(frames[i + 12] - frames[i]).mean() for i in range(FRAMES - 12)])
    assert near < 0.5 * far, (near, far)


def test_interrupt_after_frame_10_then_resume_equals_an_uninterrupted_run(whole, tiny_clip_path, tmp_path):
    def ctrl_c_in_frame_11(state):
        if state.frame == 11 and state.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(AnimationInterrupted) as info:
        animate(tiny_animation(tiny_clip_path, tmp_path), callbacks=[ctrl_c_in_frame_11])
    stopped = info.value
    run_dir = tmp_path / f"{STEM}.anim"
    assert stopped.exit_code == 130 and stopped.frames_done == 11 and stopped.run_dir == run_dir
    message = str(stopped)
    assert "\n" not in message and "frames 0-10 are saved" in message
    assert f"pixloom animate --resume {run_dir}" in message
    assert load_state(run_dir).frames_done == 11
    assert len(list((run_dir / "frames").glob("*.png"))) == 11 and not list(run_dir.glob("*.gif"))

    resumed = animate(resume=run_dir)
    assert resumed.resumed_at == 11 and resumed.run_dir == run_dir
    assert len(resumed.frames) == FRAMES
    for a, b in zip(resumed.frames, whole.frames):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert torch.equal(resumed.tensor, whole.tensor)
    assert resumed.frame_losses == whole.frame_losses and resumed.steps == whole.steps
    last = f"frames/frame-{FRAMES - 1:05d}.png"
    assert np.array_equal(np.asarray(Image.open(run_dir / last)), np.asarray(Image.open(whole.run_dir / last)))
    assert (run_dir / f"{STEM}.gif").read_bytes() == (whole.run_dir / f"{STEM}.gif").read_bytes()


SIGINT_PLUGIN = '''
import os, signal
from pathlib import Path
from pixloom.hookspecs import hookimpl

FIRED = Path(__file__).with_name("fired")

@hookimpl
def pixloom_step(state):
    if state.frame == 2 and state.step == 1 and not FIRED.exists():
        FIRED.touch()
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the run stops at the next step boundary
'''


def test_ctrl_c_exits_130_with_one_line_and_the_cli_resumes(tiny_clip_path, tmp_path, write_preset, run_cli):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "ctrl_c.py").write_text(SIGINT_PLUGIN)
    preset = write_preset(tiny_animation(tiny_clip_path, tmp_path / "out", frames=4))
    stopped = run_cli("animate", preset, "--quiet", "--plugins-dir", plugins)
    run_dir = tmp_path / "out" / f"{STEM}.anim"
    assert stopped.code == 130
    line = stopped.error_line()
    assert "interrupted during frame 2 of 4: frames 0-1 are saved" in line
    assert line.endswith(f"continue with: pixloom animate --resume {run_dir}")

    done = run_cli("animate", "--resume", run_dir, "--quiet")
    assert done.code == 0, done.err
    assert "4 frames" in done.err and str(run_dir) in done.err
    assert f"{run_dir}/{STEM}.mp4" in done.out.splitlines()
    assert len(list((run_dir / "frames").glob("frame-*.png"))) == 4

    again = run_cli("animate", "--resume", run_dir)
    assert again.code == 2 and "already complete (4 of 4 frames)" in again.error_line()
    mixed = run_cli("animate", "--resume", run_dir, "--seed", "3")
    assert mixed.code == 2 and "drop --seed" in mixed.error_line()


@pytest.mark.parametrize("override, message", [
    ("animation.zoom=1.1", "animation.zoom: unknown key (valid: frames, fps, first_steps"),
    ("animation.frames=lots", "animation.frames: Value 'lots'"),
    ("animation.camera.angle={0: 1, 5: fast}", "animation.camera.angle: frame 5: 'fast' is not a number"),
    ("animation.settings={run.seed: 3}", "animation.settings.run.seed: cannot change per frame"),
    ("animation.settings={losses.0.params.distance: 1}", "not a numeric parameter of loss 'clip'"),
])
def test_a_bad_animation_block_exits_2_with_one_line(override, message, tiny_clip_path, tmp_path,
                                                     write_preset, run_cli):
    preset = write_preset(tiny_animation(tiny_clip_path, tmp_path / "out"))
    result = run_cli("animate", preset, override, "--quiet")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"pixloom: error: {preset}: animation") and message in line
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())  # nothing left behind


def test_cli_overrides_may_follow_options(tiny_clip_path, tmp_path, write_preset, run_cli):
    """``animate PRESET --quiet KEY=VALUE``: trailing dotlist overrides reach the preset, as for render."""
    preset = write_preset(tiny_animation(tiny_clip_path, tmp_path / "out"))
    bad = run_cli("animate", preset, "--quiet", "animation.zoom=1.1")
    assert bad.code == 2 and "animation.zoom: unknown key" in bad.error_line()
    result = run_cli("animate", preset, "--quiet", "animation.frames=2", "--first-steps", "1",
                     "animation.steps=1", "output.plugins=[frames]")
    assert result.code == 0, result.err
    assert sorted(p.rsplit("/", 1)[-1] for p in result.out.split()) == ["frame-00000.png", "frame-00001.png"]


def test_a_preset_without_animation_is_refused(tiny_preset_file, run_cli):
    result = run_cli("animate", tiny_preset_file)
    assert result.code == 2 and "the preset has no animation block" in result.error_line()


def test_first_frame_is_the_still_render(whole, tiny_clip_path, tmp_path):
    preset = tiny_animation(tiny_clip_path, tmp_path)
    preset["losses"][0]["params"]["prompts"] = ["a red circle"]
    preset["output"]["plugins"] = ["png"]
    still = pixloom.render(preset, steps=8)
    assert np.array_equal(np.asarray(still.image), np.asarray(whole.frames[0]))


def test_keyframed_settings_reach_every_step(tiny_clip_path, tmp_path):
    preset = tiny_animation(tiny_clip_path, tmp_path, frames=5)
    preset["output"]["plugins"] = []
    preset["animation"].update(first_steps=1, steps=1, settings={
        "run.lr": {0: 0.1, 4: 0.02}, "losses.1.weight": {0: 0, 2: 0.5}})
    seen = {}
    result = animate(preset, callbacks=[lambda state: seen.setdefault(state.frame, state.lr)])
    assert seen[0] == pytest.approx(0.1) and seen[2] == pytest.approx(0.06) and seen[4] == pytest.approx(0.02)
    assert "smoothness" not in result.frame_losses[0] and "smoothness" in result.frame_losses[3]


@pytest.mark.parametrize("name", ["animation/zoom", "animation/pan-rotate", "animation/morph"])
def test_shipped_presets_animate(name, tiny_clip_path, tmp_path):
    result = animate(name, overrides=[f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4"],
                     size=32, frames=3, first_steps=2, steps=1, out=tmp_path)
    assert len(result.frames) == 3 and result.frames[0].size == (32, 32)
    assert {p.suffix for p in result.files} == {".png", ".gif", ".mp4"}
    assert math.isfinite(result.frame_losses[-1]["total"])


def test_fixed_prompts_replace_the_keyframes(tiny_clip_path, tmp_path):
    preset = tiny_animation(tiny_clip_path, tmp_path, frames=2)
    preset["output"]["plugins"] = []
    result = animate(copy.deepcopy(preset), prompts=["a green square"], first_steps=1, steps=1)
    assert result.run_dir.name == "a-green-square.anim"
    assert result.preset.losses[0].params.prompts == ["a green square"]


@pytest.mark.parametrize("generator", ["vqgan", "dalle"])
def test_latent_generators_animate_and_resume_exactly(generator, tiny_clip_path, tmp_path_factory):
    """A latent generator re-encodes each moved frame in ``init_from_image``;
    nothing else about it is special, and resuming stays exact."""
    from tiny_token_models import registering_dir, save_tiny_dvae, save_tiny_vqgan

    models = tmp_path_factory.mktemp(generator)
    model = (save_tiny_vqgan if generator == "vqgan" else save_tiny_dvae)(models / f"tiny-{generator}.safetensors")
    plugins = [registering_dir(models, generator)]  # whether or not it is a default plugin yet

    def preset(out):
        data = tiny_animation(tiny_clip_path, out, frames=4)
        data["generator"] = {"name": generator, "params": {"model": str(model)}}
        data["output"]["plugins"] = ["gif"]
        data["animation"].update(first_steps=3, steps=2)
        return data

    def ctrl_c_in_frame_2(state):
        if state.frame == 2 and state.step == 1:
            raise KeyboardInterrupt

    whole = animate(preset(models / "whole"), plugins_dirs=plugins)
    with pytest.raises(AnimationInterrupted):
        animate(preset(models / "cut"), plugins_dirs=plugins, callbacks=[ctrl_c_in_frame_2])
    resumed = animate(resume=models / "cut" / f"{STEM}.anim")  # the plugins dir is remembered
    assert resumed.resumed_at == 2 and len(resumed.frames) == 4
    for a, b in zip(resumed.frames, whole.frames):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert torch.equal(resumed.tensor, whole.tensor)
