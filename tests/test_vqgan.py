"""The vqgan generator and the VQGAN loaders: taming configs with Lightning
checkpoints (the published imagenet_f16_16384 architecture), pixloom's own
.safetensors, the Gumbel variant, and the generator's contract."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from pixloom.errors import CheckpointError
from pixloom.interfaces import BuildContext
from pixloom.models import embedded_models
from pixloom.plugins.vqgan import VQGANGenerator, VQGANParams, snap
from pixloom.vqgan import VQGAN, load_vqgan, read_taming_config
from tiny_token_models import (TINY_VQGAN, registering_dir, save_lightning_checkpoint, save_tiny_vqgan,
                               tiny_vqgan)

FIXTURE_YAML = Path("/work/shared/fixtures/vqgan_imagenet_f16_16384.yaml")
if not FIXTURE_YAML.exists():  # the same file kept beside the tests
    FIXTURE_YAML = Path(__file__).parent / "data" / "vqgan_imagenet_f16_16384.yaml"

W, H = 40, 32


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return save_tiny_vqgan(tmp_path_factory.mktemp("vqgan") / "tiny-vqgan.safetensors")


def ctx(tmp_path, seed=0, size=(W, H)) -> BuildContext:
    return BuildContext(size=size, device=torch.device("cpu"), seed=seed, out_dir=tmp_path, preset_dir=tmp_path)


def make(path, tmp_path, seed=0, size=(W, H), **params) -> VQGANGenerator:
    return VQGANGenerator(VQGANParams(model=str(path), **params), ctx(tmp_path, seed, size))


def taming_yaml(path: Path, model: VQGAN, target="taming.models.vqgan.VQModel") -> Path:
    cfg = model.config
    params = {"embed_dim": cfg.embed_dim, "n_embed": cfg.n_embed, "ddconfig": dict(cfg.ddconfig),
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                             "params": {"disc_start": 0}}}
    if "Gumbel" in target:
        params["temperature_scheduler_config"] = {"target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler"}
    path.write_text(yaml.safe_dump({"model": {"target": target, "params": params},
                                    "data": {"target": "main.DataModuleFromConfig"}}))
    return path


# ------------------------------------------------------------------ the published architecture

def test_imagenet_f16_16384_from_its_config_and_a_lightning_checkpoint(tmp_path):
    """The released model's dimensions, random weights, saved as the release is
    (Lightning dict, loss.* keys, a callback class as a key), loaded back and
    decoded once at 256 px."""
    config = read_taming_config(FIXTURE_YAML)
    assert (config.n_embed, config.embed_dim, config.factor, config.quantizer) == (16384, 256, 16, "vq")
    torch.manual_seed(0)
    model = VQGAN(config)
    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.zeros(64, 3, 4, 4)
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    ckpt = save_lightning_checkpoint(tmp_path / "last.ckpt", state)
    codebook = model.codebook.detach().clone()
    decoder_w = model.decoder.conv_out.weight.detach().clone()
    del model, state

    loaded = load_vqgan(str(FIXTURE_YAML), str(ckpt))
    assert not hasattr(loaded, "loss")
    assert torch.equal(loaded.codebook, codebook) and torch.equal(loaded.decoder.conv_out.weight, decoder_w)
    with torch.no_grad():
        idx = torch.randint(16384, (16 * 16,), generator=torch.Generator().manual_seed(0))
        image = loaded.decode(loaded.codebook[idx].t().reshape(1, 256, 16, 16))
    assert image.shape == (1, 3, 256, 256) and torch.isfinite(image).all()


def test_config_yaml_ignores_loss_and_data_sections():
    text = FIXTURE_YAML.read_text()
    assert "lossconfig" in text and "data:" in text
    config = read_taming_config(FIXTURE_YAML)
    assert "lossconfig" not in config.ddconfig and config.ddconfig["attn_resolutions"] == [16]


# ------------------------------------------------------------------ loaders

def test_safetensors_round_trip(tiny_path):
    model = tiny_vqgan()
    loaded = load_vqgan(str(tiny_path))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert not any(p.requires_grad for p in loaded.parameters())


def test_config_and_checkpoint_pair_by_name_beside_each_other(tmp_path):
    model = tiny_vqgan()
    taming_yaml(tmp_path / "mine.yaml", model)
    save_lightning_checkpoint(tmp_path / "mine.ckpt", model.state_dict())
    a = load_vqgan(str(tmp_path / "mine.yaml"))  # finds mine.ckpt
    b = load_vqgan(str(tmp_path / "mine.ckpt"))  # finds mine.yaml
    assert torch.equal(a.codebook, model.codebook) and torch.equal(b.codebook, model.codebook)


def test_gumbel_config_uses_the_gumbel_codebook(tmp_path):
    model = tiny_vqgan(quantizer="gumbel")
    assert set(k for k in model.state_dict() if k.startswith("quantize.")) == {
        "quantize.proj.weight", "quantize.proj.bias", "quantize.embed.weight"}
    taming_yaml(tmp_path / "g.yaml", model, target="taming.models.vqgan.GumbelVQ")
    save_lightning_checkpoint(tmp_path / "g.ckpt", model.state_dict())
    loaded = load_vqgan(str(tmp_path / "g.yaml"), str(tmp_path / "g.ckpt"))
    assert loaded.config.quantizer == "gumbel"
    assert torch.equal(loaded.codebook, model.quantize.embed.weight)
    gen = make(tmp_path / "g.yaml", tmp_path, checkpoint=str(tmp_path / "g.ckpt"))
    assert gen.synth().shape == (1, 3, H, W)


def test_checkpoint_that_does_not_match_its_config(tmp_path):
    model = tiny_vqgan()
    other = dict(TINY_VQGAN, n_embed=32)
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel",
                                                               "params": other}}))
    save_lightning_checkpoint(tmp_path / "m.ckpt", model.state_dict())
    with pytest.raises(CheckpointError, match="does not match its config.*quantize.embedding.weight"):
        load_vqgan(str(tmp_path / "m.yaml"))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.conv_out")}
    save_lightning_checkpoint(tmp_path / "m2.ckpt", state)
    taming_yaml(tmp_path / "m2.yaml", model)
    with pytest.raises(CheckpointError, match="missing decoder.conv_out"):
        load_vqgan(str(tmp_path / "m2.yaml"))


@pytest.mark.parametrize("content, match", [
    ("just: text", "no model.params"),
    ("model: {target: taming.models.cond_transformer.Net2NetTransformer, params: {}}", "transformer config"),
    ("model: {params: {n_embed: 4}}", "not a VQGAN model config"),
    ("model: [unclosed", "not valid YAML"),
])
def test_bad_configs_are_one_line_errors(tmp_path, content, match):
    (tmp_path / "c.yaml").write_text(content)
    (tmp_path / "c.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=match) as info:
        load_vqgan(str(tmp_path / "c.yaml"))
    assert "\n" not in str(info.value)


def test_unknown_model_and_lone_config(tmp_path):
    with pytest.raises(CheckpointError, match="unknown VQGAN model 'nope'.*imagenet_f16_16384"):
        load_vqgan("nope")
    taming_yaml(tmp_path / "alone.yaml", tiny_vqgan())
    with pytest.raises(CheckpointError, match="give its checkpoint"):
        load_vqgan(str(tmp_path / "alone.yaml"))


def test_registry_name_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PIXLOOM_HOME", str(tmp_path))
    monkeypatch.setenv("PIXLOOM_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="imagenet_f16_16384.yaml is not in the cache.*put it at"):
        load_vqgan("imagenet_f16_16384")


# ------------------------------------------------------------------ the generator

def test_snap_is_nearest_with_straight_through_gradient():
    book = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    z = torch.tensor([[0.9, 0.2], [0.1, 0.05]]).t().reshape(1, 2, 1, 2).requires_grad_(True)
    z_q, idx = snap(z, book)
    assert idx.tolist() == [[[1, 0]]]
    assert torch.equal(z_q.detach()[0, :, 0, 0], book[1])
    z_q.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))


def test_contract_shape_range_gradient_and_state(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    image = gen.synth()
    assert image.shape == (1, 3, H, W) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    (image * torch.rand(image.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert gen.z.grad is not None and gen.z.grad.abs().sum() > 0
    assert [n for n, p in gen.named_parameters() if p.requires_grad] == ["z"]
    assert list(gen.state_dict()) == ["z"]  # the frozen model stays out of resume files
    assert torch.allclose(gen.to_image(), gen.synth().detach())


def test_random_init_is_codebook_entries_and_seeded(tiny_path, tmp_path):
    a, b, c = make(tiny_path, tmp_path, seed=5), make(tiny_path, tmp_path, seed=5), make(tiny_path, tmp_path, seed=6)
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)
    assert torch.equal(a.synth(), b.synth())
    book = a.model.codebook
    cells = a.z.detach()[0].flatten(1).t()
    assert all((book == v).all(1).any() for v in cells)


def test_latent_grid_and_crop_for_sizes_not_multiple_of_f(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, size=(45, 33))  # f = 2
    assert gen.grid == (17, 23)
    assert gen.synth().shape == (1, 3, 33, 45)


def test_upscale_decodes_a_smaller_grid_enlarged_to_the_size(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, size=(45, 33), upscale=2)  # f = 2: cells of 4 px
    assert gen.grid == (9, 12)
    image = gen.synth()
    assert image.shape == (1, 3, 33, 45)
    with torch.no_grad():
        decoded = gen.model.decode(snap(gen.z, gen.model.codebook)[0]).add(1).div(2)
        enlarged = F.interpolate(decoded, scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(image, enlarged[..., 1:34, 1:46].clamp(0, 1), atol=1e-6)  # centre crop of 36 x 48
    image.sum().backward()
    assert gen.z.grad.abs().sum() > 0
    gen.init_from_image(torch.rand(1, 3, 33, 45))  # an init image is encoded at the decoder's size
    assert gen.z.shape[-2:] == (9, 12)
    with pytest.raises(ValueError, match="upscale: must be a whole number between 1 and 8"):
        VQGANParams(upscale=0)


def test_supersample_decodes_a_larger_grid_averaged_down_to_the_size(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, size=(45, 33), supersample=2)  # f = 2: 90 x 66 px from 45 x 33 cells
    assert gen.grid == (33, 45)
    image = gen.synth()
    assert image.shape == (1, 3, 33, 45)
    with torch.no_grad():
        decoded = gen.model.decode(snap(gen.z, gen.model.codebook)[0]).add(1).div(2)
    assert torch.allclose(image, F.avg_pool2d(decoded, 2).clamp(0, 1), atol=1e-6)
    image.sum().backward()
    assert gen.z.grad.abs().sum() > 0


def test_after_step_clamps_to_the_codebook_range(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    with torch.no_grad():
        gen.z.add_(100.0)
    gen.after_step()
    assert torch.equal(gen.z.detach(), gen.z_max.expand_as(gen.z))


def test_init_from_image_is_the_encoders_latent(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path)
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))
    gen.init_from_image(image)
    with torch.no_grad():
        expected = gen.model.encode_latent(image * 2 - 1).clamp(gen.z_min, gen.z_max)
    assert torch.allclose(gen.z.detach(), expected)
    assert gen.z.requires_grad


def test_flat_init_is_the_encoders_latent_of_one_colour(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, init="flat", init_color=[0.1, 0.8, 0.3])
    with torch.no_grad():
        expected = gen.model.encode_latent(torch.tensor([0.1, 0.8, 0.3]).view(1, 3, 1, 1).expand(1, 3, H, W) * 2 - 1)
    assert torch.allclose(gen.z.detach(), expected.clamp(gen.z_min, gen.z_max), atol=1e-5)
    assert not torch.allclose(gen.z.detach(), make(tiny_path, tmp_path).z.detach())
    with pytest.raises(ValueError, match="init_color: must be three numbers in 0..1"):
        VQGANParams(init="flat", init_color=[0.5, 1.5, 0.0])


def test_init_image_param_and_paths_relative_to_the_preset(tiny_path, tmp_path):
    import shutil

    from PIL import Image

    folder = tmp_path / "presets"
    folder.mkdir()
    shutil.copy(tiny_path, folder / "mine.safetensors")
    Image.new("RGB", (W, H), (200, 30, 30)).save(folder / "init.png")
    c = BuildContext(size=(W, H), device=torch.device("cpu"), seed=0, preset_dir=folder)
    gen = VQGANGenerator(VQGANParams(model="mine.safetensors", init="image", init_image="init.png"), c)
    with torch.no_grad():
        expected = gen.model.encode_latent(torch.tensor([200 / 255, 30 / 255, 30 / 255]).view(1, 3, 1, 1)
                                           .expand(1, 3, H, W) * 2 - 1)
    assert torch.allclose(gen.z.detach(), expected.clamp(gen.z_min, gen.z_max), atol=1e-5)
    with pytest.raises(ValueError, match="init_image"):
        VQGANParams(init="image")
    with pytest.raises(ValueError, match="init"):
        VQGANParams(init="noise")


def test_one_adam_step_changes_the_image(tiny_path, tmp_path):
    gen = make(tiny_path, tmp_path, init_noise=0.5)
    opt = torch.optim.Adam([gen.z], lr=0.05)
    before = gen.to_image()
    gen.before_step(0, 2)
    F.mse_loss(gen.synth(), torch.full((1, 3, H, W), 0.5)).backward()
    opt.step()
    gen.after_step()
    assert not torch.equal(before, gen.to_image())


def test_renders_through_the_loop(tiny_path, tiny_preset, tmp_path):
    from pixloom.api import render

    tiny_preset["generator"] = {"name": "vqgan", "params": {"model": str(tiny_path)}}
    tiny_preset["losses"] = tiny_preset["losses"][:1]
    dirs = [registering_dir(tmp_path, "vqgan")]
    result = render(tiny_preset, plugins_dirs=dirs)
    assert result.tensor.shape == (1, 3, 32, 32) and result.files
    again = render(tiny_preset, plugins_dirs=dirs)
    assert torch.equal(result.tensor, again.tensor)


# ------------------------------------------------------------------ the embedded model

needs_embedded = pytest.mark.skipif("shapes-vqgan" not in embedded_models(),
                                    reason="plugins/weights/shapes-vqgan.safetensors not trained yet")


@needs_embedded
def test_embedded_model_reconstructs_the_shapes_world(tmp_path):
    from pixloom import world

    images, _ = world.sample(8, torch.Generator().manual_seed(99))
    gen = VQGANGenerator(VQGANParams(), ctx(tmp_path, size=(64, 64)))
    errors = []
    for image in images:
        gen.init_from_image(image[None])
        errors.append(F.mse_loss(gen.to_image(), image[None]).item())
    assert sum(errors) / len(errors) < 0.01


@needs_embedded
def test_embedded_model_renders_larger_than_it_was_trained(tmp_path):
    gen = VQGANGenerator(VQGANParams(), ctx(tmp_path, size=(128, 96)))
    assert gen.synth().shape == (1, 3, 96, 128)
