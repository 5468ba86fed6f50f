"""The shapes world renders what WORLD.md says, and says it in WORLD.md's grammar."""
import math

import pytest
import torch

from pixloom import world
from pixloom.world import Content, Form


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def centred(shape, size="large", n=8, seed=0):
    """Attributes of n unrotated shapes at the image centre."""
    a = world.sample_attributes(n, gen(seed), shape=torch.tensor(world.SHAPES.index(shape)),
                                size=torch.tensor(world.SIZE_NAMES.index(size)))
    a.cx[:] = 32.0
    a.cy[:] = 32.0
    a.angle[:] = 0.0
    return a


def test_tables_match_world_md():
    assert world.COLOURS["orange"] == (250, 140, 20)
    assert world.COLOURS["black"] == (15, 15, 15)
    assert len(world.COLOURS) == 8
    assert world.SHAPES == ["circle", "square", "triangle", "star", "cross", "ring"]
    assert world.SIZES == {"small": (6.0, 9.0), "medium": (10.0, 14.0), "large": (16.0, 22.0)}
    assert len(world.POSITIONS) == 9 and "in the center" in world.POSITIONS


def test_sample_shape_range_and_determinism():
    images, attrs = world.sample(16, gen(3))
    again, attrs2 = world.sample(16, gen(3))
    other, _ = world.sample(16, gen(4))
    assert images.shape == (16, 3, 64, 64) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert torch.equal(images, again)
    assert torch.equal(attrs.shape, attrs2.shape)
    assert not torch.equal(images, other)
    assert [world.caption(attrs, i) for i in range(16)] == [world.caption(attrs2, i) for i in range(16)]


def test_attribute_ranges():
    a = world.sample_attributes(2000, gen(1))
    assert bool((a.fg != a.bg).all())
    for k, name in enumerate(world.SIZE_NAMES):
        lo, hi = world.SIZES[name]
        r = a.radius[a.size == k]
        assert r.numel() > 0 and float(r.min()) >= lo and float(r.max()) <= hi
    assert float(a.angle.abs().max()) <= world.MAX_ROTATION
    still = (a.shape == world.SHAPES.index("circle")) | (a.shape == world.SHAPES.index("ring"))
    assert bool((a.angle[still] == 0).all())
    assert float(a.angle[~still].abs().max()) > 10       # the others do rotate
    # every shape, colour and labelled position occurs
    assert set(a.shape.tolist()) == set(range(6))
    assert set(a.fg.tolist()) == set(range(8)) and set(a.bg.tolist()) == set(range(8))
    assert set(a.position.tolist()) == set(range(-1, 9))


def test_colours_match_palette_within_jitter():
    images, a = world.sample(64, gen(2))
    mask = world.coverage(a)
    palette = torch.tensor([world.COLOURS[c] for c in world.COLOUR_NAMES]) / 255.0
    for i in range(64):
        inside = images[i][:, mask[i] == 1.0]                # [3, pixels]
        outside = images[i][:, mask[i] == 0.0]
        assert inside.shape[1] > 20 and outside.shape[1] > 100
        fg, bg = palette[a.fg[i]][:, None], palette[a.bg[i]][:, None]
        assert float((inside - fg).abs().max()) <= world.MAX_JITTER + 1e-5
        assert float((outside - bg).abs().max()) <= world.MAX_JITTER + 1e-5
        # the shape is one flat colour; the background varies a little (gradient, noise)
        assert float(inside.std(dim=1).max()) < 1e-5
        assert float(outside.std(dim=1).max()) > 1e-4


@pytest.mark.parametrize("shape", world.SHAPES)
def test_mask_area_matches_geometry(shape):
    a = centred(shape)
    r = a.radius
    area = {
        "circle": math.pi * r ** 2,
        "square": (1.6 * r) ** 2,
        "triangle": 3 * math.sqrt(3) / 4 * r ** 2,
        "star": 10 * 0.5 * r * (0.42 * r) * math.sin(math.pi / 5),
        "cross": 2 * (2 * r) * (0.6 * r) - (0.6 * r) ** 2,
        "ring": math.pi * ((r * 1.0) ** 2 - (0.44 * r) ** 2),
    }[shape]
    got = world.coverage(a).sum(dim=(1, 2))
    assert torch.allclose(got, area, rtol=0.01)
    # rotation keeps the area
    a.angle[:] = 17.0
    assert torch.allclose(world.coverage(a).sum(dim=(1, 2)), area, rtol=0.01)


def test_edge_is_antialiased_one_pixel():
    a = centred("circle")
    mask = world.coverage(a)
    partial = (mask > 0) & (mask < 1)
    # the partial pixels form a ring about one pixel wide: about the circumference
    assert torch.allclose(partial.sum(dim=(1, 2)).float(), 2 * math.pi * a.radius, rtol=0.35)


def test_triangle_apex_up_and_star_points():
    a = centred("triangle", n=1)
    rows = world.coverage(a)[0].sum(dim=1).nonzero().flatten()
    r = float(a.radius[0])
    assert abs(float(rows.min()) + 0.5 - (32 - r)) < 1.5        # apex at the top
    assert abs(float(rows.max()) + 0.5 - (32 + r / 2)) < 1.5    # flat base below the centre
    # a star's outer points lie at radius r, its inner corners at 0.42 r
    s = centred("star", n=1)
    r = float(s.radius[0])
    m = world.coverage(s)[0]
    assert m[int(32 - 0.9 * r), 32] > 0.5          # the top point
    assert m[int(32 + 0.9 * r), 32] < 0.5          # between the two bottom points


def test_position_phrases():
    third = 64 / 3
    cx = torch.tensor([5.0, 32.0, 60.0, 32.0, 5.0, third + 1.0, 32.0])
    cy = torch.tensor([5.0, 5.0, 60.0, 32.0, 32.0, 32.0, 2 * third - 2.0])
    got = world.position_of(cx, cy).tolist()
    assert got == [world.POSITIONS.index(p) for p in
                   ["in the top left", "at the top", "in the bottom right", "in the center", "on the left"]] + [-1, -1]


def test_captions_follow_the_grammar():
    images, a = world.sample(300, gen(5))
    g = gen(6)
    vocab = set(world.words())
    for i in range(300):
        for text in [world.caption(a, i), world.caption(a, i, generator=g)]:
            content = world.parse(text)                # raises if not in the grammar
            assert set(text.split()) <= vocab
            assert "medium" not in text
            assert world.truth([content], a[i:i + 1]).item() == 1     # true of its image
        full = world.parse(world.caption(a, i))
        assert full.colour == world.COLOUR_NAMES[int(a.fg[i])]
        assert full.background == world.COLOUR_NAMES[int(a.bg[i])]
        assert (full.position is None) == (int(a.position[i]) < 0)
        assert (full.size is None) == (world.SIZE_NAMES[int(a.size[i])] == "medium")


def test_articles_and_examples():
    assert world.compose(Content(colour="orange", shape="ring")) == "an orange ring"
    assert world.compose(Content(colour="white", shape="cross", background="red"), "an image of") == \
        "an image of a white cross on a red background"
    assert world.compose(Content(size="large", background="blue")) == "a large shape on a blue background"
    assert world.compose(Content(size="small", colour="yellow", shape="star", position="in the top left")) == \
        "a small yellow star in the top left"
    assert world.compose(Content(background="orange")) == "a shape on an orange background"
    with pytest.raises(ValueError):
        world.parse("a orange ring")
    with pytest.raises(ValueError):
        world.parse("a medium red circle")


def test_all_captions_and_words():
    cs = world.all_captions(Form(colour=True, shape=True))
    assert len(cs) == 48 and len({t for t, _ in cs}) == 48
    assert len(world.all_captions(Form(position=True))) == 9
    assert len(world.all_captions(Form(colour=True, background=True))) == 8 * 7
    words = world.words()
    assert len(words) == len(set(words)) and "medium" not in words
    used = {w for t, _ in world.all_captions(Form(prefix="an image of", size=True, colour=True, shape=True,
                                                   position=True, background=True)) for w in t.split()}
    assert used <= set(words)


def test_truth_marks_unclear_pairs():
    a = centred("circle", size="medium", n=2)
    contents = [Content(shape="circle"), Content(size="small"), Content(shape="square"), Content(size="large", shape="ring")]
    t = world.truth(contents, a)
    assert t[0].tolist() == [1, -1, 0, 0]


def test_grid_cli(tmp_path):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert world.main(["grid", str(out), "--n", "4", "--seed", "1"]) == 0
    im = Image.open(out)
    assert im.size[0] > 4 * 64 and im.size[1] > 64


def test_mosaic_windows_cut_across_four_scenes():
    scenes, _ = world.sample(8, torch.Generator().manual_seed(4))  # the draws mosaic_windows(2, ...) makes first
    corner = world.mosaic_windows(2, torch.Generator().manual_seed(4), 0, 0)
    assert torch.equal(corner[0], scenes[0]) and torch.equal(corner[1], scenes[4])  # offset 0: the top-left scene
    middle = world.mosaic_windows(2, torch.Generator().manual_seed(4), 32, 32)
    assert middle.shape == (2, 3, 64, 64)
    assert torch.equal(middle[0, :, :32, :32], scenes[0][:, 32:, 32:])  # top left: the first scene's bottom right
    assert torch.equal(middle[0, :, :32, 32:], scenes[1][:, 32:, :32])
    assert torch.equal(middle[0, :, 32:, :32], scenes[2][:, :32, 32:])
    assert torch.equal(middle[0, :, 32:, 32:], scenes[3][:, :32, :32])


def test_zoomed_windows_are_64_px_windows_of_scenes_rendered_at_twice_the_size():
    windows = world.zoomed_windows(3, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    scenes = world.render(world.sample_attributes(3, g), 128)
    top, left = torch.randint(0, 65, (3,), generator=g), torch.randint(0, 65, (3,), generator=g)
    assert windows.shape == (3, 3, 64, 64)
    for i in range(3):
        assert torch.equal(windows[i], scenes[i, :, top[i]: top[i] + 64, left[i]: left[i] + 64])


def test_autoencoder_batches_mix_scenes_mosaics_and_zoomed_windows():
    from pixloom.training import autoencoding as ae

    x = ae.batch(8, torch.Generator().manual_seed(0), mosaic=0.25, zoom=0.5)
    assert x.shape == (8, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    plain = ae.batch(8, torch.Generator().manual_seed(0), mosaic=0.25)
    # the first rows are the same whole scenes either way (each maybe mirrored); the zoomed
    # windows replace the scenes before the mosaics, whose shapes are twice as large
    def same(a, b):
        return torch.equal(a, b) or torch.equal(a, b.flip(-1))

    assert all(same(x[i], plain[i]) for i in range(2))
    assert not any(same(x[i], plain[i]) for i in range(2, 6))
