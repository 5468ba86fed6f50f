"""The ``diffusion`` generator: what the shipped denoiser does, guided sampling
through the render loop, and an interrupted render resumed exactly."""
import os
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pixloom
import pixloom.errors
from pixloom import world
from pixloom.denoiser import load_denoiser
from pixloom.training import denoiser as training


@pytest.fixture(scope="module")
def shipped():
    return load_denoiser("shapes-denoiser")


def test_the_shipped_denoiser_removes_noise_from_world_images(shipped):
    side = shipped.config.resolution
    clean = training.batch(16, side, torch.Generator().manual_seed(5))
    for sigma in (0.2, 0.5, 1.0):
        noisy = clean + sigma * torch.randn(clean.shape, generator=torch.Generator().manual_seed(6))
        with torch.no_grad():
            est = shipped(noisy, torch.full((16,), sigma))
        assert F.mse_loss(est, clean) < 0.2 * F.mse_loss(noisy, clean), sigma


def _nearest_palette(rgb: torch.Tensor) -> str:
    return world.COLOUR_NAMES[int((world._PALETTE - rgb).pow(2).sum(1).argmin())]


def _border(image: torch.Tensor) -> torch.Tensor:
    """The median colour of the image's outermost 8% on every side."""
    h, w = image.shape[-2:]
    k = max(1, round(0.08 * min(h, w)))
    mask = torch.ones(h, w, dtype=torch.bool)
    mask[k:h - k, k:w - k] = False
    return image[0][:, mask].median(dim=1).values


def test_guidance_moves_the_sample_toward_the_prompt(tmp_path):
    from pixloom.clip_tools import build_perceptor

    prompt = "a white cross on a blue background"
    # the unconditional denoiser: all the pull toward the prompt is the CLIP loss's
    common = dict(prompts=[prompt], steps=60, seed=3, overrides=["generator.params.model=shapes-denoiser"])
    guided = pixloom.render("diffusion", out=tmp_path / "g", **common)
    plain = pixloom.render("diffusion", out=tmp_path / "p", lr=1e-9, **common)
    guide = build_perceptor("clip", "shapes-clip")
    with torch.no_grad():
        text = F.normalize(guide.encode_text([prompt]), dim=-1)
        sim = [float(F.normalize(guide.encode_image(F.interpolate(r.tensor, size=(64, 64), mode="area")), dim=-1)
                     @ text.T) for r in (guided, plain)]
    assert sim[0] > sim[1] + 0.1, sim
    assert _nearest_palette(_border(guided.tensor)) == "blue"
    assert guided.tensor.shape == (1, 3, 128, 128) and 0 <= guided.tensor.min() and guided.tensor.max() <= 1


def test_without_guidance_it_samples_flat_world_colours(shipped, tmp_path):
    result = pixloom.render("diffusion", prompts=["a red circle"], steps=60, seed=4, lr=1e-9, out=tmp_path,
                            overrides=["generator.params.model=shapes-denoiser"])
    pixels = result.tensor[0].permute(1, 2, 0).reshape(-1, 3)
    distance = (pixels[:, None, :] - world._PALETTE[None]).pow(2).sum(-1).min(1).values.sqrt()
    assert (distance < 0.2).float().mean() > 0.7  # mostly palette colours, as world images are


def test_an_interrupted_diffusion_render_resumes_exactly(tmp_path, tiny_clip_path, tiny_denoiser_path):
    over = [f"perceptors.0.params.model={tiny_clip_path}", f"generator.params.model={tiny_denoiser_path}",
            "augment.params.num=4", "run.candidates=1"]

    def interrupt_at_5(state):
        if state.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(pixloom.errors.PixloomError) as info:
        pixloom.render("diffusion", steps=12, size=32, out=tmp_path / "a", overrides=over,
                       callbacks=[interrupt_at_5])
    assert info.value.exit_code == 130
    stem = "a-red-circle-on-a-blue-background"
    resumed = pixloom.render(resume=tmp_path / "a" / f"{stem}.resume.pt")
    whole = pixloom.render("diffusion", steps=12, size=32, out=tmp_path / "b", overrides=over)
    assert resumed.history == whole.history
    a, b = (np.asarray(Image.open(r.files[0])).astype(int) for r in (resumed, whole))
    assert np.array_equal(a, b)


def test_bad_noise_levels_are_a_preset_error(tmp_path, tiny_clip_path):
    with pytest.raises(pixloom.errors.PresetError, match="sigma_min"):
        pixloom.render("diffusion", steps=2, out=tmp_path, overrides=["generator.params.sigma_min=5.0"])


@pytest.mark.parametrize("prompt, colour", [("a white cross on a blue background", "blue"),
                                            ("a yellow circle on a purple background", "purple")])
def test_the_text_conditional_denoiser_alone_samples_the_prompt(tmp_path, prompt, colour):
    # lr ~0: no CLIP guidance at all, only the denoiser's classifier-free guidance toward the prompt
    over = ["generator.params.model=shapes-denoiser-text", "generator.params.cond_scale=3.0"]
    result = pixloom.render("diffusion", prompts=[prompt], steps=50, seed=2, lr=1e-9, out=tmp_path,
                            overrides=over)
    assert _nearest_palette(_border(result.tensor)) == colour
    fg = prompt.split()[1]
    pixels = result.tensor[0].permute(1, 2, 0).reshape(-1, 3)
    nearest = (pixels[:, None, :] - world._PALETTE[None]).pow(2).sum(-1).argmin(1)
    assert (nearest == world.COLOUR_NAMES.index(fg)).float().mean() > 0.02  # the foreground colour is there


def test_a_conditional_denoiser_needs_a_positive_prompt(tmp_path, tiny_clip_path, tiny_text_denoiser_path):
    with pytest.raises(pixloom.errors.PixloomError, match="positive weight") as info:
        pixloom.render("diffusion", steps=2, size=32, out=tmp_path, prompts=["a red circle:-1"],
                       overrides=[f"generator.params.model={tiny_text_denoiser_path}",
                                  f"perceptors.0.params.model={tiny_clip_path}"])
    assert "\n" not in str(info.value)
