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
