"""Animation parts that need no model: keyframes, the camera, the animation
block's checks, per-frame settings, and the GIF / MP4 / contact-sheet writers."""
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from pixloom.animate import FrameSettings, frame_seed
from pixloom.animation_config import check_settings, parse_animation
from pixloom.camera import Move, affine_matrix, apply_move
from pixloom.errors import PresetError
from pixloom.keyframes import KeyframeError, Keyframes, PromptKeyframes, ease, split_prompt
from pixloom.loop import Run
from pixloom.preset import load_preset

# ---------------------------------------------------------------- keyframes


def test_linear_interpolation_holds_before_and_after_the_keys():
    kf = Keyframes.parse({2: 1.0, 12: 2.0})
    assert kf.at(0) == 1.0 and kf.at(2) == 1.0
    assert kf.at(7) == pytest.approx(1.5)
    assert kf.at(4.5) == pytest.approx(1.25)
    assert kf.at(12) == 2.0 and kf.at(30) == 2.0


def test_smooth_interpolation_is_cosine_eased():
    kf = Keyframes.parse({0: 0.0, 10: 1.0})
    assert kf.at(5, "smooth") == pytest.approx(0.5)
    assert kf.at(1, "smooth") == pytest.approx((1 - math.cos(math.pi * 0.1)) / 2)
    assert kf.at(1, "smooth") < kf.at(1, "linear")  # starts gently
    assert kf.at(9, "smooth") > kf.at(9, "linear")  # and stops gently
    assert ease(0, "smooth") == 0 and ease(1, "smooth") == pytest.approx(1)


def test_keyframes_with_several_segments_and_unsorted_keys():
    kf = Keyframes.parse({10: 0.0, 0: 1.0, 20: 4.0})
    assert kf.keys == ((0, 1.0), (10, 0.0), (20, 4.0))
    assert kf.at(5) == pytest.approx(0.5)
    assert kf.at(15) == pytest.approx(2.0)
    assert kf.at(10) == 0.0


def test_a_plain_number_is_constant():
    kf = Keyframes.parse(1.05)
    assert kf.constant and all(kf.at(f) == 1.05 for f in (0, 3, 99))


@pytest.mark.parametrize("value, message", [
    ({0: "x"}, "frame 0: 'x' is not a number"),
    ({-1: 1.0}, "frame -1 is negative"),
    ({"a": 1.0}, "frame 'a' is not a frame number"),
    ({}, "empty mapping"),
    ([1, 2], "expected a number or a mapping"),
    ({0: True}, "is not a number"),
    ({0: float("nan")}, "not finite"),
])
def test_bad_keyframes_say_what_is_wrong(value, message):
    with pytest.raises(KeyframeError, match=message):
        Keyframes.parse(value)


def test_split_prompt_reads_a_trailing_weight():
    assert split_prompt("a red circle") == ("a red circle", 1.0)
    assert split_prompt("a red circle:0.5") == ("a red circle", 0.5)
    assert split_prompt("ugly:-1") == ("ugly", -1.0)
    assert split_prompt("ratio 16:9 frame:2") == ("ratio 16:9 frame", 2.0)


def test_prompt_blend_weights_across_an_interval():
    kf = PromptKeyframes.parse({0: "a red circle", 24: "a blue star"})
    assert kf.at(0) == [("a red circle", 1.0)]
    assert kf.at(24) == [("a blue star", 1.0)] and kf.at(40) == [("a blue star", 1.0)]
    assert kf.at(12) == [("a red circle", 0.5), ("a blue star", 0.5)]
    six = dict(kf.at(6))
    assert six["a red circle"] == pytest.approx(0.75) and six["a blue star"] == pytest.approx(0.25)
    smooth = dict(kf.at(6, "smooth"))
    t = (1 - math.cos(math.pi * 0.25)) / 2
    assert smooth["a blue star"] == pytest.approx(t) and smooth["a red circle"] == pytest.approx(1 - t)


def test_prompt_blend_keeps_own_weights_and_merges_shared_texts():
    kf = PromptKeyframes.parse({0: ["a red circle:2", "blue"], 10: ["a blue star", "blue"]})
    mid = dict(kf.at(5))
    assert mid == {"a red circle": pytest.approx(1.0), "blue": pytest.approx(1.0), "a blue star": pytest.approx(0.5)}
    assert PromptKeyframes.parse("one prompt").at(7) == [("one prompt", 1.0)]
    assert PromptKeyframes.parse({3: "x", 9: "y"}).first() == ["x"]


def test_frame_seeds_differ_by_frame_and_frame_0_is_the_seed():
    seeds = {frame_seed(0, f) for f in range(100)}
    assert len(seeds) == 100 and frame_seed(7, 0) == 7
    assert frame_seed(1, 1) != frame_seed(0, 2) and frame_seed(3, 5) == frame_seed(3, 5)
    assert all(0 <= s < 2**63 for s in seeds)

# ---------------------------------------------------------------- camera


def _square(size=32, side=8):
    image = torch.zeros(1, 3, size, size)
    lo = (size - side) // 2
    image[..., lo:lo + side, lo:lo + side] = 1.0
    return image


def test_no_move_is_the_identity():
    image = torch.rand(1, 3, 24, 40)
    assert torch.equal(apply_move(image, Move(zoom=1.0, angle=0.0)), image)
    assert torch.equal(affine_matrix(Move(), 40, 24), torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))


def test_zoom_above_1_enlarges_the_centre():
    image = _square()
    zoomed = apply_move(image, Move(zoom=2.0))
    before, after = (image[0, 0] > 0.5).sum().item(), (zoomed[0, 0] > 0.5).sum().item()
    assert before == 64 and 200 <= after <= 300  # about four times the area
    assert zoomed[0, 0, 16, 16] == 1.0  # still centred
    shrunk = apply_move(image, Move(zoom=0.5))
    assert (shrunk[0, 0] > 0.5).sum().item() < before


def test_rotation_is_counter_clockwise_and_translation_moves_right_and_down():
    image = torch.zeros(1, 3, 33, 33)
    image[..., 16, 28] = 1.0  # right of the centre
    turned = apply_move(image, Move(angle=90.0))
    assert turned[0, 0].argmax().item() == 4 * 33 + 16  # now above it
    moved = apply_move(image, Move(translate_x=-3, translate_y=2))
    assert moved[0, 0].argmax().item() == 18 * 33 + 25
    fraction = apply_move(image, Move(translate_x=-3 / 33, translate_y=2 / 33, units="fraction"))
    assert torch.allclose(fraction, moved, atol=1e-4)


def test_border_padding_fills_what_the_move_uncovers():
    image = torch.full((1, 3, 16, 16), 0.25)
    image[..., :, -1] = 0.75
    moved = apply_move(image, Move(translate_x=-4))
    assert torch.allclose(moved[..., :, -4:], torch.full_like(moved[..., :, -4:], 0.75))

# ---------------------------------------------------------------- the animation block


def _block(**over):
    data = {"frames": 12, "fps": 8, "first_steps": 5, "steps": 2,
            "camera": {"zoom": {0: 1.0, 6: 1.05}, "angle": 1}, "prompts": {0: "a", 10: "b"}}
    data.update(over)
    return data


def test_a_good_block_parses():
    anim = parse_animation(_block(), "p.yaml")
    assert (anim.frames, anim.fps, anim.steps_for(0), anim.steps_for(3)) == (12, 8.0, 5, 2)
    move = anim.move(3)
    assert move.zoom == pytest.approx(1.025) and move.angle == 1 and move.translate_x == 0
    assert anim.prompts_at(5) == [("a", 0.5), ("b", 0.5)]


@pytest.mark.parametrize("over, message", [
    ({"frame": 3}, "animation.frame: unknown key (valid: frames, fps"),
    ({"frames": "many"}, "animation.frames: Value 'many'"),
    ({"frames": 0}, "animation.frames: must be at least 1"),
    ({"fps": -1}, "animation.fps: must be a positive number"),
    ({"steps": -1}, "animation.steps: must not be negative"),
    ({"interpolation": "cubic"}, "animation.interpolation: unknown 'cubic'"),
    ({"camera": {"pan": 1}}, "animation.camera.pan: unknown key"),
    ({"camera": {"units": "cm"}}, "animation.camera.units: unknown 'cm'"),
    ({"camera": {"zoom": {0: 1, 4: 0}}}, "animation.camera.zoom: must be above 0"),
    ({"camera": {"angle": "fast"}}, "animation.camera.angle: expected a number or a mapping"),
    ({"prompts": {0: 5}}, "animation.prompts: frame 0: expected a prompt"),
    ({"settings": {"run.lr": {"x": 1}}}, "animation.settings.run.lr: frame 'x' is not a frame number"),
    ({"settings": [1]}, "animation.settings"),
])
def test_a_bad_block_is_one_line_naming_the_key(over, message):
    with pytest.raises(PresetError) as info:
        parse_animation(_block(**over), "p.yaml")
    text = str(info.value)
    assert text.startswith("p.yaml: animation.") and message in text and "\n" not in text


def test_no_block_says_how_to_get_one():
    with pytest.raises(PresetError, match="no animation block"):
        parse_animation(None, "default")


@pytest.mark.parametrize("settings, message", [
    ({"run.steps": 3}, "cannot change per frame: use animation.first_steps"),
    ({"run.size.0": 3}, "cannot change per frame"),
    ({"run.optimizer": 3}, "not a numeric setting"),
    ({"run.lr": {0: 0.1, 5: 0}}, "must stay above 0"),
    ({"losses.5.weight": 1}, "there is no loss 5"),
    ({"generator.params.noise_std": 1}, "not a keyframeable setting"),
    ({"losses.0.params": 1}, "not a keyframeable setting"),
])
def test_keyframed_settings_must_name_a_number_of_the_preset(settings, message):
    cfg = load_preset("default").cfg
    anim = parse_animation(_block(settings=settings), "p.yaml")
    with pytest.raises(PresetError, match=message):
        check_settings(anim, cfg, "p.yaml")


def test_good_settings_pass():
    cfg = load_preset("default", ["run.schedule.name=cosine"]).cfg
    anim = parse_animation(_block(settings={"run.lr": {0: 0.1, 5: 0.05}, "run.schedule.min_lr": 0.1,
                                            "losses.1.weight": {0: 0, 4: 1}, "losses.0.params.x": 1}), "p")
    check_settings(anim, cfg, "p")


@pytest.mark.parametrize("name", ["animation/zoom", "animation/pan-rotate", "animation/morph"])
def test_shipped_animation_presets_check(name):
    loaded = load_preset(name)
    anim = parse_animation(loaded.cfg.animation, name)
    check_settings(anim, loaded.cfg, name)
    assert anim.frames == 24 and anim.fps > 0 and list(loaded.cfg.run.size) == [128, 128]
    assert set(loaded.cfg.output.plugins) == {"frames", "gif", "mp4", "contact"}
    assert anim.first_steps + 23 * anim.steps <= 500  # under a minute or two on a 2-core CPU

# ---------------------------------------------------------------- per-frame settings


@dataclass
class _Params:
    prompts: list = field(default_factory=list)
    target: float = 0.0


class _Loss:
    def __init__(self):
        self.params = _Params(prompts=["a"])
        self.setups = []

    def setup(self, perceptors):
        self.setups.append(list(self.params.prompts))


def _fake_run(loss):
    return Run(generator=None, perceptors={}, augment=None, losses=[("clip", 1.0, loss), ("other", 0.5, loss)],
               outputs=["an output"], resolved=None, device=torch.device("cpu"), cut_size=32, stem="x", out_dir=None)


def test_frame_settings_blend_prompts_set_weights_and_rerun_setup_only_on_change():
    cfg = load_preset("default").cfg
    preset_lr = cfg.run.lr
    anim = parse_animation(_block(prompts={0: "a", 4: "b"},
                                  settings={"losses.1.weight": {0: 0.0, 4: 2.0}, "run.lr": {0: 0.1, 4: 0.3},
                                            "losses.0.params.target": {0: 0, 2: 1}}), "p")
    loss = _Loss()
    settings = FrameSettings(_fake_run(loss), cfg, anim, 0)
    run0, cfg0 = settings.apply(0)
    assert [w for _, w, _ in run0.losses] == [1.0, 0.0] and run0.outputs == []
    assert cfg0.run.lr == pytest.approx(0.1) and cfg.run.lr == preset_lr  # the preset itself is untouched
    assert loss.setups == [[{"text": "a", "weight": 1.0}]]
    run2, cfg2 = settings.apply(2)
    assert [w for _, w, _ in run2.losses] == [1.0, pytest.approx(1.0)]
    assert cfg2.run.lr == pytest.approx(0.2) and loss.params.target == 1.0
    assert loss.setups[-1] == [{"text": "a", "weight": 0.5}, {"text": "b", "weight": 0.5}]
    settings.apply(4)
    count = len(loss.setups)
    settings.apply(5)
    settings.apply(9)
    assert len(loss.setups) == count  # nothing changed after the last keys: no new text encoding

# ---------------------------------------------------------------- writers


def _frames(n=5, w=33, h=21):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(n)]


def test_mp4_is_h264_yuv420p_with_even_sides_and_every_frame(tmp_path):
    import imageio.v3 as iio
    import imageio_ffmpeg

    from pixloom.plugins.mp4_output import write_mp4

    path = tmp_path / "clip.part"  # no .mp4 suffix: the container is named explicitly
    write_mp4(path, _frames(7), fps=12)
    meta = next(imageio_ffmpeg.read_frames(str(path)))
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert meta["size"] == (34, 22) and meta["fps"] == 12
    decoded = list(iio.imiter(path, plugin="FFMPEG", extension=".mp4"))
    assert len(decoded) == 7 and decoded[0].shape == (22, 34, 3)


def test_gif_has_every_frame_and_the_frame_time(tmp_path):
    import imageio.v3 as iio

    from pixloom.plugins.gif_output import write_gif

    path = tmp_path / "anim.part"
    write_gif(path, _frames(6), fps=10)
    stack = iio.imread(path, index=None, extension=".gif")
    assert stack.shape[:3] == (6, 21, 33)
    meta = iio.immeta(path, extension=".gif")
    assert meta["duration"] == 100 and meta["loop"] == 0


def test_contact_sheet_tiles_every_nth_frame():
    from pixloom.plugins.contact_sheet import contact_sheet

    frames = _frames(14, 32, 32)
    sheet = contact_sheet(frames, every=4, gap=2, labels=False)  # frames 0, 4, 8, 12: 2 x 2
    assert sheet.size == (2 * 34 + 2, 2 * 34 + 2)
    assert np.array_equal(np.asarray(sheet)[36:68, 36:68], np.asarray(frames[12]))
    labelled = contact_sheet(frames, every=5, columns=3)
    assert labelled.size == (3 * 34 + 2, 1 * (32 + 12 + 2) + 2)
