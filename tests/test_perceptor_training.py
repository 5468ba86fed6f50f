"""The perceptor training's off-world images: negatives, the climbing pool and noisy views."""
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from pixloom import world
from pixloom.errors import PixloomError
from pixloom.tokenizers import WordTokenizer
from pixloom.training import perceptor as tp


def test_negatives_are_off_world_images_and_deterministic():
    a = tp.negatives(64, torch.Generator().manual_seed(3))
    b = tp.negatives(64, torch.Generator().manual_seed(3))
    assert a.shape == (64, 3, world.RESOLUTION, world.RESOLUTION)
    assert torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    # a world image has two colours (up to jitter, gradient, noise and the edge); these mostly have more
    palette = world._PALETTE
    nearest = (a.permute(0, 2, 3, 1)[..., None, :] - palette).norm(dim=-1).argmin(-1)  # [n, h, w]
    counts = torch.stack([torch.bincount(n.flatten(), minlength=len(palette)) for n in nearest])
    colours = (counts > 0.03 * world.RESOLUTION ** 2).sum(1)
    assert float((colours >= 3).float().mean()) > 0.5


def test_generated_pool_climbs_toward_its_captions():
    torch.manual_seed(0)
    tok = WordTokenizer(world.words(), tp.CONTEXT_LENGTH)
    model = tp.build("resnet", tok.vocab_size).eval()
    g = torch.Generator().manual_seed(0)
    pool = tp.GeneratedNegatives(8, g, steps=3, step_size=0.02, renew=0.0)
    mean = torch.tensor(tp.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(tp.CLIP_STD).view(1, 3, 1, 1)
    texts = [world.compose(c) for c in pool.contents]
    with torch.no_grad():
        txt = F.normalize(model.encode_text(tok(texts)), dim=-1)

    def sims(x):
        with torch.no_grad():
            return (F.normalize(model.encode_image((x - mean) / std), dim=-1) * txt).sum(-1)

    before = sims(pool.images)
    images, said, ids = pool.step(model, tok, mean, std, g)
    assert said == texts and ids.shape == (8, 5)
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert float((sims(images) - before).mean()) > 0  # the pool went where guidance would go


def test_training_with_off_world_images_runs_and_records_them(tmp_path):
    out = tmp_path / "m.safetensors"
    args = tp.parse_args(["--out", str(out), "--steps", "2", "--batch", "8", "--threads", "1",
                          "--negatives", "0.5", "--generated", "0.5", "--noise", "0.4",
                          "--eval-n", "0", "--save-every", "0", "--log-every", "1"])
    meta = tp.train(args)
    assert meta["steps"] == 2
    with safe_open(str(out), framework="pt") as f:
        training = json.loads(f.metadata()["pixloom.training"])
    assert (training["negatives"], training["generated"], training["noise"]) == (0.5, 0.5, 0.4)


@pytest.mark.parametrize("flag", ["--negatives", "--generated", "--noise"])
def test_off_world_flags_refuse_negative_values(flag, tmp_path):
    with pytest.raises(PixloomError, match=f"{flag} must not be negative") as info:
        tp.parse_args(["--out", str(tmp_path / "m.safetensors"), "--steps", "1", flag, "-0.1"])
    assert info.value.exit_code == 2


def test_gen_renew_must_be_a_share(tmp_path):
    with pytest.raises(PixloomError, match="--gen-renew must be between 0 and 1"):
        tp.parse_args(["--out", str(tmp_path / "m.safetensors"), "--steps", "1", "--gen-renew", "1.5"])
