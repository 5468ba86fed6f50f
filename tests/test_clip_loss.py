"""The clip loss's contrastive term: rivals made by swapping words, and what it does to a render."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pixloom
from pixloom.clip_tools import build_perceptor, embed_texts
from pixloom.plugins.clip_loss import ClipLossParams, swapped

COLOURS = "red|green|blue|yellow|purple|orange|white|black"
SHAPES = "circle|square|triangle|star|cross|ring"


def test_swapped_replaces_one_word_at_a_time_and_fixes_articles():
    rivals = swapped("a green square on a purple background", [COLOURS, SHAPES])
    assert len(rivals) == 7 + 7 + 5 == len(set(rivals))
    assert "an orange square on a purple background" in rivals  # "a" became "an"
    assert "a green square on an orange background" in rivals
    assert "a green ring on a purple background" in rivals
    assert "a green square on a purple background" not in rivals
    assert swapped("An orange star", [COLOURS])[0] == "A red star"


def test_swapped_with_exchange_also_trades_two_words_of_a_group():
    prompt = "a large purple circle on an orange background"
    plain, both = swapped(prompt, [COLOURS, SHAPES]), swapped(prompt, [COLOURS, SHAPES], exchange=True)
    assert set(both) - set(plain) == {"a large orange circle on a purple background"}  # "an" became "a"
    assert swapped("An orange star on a blue background", [COLOURS], exchange=True)[-1] == \
        "A blue star on an orange background"
    # one word of a group, or the same word twice: nothing to exchange
    assert swapped("a red star", [COLOURS], exchange=True) == swapped("a red star", [COLOURS])
    assert swapped("a red star on a red background", [COLOURS], exchange=True) == \
        swapped("a red star on a red background", [COLOURS])


def test_swapped_leaves_text_without_group_words_alone():
    assert swapped("a painting of a lighthouse", [COLOURS, SHAPES]) == []


@pytest.mark.parametrize("group", ["red", "red|", 3])
def test_a_group_of_fewer_than_two_words_is_refused(group):
    with pytest.raises(ValueError, match="contrast_words"):
        ClipLossParams(prompts=["a red star"], contrast_words=[group])


def _render(contrast: bool, tmp_path):
    overrides = ["run.size=[64,64]", "run.steps=40", "run.device=cpu", "run.progress=false", "run.candidates=1",
                 "augment.params.num=2", "augment.params.overview=2", "augment.params.noise_p=0",
                 "augment.params.perspective_p=0", "augment.params.affine_p=0", "losses.1.weight=0.0",
                 (f'losses.0.params.contrast_words=["{COLOURS}","{SHAPES}"]' if contrast
                  else "losses.0.params.contrast_words=[]")]
    return pixloom.render("default", prompts=["a green square on a purple background"],
                          overrides=overrides, out=str(tmp_path / ("c" if contrast else "d")))


def test_the_contrast_term_gains_on_the_rivals(tmp_path):
    """With the shipped perceptor, 40 steps with the contrastive term move the
    image's similarity to the prompt further ahead of (or less behind) its best
    word-swapped rival than the distance alone does."""
    prompt = "a green square on a purple background"
    rivals = swapped(prompt, [COLOURS, SHAPES])
    guide = build_perceptor("clip", "shapes-clip")
    texts = F.normalize(embed_texts(guide, [prompt, *rivals]).float(), dim=-1)

    def margin(image) -> float:
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            e = F.normalize(guide.encode_image(F.interpolate(x, size=(guide.input_size,) * 2)).float(), dim=-1)
        sims = (texts @ e[0])
        return float(sims[0] - sims[1:].max())

    with_contrast = _render(True, tmp_path)
    without = _render(False, tmp_path)
    assert with_contrast.history[-1]["clip"] != pytest.approx(without.history[-1]["clip"])
    assert margin(with_contrast.image) > 0
    assert margin(with_contrast.image) > margin(without.image)


def test_contrast_exchange_adds_the_figure_ground_rival_to_the_loss(tmp_path):
    """The same render with the exchanged rival ("a purple square on a green
    background") among the contrasts scores a different (higher) clip loss."""
    def loss(exchange: bool) -> float:
        res = pixloom.render("default", prompts=["a green square on a purple background"], out=str(tmp_path / str(exchange)),
                             overrides=["run.size=[64,64]", "run.steps=1", "run.device=cpu", "run.progress=false",
                                        "run.candidates=1", "augment.params.num=2", "augment.params.overview=2",
                                        f"losses.0.params.contrast_exchange={str(exchange).lower()}"])
        return res.history[0]["clip"]

    assert loss(True) > loss(False)
