"""The world denoiser (the ``diffusion`` generator's prior): the model file and
its refusals, and the training command."""
import pytest
import torch

from tiny_models import TINY_DENOISER

from pixloom.denoiser import load_denoiser
from pixloom.errors import CheckpointError
from pixloom.training import denoiser as training


def test_a_denoiser_file_round_trips_and_is_frozen(tiny_denoiser_path):
    den = load_denoiser(str(tiny_denoiser_path))
    assert den.config == TINY_DENOISER and not any(p.requires_grad for p in den.parameters())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = den(x, torch.tensor([0.5, 2.0]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_other_and_broken_files_are_refused_in_one_line(tiny_denoiser_path, tiny_clip_path, tmp_path):
    with pytest.raises(CheckpointError, match="not a pixloom denoiser"):
        load_denoiser(str(tiny_clip_path))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_denoiser_path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable .safetensors file") as info:
        load_denoiser(str(cut))
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="unknown model"):
        load_denoiser(str(tmp_path / "missing.safetensors"))


def test_the_training_command_is_deterministic_and_writes_a_loadable_model(tmp_path):
    args = ["--steps", "3", "--batch", "4", "--resolution", "16", "--save-every", "0", "--log-every", "1"]
    assert training.main(["--out", str(tmp_path / "a.safetensors"), *args]) == 0
    assert training.main(["--out", str(tmp_path / "b.safetensors"), *args]) == 0
    a, b = load_denoiser(str(tmp_path / "a.safetensors")), load_denoiser(str(tmp_path / "b.safetensors"))
    assert a.config.resolution == 16
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(SystemExit):
        training.parse_args(["--out", "x.safetensors", "--resolution", "40"])


def test_a_text_conditional_denoiser_round_trips_and_guides(tiny_text_denoiser_path):
    from tiny_models import TINY_TEXT_DENOISER

    from pixloom.denoiser import guided_estimate, text_condition

    den = load_denoiser(str(tiny_text_denoiser_path))
    assert den.config == TINY_TEXT_DENOISER and den.conditional
    cond = text_condition(den, [("a red circle", 1.0), ("a blue square", -1.0)])
    assert cond.shape == (1, 128) and torch.allclose(cond.norm(), torch.tensor(1.0))
    assert torch.allclose(cond, text_condition(den, [("a red circle", 2.0)]))  # negative prompts do not condition
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.5, 2.0])
    u, c = den(x, sigma), den(x, sigma, cond.expand(2, -1))
    assert not torch.allclose(u, c)  # the condition changes the estimate
    assert torch.allclose(guided_estimate(den, x, sigma, cond, 0.0), u)
    assert torch.allclose(guided_estimate(den, x, sigma, cond, 1.0), c, atol=1e-6)
    assert torch.allclose(guided_estimate(den, x, sigma, cond, 3.0), u + 3 * (c - u), atol=1e-5)
    with pytest.raises(ValueError, match="positive weight"):
        text_condition(den, [("a red circle", -1.0)])
    with pytest.raises(ValueError, match="width 128"):
        den(x, sigma, torch.zeros(2, 64))


def test_a_condition_without_its_text_model_is_refused(tmp_path):
    from pixloom.denoiser import Denoiser, DenoiserConfig, save_denoiser

    bad = tmp_path / "bad.safetensors"
    save_denoiser(Denoiser(DenoiserConfig(channels=(8, 16), embedding=8, resolution=16, condition=128)), bad, "x", {})
    with pytest.raises(CheckpointError, match="bad denoiser config"):
        load_denoiser(str(bad))


def test_conditional_training_is_deterministic(tmp_path):
    args = ["--steps", "3", "--batch", "4", "--resolution", "16", "--save-every", "0", "--log-every", "1",
            "--condition", "shapes-clip"]
    assert training.main(["--out", str(tmp_path / "a.safetensors"), *args]) == 0
    assert training.main(["--out", str(tmp_path / "b.safetensors"), *args]) == 0
    a, b = load_denoiser(str(tmp_path / "a.safetensors")), load_denoiser(str(tmp_path / "b.safetensors"))
    assert a.config.condition == 128 and a.config.text_model == "shapes-clip"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(SystemExit):
        training.parse_args(["--out", "x.safetensors", "--uncond", "1.0"])


def test_training_continues_from_a_saved_denoiser(tmp_path, capsys):
    from pixloom.checkpoints import sha256_file
    from pixloom.denoiser import FORMAT
    from pixloom.models import read_model

    args = ["--batch", "4", "--resolution", "16", "--save-every", "0", "--log-every", "1"]
    start, cont, fresh = tmp_path / "start.safetensors", tmp_path / "cont.safetensors", tmp_path / "fresh.safetensors"
    assert training.main(["--out", str(start), "--steps", "3", *args]) == 0
    # a step with a vanishing learning rate: the continued model is the saved one
    tiny_lr = ["--steps", "1", "--lr", "1e-12", "--seed", "1"]
    assert training.main(["--out", str(cont), *tiny_lr, "--init", str(start), *args]) == 0
    assert training.main(["--out", str(fresh), *tiny_lr, *args]) == 0
    a, b, c = (load_denoiser(str(p)).state_dict() for p in (start, cont, fresh))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    meta = read_model(cont, FORMAT, "pixloom denoiser").metadata
    assert meta["training"]["init"]["sha256"] == sha256_file(start)
    assert meta["training"]["init"]["steps"] == 3 and "from start.safetensors (3 steps)" in meta["description"]
    # another resolution is a start (the U-Net is convolutional), and the file says so
    up = tmp_path / "up.safetensors"
    assert training.main(["--out", str(up), "--steps", "1", "--resolution", "32", "--init", str(start),
                          "--batch", "4", "--lr", "1e-12"]) == 0
    grown = load_denoiser(str(up))
    assert grown.config.resolution == 32 and all(torch.equal(a[k], grown.state_dict()[k]) for k in a)
    meta = read_model(up, FORMAT, "pixloom denoiser").metadata
    assert meta["training"]["init"]["resolution"] == 16 and "(3 steps at 16 px)" in meta["description"]
    # another architecture (a text condition the start lacks) is refused in one line, with an exit code
    assert training.main(["--out", str(tmp_path / "x.safetensors"), "--steps", "1", "--resolution", "16",
                          "--condition", "shapes-clip", "--init", str(start), "--batch", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --init") and "differs from this run's" in err[-1]
    assert not (tmp_path / "x.safetensors").exists()
