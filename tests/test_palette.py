"""The ``palette`` loss: an image pulled to a few flat colours with crisp edges."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pixloom.plugins.image_losses import PaletteLoss, PaletteParams
from pixloom.step import StepInputs

RED, BLUE = torch.tensor([0.86, 0.12, 0.12]), torch.tensor([0.12, 0.24, 0.86])


def disc(size: int = 32, soft: float = 0.0) -> torch.Tensor:
    """A red disc on blue, its edge blurred over ``soft`` pixels."""
    y, x = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    d = (x - size / 2).hypot(y - size / 2) - size / 4
    inside = torch.sigmoid(-d / soft) if soft else (d < 0).float()
    return (inside * RED.view(3, 1, 1) + (1 - inside) * BLUE.view(3, 1, 1)).unsqueeze(0)


def inputs(image, step=0, total=10):
    return StepInputs(image, step, total, 0, None, {}, 0)


def loss(**params) -> PaletteLoss:
    return PaletteLoss(PaletteParams(**params), None)


def test_a_two_colour_image_is_its_own_palette():
    image = disc()
    centres = loss().palette(image.permute(0, 2, 3, 1).reshape(-1, 3))
    order = centres[:, 0].argsort(descending=True)  # red first
    assert torch.allclose(centres[order], torch.stack([RED, BLUE]), atol=1e-5)
    assert loss()(inputs(image)).item() == pytest.approx(0.0, abs=1e-6)
    assert loss()(inputs(disc(soft=1.5))).item() > 1e-3  # soft edges are off the palette


def test_optimising_it_makes_soft_edges_crisp_and_keeps_the_shape():
    soft = disc(64, soft=1.0)
    x = torch.nn.Parameter(soft.clone())
    opt = torch.optim.Adam([x], lr=0.02)
    fn = loss()
    for step in range(60):
        opt.zero_grad()
        fn(inputs(x, step, 60)).backward()
        opt.step()
    crisp = x.detach()
    assert fn(inputs(crisp)).item() < 0.05 * fn(inputs(soft)).item()  # nearly two flat colours
    centres = fn.palette(crisp.permute(0, 2, 3, 1).reshape(-1, 3))
    assert (centres[0] - centres[1]).norm() > 0.8 * (RED - BLUE).norm()  # still red against blue
    # the disc is still where it was: its pixels are the red ones
    redness = crisp[0, 0] > (RED[0] + BLUE[0]) / 2
    assert (redness == (disc(64)[0, 0] > 0.5)).float().mean() > 0.97


def test_fixed_colours_pull_toward_those_colours():
    grey = torch.full((1, 3, 8, 8), 0.45)
    fn = loss(fixed=[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    x = torch.nn.Parameter(grey.clone())
    fn(inputs(x)).backward()
    assert (x.grad > 0).all()  # nearer black: descending moves toward 0
    assert fn(inputs(grey)).item() == pytest.approx(3 * 0.45 ** 2, rel=1e-5)


def test_more_colours_fit_more_closely():
    image = F.interpolate(torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), size=16)
    values = [loss(colors=k)(inputs(image)).item() for k in (2, 4, 8)]
    assert values[0] > values[1] > values[2]


def test_ramp_grows_from_zero_to_full_over_its_share_of_the_run():
    image = disc(soft=1.5)
    full = loss()(inputs(image, 0, 11)).item()
    ramped = [loss(ramp=0.5)(inputs(image, s, 11)).item() for s in (0, 1, 5, 10)]
    assert ramped[0] == 0.0
    assert ramped[1] == pytest.approx(0.2 * full, rel=1e-5)
    assert ramped[2] == pytest.approx(full, rel=1e-5) and ramped[3] == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("params, match", [
    ({"colors": 1}, "colors: must be between 2 and 64"),
    ({"fixed": [[0.1, 0.2]]}, r"fixed\[0\]: must be three numbers in 0..1"),
    ({"fixed": [[0.1, 0.2, 3.0]]}, r"fixed\[0\]: must be three numbers in 0..1"),
    ({"ramp": 1.5}, "ramp: must be in 0..1"),
    ({"iterations": 0}, "iterations: must be at least 1"),
])
def test_bad_params_say_what_is_wrong(params, match):
    with pytest.raises(ValueError, match=match):
        PaletteParams(**params)
