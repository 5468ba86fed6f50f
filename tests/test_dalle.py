"""The dalle generator and the dVAE loaders: pixloom's .safetensors, OpenAI's
published format (whole pickled dall_e modules), and the generator's contract."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pixloom.dvae import DVAEConfig, load_dvae, make_decoder, make_encoder
from pixloom.errors import CheckpointError
from pixloom.interfaces import BuildContext
from pixloom.models import embedded_models
from pixloom.plugins.dalle import DalleGenerator, DalleParams
from pixloom.vqgan import snap
from tiny_token_models import TINY_DVAE, registering_dir, save_tiny_dvae, tiny_dvae

W, H = 40, 32


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return save_tiny_dvae(tmp_path_factory.mktemp("dvae") / "tiny-dvae.safetensors")


def ctx(tmp_path, seed=0, size=(W, H)) -> BuildContext:
    return BuildContext(size=size, device=torch.device("cpu"), seed=seed, out_dir=tmp_path, preset_dir=tmp_path)


def make(path, tmp_path, seed=0, size=(W, H), **params) -> DalleGenerator:
    return DalleGenerator(DalleParams(model=str(path), **params), ctx(tmp_path, seed, size))


# ------------------------------------------------------------------ loaders

def test_safetensors_round_trip(tiny_path):
    model = tiny_dvae()
    loaded = load_dvae(str(tiny_path))
    assert loaded.encoder is not None and loaded.factor == 8
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert not any(p.requires_grad for p in loaded.parameters())


@pytest.mark.parametrize("factor", [4, 2])
def test_a_finer_factor_keeps_the_layout_and_resamples_less(factor, tmp_path):
    published = DVAEConfig(**TINY_DVAE)
    finer = DVAEConfig(**TINY_DVAE, factor=factor)
    for make_part in (make_encoder, make_decoder):  # the same weights' layout: a published file's keys
        shapes = {k: v.shape for k, v in make_part(published).state_dict().items()}
        assert {k: v.shape for k, v in make_part(finer).state_dict().items()} == shapes
    model = tiny_dvae(config=finer)
    image = torch.rand(1, 3, 16, 24)
    logits = model.encode_logits(image)
    assert logits.shape == (1, 512, 16 // factor, 24 // factor)
    assert model.decode(torch.softmax(logits, 1)).shape == (1, 3, 16, 24)
    path = save_tiny_dvae(tmp_path / "fine.safetensors", config=finer)
    loaded = load_dvae(str(path))
    assert loaded.factor == factor and loaded.encode_logits(image).shape == logits.shape
    gen = make(path, tmp_path)  # the token grid follows the model
    assert gen.logits.shape[-2:] == (H // factor, W // factor) and gen.synth().shape == (1, 3, H, W)


def test_a_factor_the_classes_cannot_make_is_refused(tmp_path):
    from pixloom.models import write_safetensors

    with pytest.raises(ValueError, match="factor must be one of 2, 4, 8"):
        DVAEConfig(factor=16)
    path = tmp_path / "odd.safetensors"
    write_safetensors(path, tiny_dvae().state_dict(), {"format": "dvae", "config": dict(TINY_DVAE, factor=3)})
    with pytest.raises(CheckpointError, match=r"odd.safetensors: not a dVAE config \(factor must be one of"):
        load_dvae(str(path))
    write_safetensors(path, tiny_dvae().state_dict(), {"format": "dvae", "config": dict(TINY_DVAE, factor="x")})
    with pytest.raises(CheckpointError, match=r"odd.safetensors: not a dVAE config \(invalid literal"):
        load_dvae(str(path))


def test_published_pickles_load_without_running_them(tmp_path):
    """OpenAI ships encoder.pkl / decoder.pkl as whole pickled modules: they are read
    with stand-ins for the module classes and rebuilt, with no trust needed."""
    config = DVAEConfig(**TINY_DVAE)
    torch.manual_seed(3)
    encoder, decoder = make_encoder(config), make_decoder(config)
    torch.save(encoder, tmp_path / "encoder.pkl")
    torch.save(decoder, tmp_path / "decoder.pkl")
    loaded = load_dvae(str(tmp_path / "decoder.pkl"))  # finds encoder.pkl beside it
    assert loaded.config == config
    tokens = F.one_hot(torch.randint(512, (1, 4, 5)), 512).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        assert torch.allclose(loaded.decoder(tokens), decoder(tokens))
        image = torch.rand(1, 3, 32, 40)
        assert torch.allclose(loaded.encode_logits(image), encoder(0.8 * image + 0.1), atol=1e-5)


def test_pickles_that_need_full_unpickling_need_trust(tmp_path):
    decoder = make_decoder(DVAEConfig(**TINY_DVAE))
    path = tmp_path / "decoder.pkl"
    torch.save(decoder, path, _use_new_zipfile_serialization=False)  # the legacy format stores class source
    with pytest.raises(CheckpointError, match="refused.*trust: true"):
        load_dvae(str(path), need_encoder=False)
    loaded = load_dvae(str(path), need_encoder=False, trust=True)
    assert loaded.encoder is None
    with pytest.raises(CheckpointError, match="without its encoder"):
        loaded.encode_logits(torch.rand(1, 3, 8, 8))


def test_mismatched_encoder_and_decoder(tmp_path):
    torch.save(make_decoder(DVAEConfig(**TINY_DVAE)), tmp_path / "decoder.pkl")
    torch.save(make_encoder(DVAEConfig(**dict(TINY_DVAE, vocab_size=1024))), tmp_path / "encoder.pkl")
    with pytest.raises(CheckpointError, match="do not match.*vocab_size"):
        load_dvae(str(tmp_path / "decoder.pkl"))


def test_a_pickle_of_something_else_is_refused(tmp_path):
    torch.save({"blocks": 1}, tmp_path / "decoder.pkl")
    with pytest.raises(CheckpointError, match="not a dall_e decoder"):
        load_dvae(str(tmp_path / "decoder.pkl"), need_encoder=False)


def test_unknown_and_offline_registry(monkeypatch, tmp_path):
    with pytest.raises(CheckpointError, match="unknown dVAE model 'nope'.*openai-dvae"):
        load_dvae("nope")
    monkeypatch.setenv("PIXLOOM_HOME", str(tmp_path))
    monkeypatch.setenv("PIXLOOM_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="decoder.pkl is not in the cache.*put it at"):
        load_dvae("openai-dvae")


# ------------------------------------------------------------------ the generator

def test_contract_shape_range_gradient_and_state(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    image = gen.synth()
    assert image.shape == (1, 3, H, W) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    (image * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert gen.logits.grad is not None and gen.logits.grad.abs().sum() > 0
    assert list(gen.state_dict()) == ["logits"]
    assert gen.logits.shape == (1, 512, 4, 5)


def test_upscale_decodes_fewer_tokens_enlarged_to_the_size(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, upscale=2)
    assert gen.logits.shape[-2:] == (2, 3)  # ceil(32 / 16), ceil(40 / 16)
    image = gen.synth()
    assert image.shape == (1, 3, H, W) and image.min() >= 0 and image.max() <= 1
    image.sum().backward()
    assert gen.logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="upscale: must be a whole number between 1 and 8"):
        DalleParams(upscale=9)


def test_supersample_decodes_more_tokens_averaged_down_to_the_size(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, supersample=2)
    assert gen.logits.shape[-2:] == (8, 10)  # 64 x 80 px of 8 px cells
    image = gen.synth()
    assert image.shape == (1, 3, H, W)
    with torch.no_grad():
        decoded = gen.model.decode(gen._tokens())
    assert decoded.shape[-2:] == (2 * H, 2 * W)
    assert torch.allclose(image, F.avg_pool2d(decoded, 2), atol=1e-6)
    image.sum().backward()
    assert gen.logits.grad.abs().sum() > 0
    gen.init_from_image(torch.rand(1, 3, H, W))  # an init image is encoded at the decoded size
    assert gen.logits.shape[-2:] == (8, 10)
    with pytest.raises(ValueError, match="one of them must be 1"):
        DalleParams(upscale=2, supersample=2)
    with pytest.raises(ValueError, match="supersample: must be a whole number between 1 and 8"):
        DalleParams(supersample=0)


def coarse_steps(gen, steps, total, lr=0.05):
    """Adam steps toward black, with the loop's calls around each."""
    opt = torch.optim.Adam(gen.parameters(), lr=lr)
    for step in range(steps):
        gen.before_step(step, total)
        opt.zero_grad()
        gen.synth().pow(2).mean().backward()
        opt.step()
        gen.after_step()


@pytest.mark.parametrize("tokens", ["snap", "softmax"])
def test_supersample_from_starts_on_the_renders_own_grid(tiny_path, tmp_path, tokens):
    staged = make(tiny_path, tmp_path, tokens=tokens, supersample=2, supersample_from=0.5, hard=True)
    plain = make(tiny_path, tmp_path, tokens=tokens, hard=True)
    latent = staged.z if tokens == "snap" else staged.logits
    assert latent.shape[-2:] == (8, 10)  # the full grid: twice the render's 4 x 5
    # before refinement: the same start and image as supersample 1, every 2 x 2 block one token
    assert staged.tokens().shape == (4, 5) and torch.equal(staged.tokens(), plain.tokens())
    assert torch.allclose(staged.to_image(), plain.to_image(), atol=1e-6)
    coarse_steps(staged, 3, total=10)
    latent = staged.z if tokens == "snap" else staged.logits
    assert not staged._fine and latent.grad.abs().sum() > 0
    blocks = latent.detach().unfold(2, 2, 2).unfold(3, 2, 2)  # [1, C, 4, 5, 2, 2]
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))  # the blocks moved as one


def test_supersample_from_encodes_the_coarse_image_into_the_fine_grid(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, tokens="snap", supersample=2, supersample_from=0.5)
    coarse_steps(gen, 4, total=10)
    with torch.no_grad():
        coarse = gen.model.decode_embedded(snap(F.avg_pool2d(gen.z, 2), gen.book)[0]).clamp(0, 1)
    gen.before_step(4, 10)  # 4 < 0.5 x 10: still coarse
    assert not gen._fine and gen.tokens().shape == (4, 5)
    gen.before_step(5, 10)  # the first step of the second half
    assert gen._fine and bool(gen.refined)
    big = F.interpolate(coarse, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        expected = gen.model.encode_logits(big).argmax(1)[0]
    assert torch.equal(gen.tokens(), expected) and expected.shape == (8, 10)
    # from now on the image is the fine grid's decode averaged down to the size
    hard = F.one_hot(expected[None], 512).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        assert torch.allclose(gen.to_image(), F.avg_pool2d(gen.model.decode(hard), 2), atol=1e-5)
    gen.synth().sum().backward()
    assert gen.z.grad.abs().sum() > 0


def test_supersample_from_with_upscale_is_a_half_size_stage_then_the_full_size(tiny_path, tmp_path):
    size = (64, 48)
    gen = make(tiny_path, tmp_path, size=size, tokens="snap", upscale=2, supersample=2, supersample_from=0.5)
    assert gen.z.shape[-2:] == (6, 8)  # the full size's 8 px cells
    assert gen.tokens().shape == (3, 4)  # the coarse stage: half the size's
    hard = F.one_hot(gen.tokens()[None], 512).permute(0, 3, 1, 2).float()
    with torch.no_grad():  # decoded at 32 x 24 px, enlarged twice
        half = gen.model.decode(hard)
        assert torch.allclose(gen.to_image(), F.interpolate(half, scale_factor=2, mode="bilinear",
                                                            align_corners=False), atol=1e-5)
    coarse_steps(gen, 2, total=4)
    gen.before_step(2, 4)
    assert gen._fine and gen.tokens().shape == (6, 8)
    with torch.no_grad():  # then the full grid decoded at the size itself: not enlarged, not averaged
        full = gen.model.decode(F.one_hot(gen.tokens()[None], 512).permute(0, 3, 1, 2).float())
    assert torch.allclose(gen.to_image(), full, atol=1e-5) and full.shape[-2:] == (48, 64)
    with pytest.raises(ValueError, match="one of them must be 1"):  # without stages: no meaning
        DalleParams(upscale=2, supersample=2)


def test_supersample_from_is_saved_with_the_parameters(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, tokens="snap", supersample=2, supersample_from=0.2)
    assert sorted(gen.state_dict()) == ["refined", "z"]
    coarse_steps(gen, 3, total=10)  # refined at step 2
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    resumed = make(tiny_path, tmp_path, tokens="snap", supersample=2, supersample_from=0.2, seed=5)
    assert not resumed._fine
    resumed.load_state_dict(state)
    assert resumed._fine and torch.equal(resumed.tokens(), gen.tokens())
    assert torch.equal(resumed.to_image(), gen.to_image())
    resumed.before_step(3, 10)  # a resumed fine stage is not encoded again
    assert torch.equal(resumed.z, state["z"])
    # a generator without stages saves no stage: older saved runs still load
    assert list(make(tiny_path, tmp_path, tokens="snap", supersample=2).state_dict()) == ["z"]


def test_supersample_from_needs_a_finer_grid_and_a_fraction():
    with pytest.raises(ValueError, match="supersample_from: needs supersample above 1"):
        DalleParams(supersample_from=0.5)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="supersample_from: must be a fraction of the run"):
            DalleParams(supersample=2, supersample_from=bad)


def test_snap_tokens_decode_the_nearest_token_with_a_straight_through_gradient(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, tokens="snap")
    assert list(gen.state_dict()) == ["z"] and gen.z.shape == (1, gen.book.shape[1], 4, 5)
    book = gen.model.token_embeddings()
    assert torch.equal(gen.book, book) and book.shape[0] == 512
    # the embeddings are what the decoder's input convolution makes of one-hot tokens
    hard = F.one_hot(gen.tokens()[None], 512).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        assert torch.allclose(gen.synth(), gen.model.decode(hard)[..., :H, :W], atol=1e-5)
    # a latent off the codebook still decodes hard tokens: its nearest ones
    with torch.no_grad():
        gen.z.add_(0.3 * torch.randn(gen.z.shape, generator=torch.Generator().manual_seed(1)) * gen.book.std(0).view(1, -1, 1, 1))
    idx = gen.tokens()
    dist = ((gen.z[0].permute(1, 2, 0)[..., None, :] - book) ** 2).sum(-1)
    assert torch.equal(idx, dist.argmin(-1))
    hard = F.one_hot(idx[None], 512).permute(0, 3, 1, 2).float()
    image = gen.synth()
    assert torch.allclose(image.detach(), gen.model.decode(hard)[..., :H, :W], atol=1e-5)
    image.sum().backward()
    assert gen.z.grad is not None and gen.z.grad.abs().sum() > 0
    # after a step the latent is clamped to the embeddings' range
    with torch.no_grad():
        gen.z.add_(100.0)
    gen.after_step()
    assert torch.equal(gen.z, gen.z_max.expand_as(gen.z))


def test_snap_tokens_start_from_an_image_as_the_encoders_tokens(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, tokens="snap")
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(2))
    gen.init_from_image(image)
    with torch.no_grad():
        logits = gen.model.encode_logits(F.interpolate(image, size=(32, 40), mode="bicubic", align_corners=False).clamp(0, 1))
    assert torch.equal(gen.tokens(), logits.argmax(1)[0])
    with pytest.raises(ValueError, match="tokens: unknown mode 'gumbel' \\(valid: softmax, snap\\)"):
        DalleParams(tokens="gumbel")


def test_snap_tokens_move_under_adam(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, tokens="snap")
    before = gen.tokens().clone()
    opt = torch.optim.Adam(gen.parameters(), lr=0.05)
    target = torch.zeros(1, 3, H, W)
    for _ in range(5):
        opt.zero_grad()
        (gen.synth() - target).pow(2).mean().backward()
        opt.step()
        gen.after_step()
    assert not torch.equal(gen.tokens(), before)


def test_to_image_is_the_argmax_decoding_and_equals_synth_outside_steps(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    one_hot = F.one_hot(gen.logits.argmax(1), 512).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        expected = gen.model.decode(one_hot)
    assert torch.allclose(gen.to_image(), expected)
    assert torch.allclose(gen.to_image(), gen.synth().detach())


def test_steps_sample_with_noise_and_a_seeded_schedule(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, temperature=2.0, final_temperature=0.5)
    assert gen.temperature_at(0, 11) == pytest.approx(2.0)
    assert gen.temperature_at(10, 11) == pytest.approx(0.5)
    assert gen.temperature_at(5, 11) == pytest.approx(1.0)
    torch.manual_seed(0)
    gen.before_step(0, 11)
    a = gen.synth().detach()
    b = gen.synth().detach()
    assert not torch.equal(a, b)  # fresh Gumbel noise each draw
    torch.manual_seed(0)
    assert torch.equal(gen.synth().detach(), a)  # ... from torch's seeded RNG
    assert not torch.equal(a, gen.to_image())
    gen.after_step()
    assert torch.equal(gen.synth().detach(), gen.to_image())


def test_hard_tokens_are_one_hot_with_gradients(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, hard=True)
    gen.before_step(0, 4)
    tokens = gen._tokens()
    one_hot = F.one_hot(tokens.detach().argmax(1), 512).permute(0, 3, 1, 2).float()
    assert torch.allclose(tokens.detach(), one_hot, atol=1e-6)
    gen.synth().mean().backward()
    assert gen.logits.grad.abs().sum() > 0


def test_same_seed_same_image(tiny_path, tmp_path):
    a, b, c = make(tiny_path, tmp_path, seed=4), make(tiny_path, tmp_path, seed=4), make(tiny_path, tmp_path, seed=5)
    assert torch.equal(a.synth(), b.synth()) and not torch.equal(a.logits, c.logits)


def test_init_from_image_is_the_encoders_logits(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    gen.init_from_image(image)
    with torch.no_grad():
        assert torch.allclose(gen.logits.detach(), gen.model.encode_logits(image))
    assert gen.logits.requires_grad


def test_flat_init_is_the_encoders_logits_of_one_colour(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, init="flat", init_color=[0.9, 0.2, 0.1])
    with torch.no_grad():
        flat = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(1, 3, H, W)
        assert torch.allclose(gen.logits.detach(), gen.model.encode_logits(flat), atol=1e-5)
    with pytest.raises(ValueError, match="init_color"):
        DalleParams(init="flat", init_color=[0.5, 0.5])


def test_sizes_not_multiple_of_8_are_cropped(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, size=(45, 33))
    assert gen.grid == (5, 6) and gen.synth().shape == (1, 3, 33, 45)


def test_params_are_checked():
    for bad, match in [({"init": "noise"}, "init"), ({"init": "image"}, "init_image"),
                       ({"temperature": 0.0}, "temperature"), ({"init_scale": -1.0}, "init_scale")]:
        with pytest.raises(ValueError, match=match):
            DalleParams(**bad)


def test_one_adam_step_changes_the_image(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    opt = torch.optim.Adam([gen.logits], lr=0.05)
    before = gen.to_image()
    torch.manual_seed(0)
    gen.before_step(0, 2)
    F.mse_loss(gen.synth(), torch.full((1, 3, H, W), 0.5)).backward()
    opt.step()
    gen.after_step()
    assert not torch.equal(before, gen.to_image())


def test_renders_through_the_loop(tiny_path, tiny_preset, tmp_path):
    from pixloom.api import render

    tiny_preset["generator"] = {"name": "dalle", "params": {"model": str(tiny_path)}}
    tiny_preset["losses"] = tiny_preset["losses"][:1]
    dirs = [registering_dir(tmp_path, "dalle")]
    result = render(tiny_preset, plugins_dirs=dirs)
    assert result.tensor.shape == (1, 3, 32, 32) and result.files
    assert torch.equal(result.tensor, render(tiny_preset, plugins_dirs=dirs).tensor)


# ------------------------------------------------------------------ the embedded model

needs_embedded = pytest.mark.skipif("shapes-dvae" not in embedded_models(),
                                    reason="plugins/weights/shapes-dvae.safetensors not trained yet")


@needs_embedded
def test_embedded_model_reconstructs_the_shapes_world(tmp_path):
    from pixloom import world

    images, _ = world.sample(8, torch.Generator().manual_seed(99))
    gen = DalleGenerator(DalleParams(), ctx(tmp_path, size=(64, 64)))
    errors = []
    for image in images:
        gen.init_from_image(image[None])
        errors.append(F.mse_loss(gen.to_image(), image[None]).item())
    assert sum(errors) / len(errors) < 0.02


def test_decoder_only_training_keeps_the_encoder_and_changes_the_decoder(tiny_path, tmp_path):
    from pixloom.models import read_model
    from pixloom.training import dvae as training

    out = tmp_path / "ft.safetensors"
    training.main(["--out", str(out), "--init", str(tiny_path), "--decoder-only", "--steps", "3",
                   "--batch", "4", "--threads", "1", "--eval-n", "4", "--lr", "1e-2"])
    before, after = load_dvae(str(tiny_path)), load_dvae(str(out))
    for k, v in before.encoder.state_dict().items():
        assert torch.equal(v, after.encoder.state_dict()[k]), k
    assert any(not torch.equal(v, after.decoder.state_dict()[k]) for k, v in before.decoder.state_dict().items())
    assert after.config == before.config
    training_meta = read_model(out, "dvae", "dVAE").metadata["training"]
    assert training_meta["decoder_only"] is True and training_meta["init"] == str(tiny_path)


def test_decoder_tokens_are_one_hot_or_tempered_mixtures():
    from pixloom.training.dvae import decoder_tokens

    logits = torch.randn(6, 512, 2, 2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    hard = decoder_tokens(logits, g, 0.0, 0.1)
    assert torch.equal(hard.argmax(1), logits.argmax(1)) and torch.equal(hard.amax(1), torch.ones(6, 2, 2))
    mixed = decoder_tokens(logits, g, 1.0, 0.1)
    assert torch.allclose(mixed.sum(1), torch.ones(6, 2, 2)) and bool((mixed.amax(1) < 1).all())
    assert torch.equal(mixed.argmax(1), logits.argmax(1))


def test_decoder_only_needs_init(capsys):
    from pixloom.training import dvae as training

    with pytest.raises(SystemExit):
        training.parse_args(["--out", "x.safetensors", "--steps", "1", "--decoder-only"])
    assert "--decoder-only needs --init" in capsys.readouterr().err


def test_architecture_flags_with_init_are_refused_not_ignored(capsys):
    from pixloom.training import dvae as training

    with pytest.raises(SystemExit):
        training.parse_args(["--out", "x.safetensors", "--steps", "1", "--init", "shapes-dvae", "--vocab", "2048",
                             "--blocks", "2", "--factor", "4"])
    assert "--vocab, --blocks, --factor: a model from --init keeps its own architecture" in capsys.readouterr().err
    args = training.parse_args(["--out", "x.safetensors", "--steps", "1", "--init", "shapes-dvae"])
    assert (args.vocab, args.n_hid, args.blocks, args.factor) == (512, 64, 1, 8)  # the defaults, unused with --init


def test_training_from_scratch_takes_the_width_and_depth_given(tmp_path):
    from pixloom.models import read_model
    from pixloom.training import dvae as training

    out = tmp_path / "wide.safetensors"
    training.main(["--out", str(out), "--steps", "2", "--batch", "2", "--threads", "1", "--eval-n", "2",
                   "--n-hid", "8", "--blocks", "2", "--factor", "4"])
    model = load_dvae(str(out))
    assert (model.config.n_hid, model.config.n_blk_per_group, model.factor) == (8, 2, 4)
    assert "group_1.block_2" in "".join(model.decoder.state_dict())
    assert read_model(out, "dvae", "dVAE").metadata["config"]["n_blk_per_group"] == 2


@pytest.mark.parametrize("flags", [["--n-hid", "6"], ["--blocks", "0"]])
def test_training_refuses_an_impossible_width_or_depth(flags, capsys):
    from pixloom.training import dvae as training

    with pytest.raises(SystemExit):
        training.parse_args(["--out", "x.safetensors", "--steps", "1", *flags])
    assert "--n-hid must be a positive multiple of 4" in capsys.readouterr().err
