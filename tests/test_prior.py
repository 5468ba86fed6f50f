"""The ``prior`` loss: score distillation with the world denoiser moves an
image toward world images of its prompt, reaches the generator's parameters
and repeats exactly under a seed."""
import pytest
import torch

import pixloom
import pixloom.errors
from pixloom import world
from pixloom.interfaces import BuildContext
from pixloom.plugins.prior_loss import PriorLoss, PriorParams


class _Inputs:
    def __init__(self, image, step=0, total=10, frame=None):
        self.image, self.step, self.total_steps, self.frame = image, step, total, frame


def _loss(model="shapes-denoiser-text", prompt="a red circle on a blue background", size=(32, 32), **params):
    ctx = BuildContext(size=size, device=torch.device("cpu"), seed=0, extra={"prompts": [prompt]})
    return PriorLoss(PriorParams(model=model, **params), ctx)


def _border_colour(image: torch.Tensor) -> str:
    h, w = image.shape[-2:]
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[2:h - 2, 2:w - 2] = False
    rgb = image[0][:, mask].median(dim=1).values
    return world.COLOUR_NAMES[int((world._PALETTE - rgb).pow(2).sum(1).argmin())]


@pytest.mark.parametrize("prompt, colour", [("a yellow star on a blue background", "blue"),
                                            ("a white square on a red background", "red")])
def test_the_prior_alone_paints_the_prompts_background(prompt, colour):
    loss = _loss(prompt=prompt, samples=4)  # the preset's levels and guidance (the plugin's defaults)
    logits = torch.zeros(1, 3, 32, 32, requires_grad=True)  # a grey start
    opt = torch.optim.Adam([logits], lr=0.1)
    for step in range(80):
        value = loss(_Inputs(torch.sigmoid(logits), step, 80))
        opt.zero_grad()
        value.backward()
        opt.step()
    image = torch.sigmoid(logits).detach()
    assert _border_colour(image) == colour
    assert float(image.std()) > 0.05  # not one flat colour: a foreground formed as well


def test_its_gradient_reaches_the_image_and_its_noise_repeats(tiny_text_denoiser_path):
    loss = _loss(str(tiny_text_denoiser_path), size=(48, 32))
    assert loss.grid == (12, 16)  # the denoiser's 16 px on the long side, the render's aspect, multiples of 4
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0), requires_grad=True)
    a = loss(_Inputs(image, step=3))
    a.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert torch.equal(a.detach(), loss(_Inputs(image, step=3)).detach())  # seed + step: the same draws
    assert not torch.equal(a.detach(), loss(_Inputs(image, step=4)).detach())


def _prior_preset(tmp_path, prior: dict) -> str:
    import yaml

    path = tmp_path / "prior.yaml"
    path.write_text(yaml.safe_dump({"base": "default", "losses": [
        {"name": "clip", "params": {"prompts": ["a red circle on a blue background"]}},
        {"name": "prior", "weight": 10.0, "params": prior}]}))
    return str(path)


def test_a_pixel_render_with_the_prior_is_repeatable(tmp_path, tiny_clip_path, tiny_text_denoiser_path):
    preset = _prior_preset(tmp_path, {"model": str(tiny_text_denoiser_path)})
    over = [f"perceptors.0.params.model={tiny_clip_path}", "augment.params.num=4"]
    a = pixloom.render(preset, steps=4, size=32, out=tmp_path / "a", overrides=over)
    b = pixloom.render(preset, steps=4, size=32, out=tmp_path / "b", overrides=over)
    assert "prior" in a.history[0] and a.history == b.history


def test_bad_prior_settings_are_one_line_errors(tmp_path):
    with pytest.raises(pixloom.errors.PresetError, match="sigma_min") as info:
        pixloom.render(_prior_preset(tmp_path, {"sigma_min": 5.0}), steps=2, out=tmp_path)
    assert "\n" not in str(info.value)
    with pytest.raises(pixloom.errors.PixloomError, match="positive weight"):
        pixloom.render(_prior_preset(tmp_path, {}), steps=2, out=tmp_path, prompts=["a red circle:-1"])


def test_it_follows_an_animations_keyframed_prompts(tmp_path, tiny_clip_path, tiny_text_denoiser_path):
    import yaml

    from pixloom.animate import FrameSettings
    from pixloom.animation_config import parse_animation
    from pixloom.denoiser import text_condition
    from pixloom.loop import build_run
    from pixloom.manager import build_registry, create_plugin_manager
    from pixloom.preset import load_preset

    path = tmp_path / "anim.yaml"
    path.write_text(yaml.safe_dump({
        "base": "default", "run": {"size": [32, 32]},
        "perceptors": [{"name": "clip", "params": {"model": str(tiny_clip_path)}}],
        "losses": [{"name": "clip", "params": {"prompts": ["a red circle"]}},
                   {"name": "prior", "params": {"model": str(tiny_text_denoiser_path)}}],
        "animation": {"frames": 3, "prompts": {0: "a red circle", 2: "a blue star"}}}))
    loaded = load_preset(str(path))
    run = build_run(loaded, build_registry(create_plugin_manager()))
    settings = FrameSettings(run, loaded.cfg, parse_animation(loaded.cfg.animation, str(path)), 0)
    prior = run.losses[1][2]
    settings.apply(0)
    assert torch.allclose(prior.cond, text_condition(prior.model, [("a red circle", 1.0)]))
    settings.apply(2)
    assert torch.allclose(prior.cond, text_condition(prior.model, [("a blue star", 1.0)]))
