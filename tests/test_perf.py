"""The crop batch that fits in memory: chunks with gradient accumulation give the
unchunked render's result, out of memory halves the chunk, and the settings fail
in one line when wrong."""
from __future__ import annotations

import pytest
import torch

import pixloom
import pixloom.step
from pixloom.errors import PresetError
from pixloom.perf import BUDGET_ENV, parse_bytes


def _chunk_sizes(monkeypatch) -> list:
    """Record the number of crops each StepInputs of the run is given."""
    sizes = []

    class Spy(pixloom.step.StepInputs):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self._cutouts is not None:
                sizes.append(self._cutouts.shape[0])

    monkeypatch.setattr(pixloom.step, "StepInputs", Spy)
    return sizes


def test_a_tiny_memory_budget_renders_in_chunks_with_the_same_result(tiny_preset, monkeypatch):
    tiny_preset["augment"]["params"].update(num=6, overview=1)
    whole = pixloom.render(tiny_preset, steps=4)
    sizes = _chunk_sizes(monkeypatch)
    monkeypatch.setenv(BUDGET_ENV, "1")  # one byte: one crop a chunk
    chunked = pixloom.render(tiny_preset, steps=4)
    assert sizes == [1] * 6 * 4  # 6 chunks of one crop, each of the 4 steps
    assert torch.allclose(chunked.tensor, whole.tensor, atol=1e-5)
    for a, b in zip(chunked.history, whole.history):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)


def test_a_fixed_crop_batch_and_a_budget_in_the_preset(tiny_preset, monkeypatch):
    tiny_preset["augment"]["params"].update(num=5, overview=1)
    whole = pixloom.render(tiny_preset, steps=2)
    sizes = _chunk_sizes(monkeypatch)
    fixed = pixloom.render(tiny_preset, steps=2, run__crop_batch=2)
    assert sizes == [2, 2, 1] * 2
    assert torch.allclose(fixed.tensor, whole.tensor, atol=1e-5)
    sizes.clear()
    pixloom.render(tiny_preset, steps=1, run__memory_budget="1KiB")
    assert sizes and max(sizes) < 5


def test_out_of_memory_halves_the_crop_batch_and_goes_on(tiny_preset, monkeypatch):
    from pixloom.plugins.clip_perceptor import ClipPerceptor

    tiny_preset["augment"]["params"].update(num=8, overview=1)
    whole = pixloom.render(tiny_preset, steps=2)
    real = ClipPerceptor.encode_image

    def small_device(self, images):
        if images.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, images)

    monkeypatch.setattr(ClipPerceptor, "encode_image", small_device)
    sizes = _chunk_sizes(monkeypatch)
    result = pixloom.render(tiny_preset, steps=2)
    assert sizes[:2] == [8, 4] and set(sizes[2:]) == {2} and result.steps == 2  # 8 and 4 ran out
    assert torch.allclose(result.tensor, whole.tensor, atol=1e-5)


@pytest.mark.parametrize("text,size", [("512MiB", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GB", 1_500_000_000),
                                       ("1000", 1000), (4096, 4096), ("3 kib", 3072)])
def test_parse_bytes(text, size):
    assert parse_bytes(text) == size


@pytest.mark.parametrize("override,words", [
    ("run.crop_batch=0", ["run.crop_batch", "auto"]),
    ("run.crop_batch=lots", ["run.crop_batch", "'lots'"]),
    ("run.memory_budget=12q", ["run.memory_budget", "'12q'", "512MiB"]),
    ("run.precision=bf16", ["run.precision", "'bf16'", "fp16"]),
])
def test_bad_settings_are_one_line_preset_errors(tiny_preset, override, words):
    from pixloom.preset import load_preset

    with pytest.raises(PresetError) as info:
        load_preset(tiny_preset, [override])
    assert all(w in str(info.value) for w in words), str(info.value)


def test_cuda_precisions_on_the_cpu_say_so(tiny_preset):
    with pytest.raises(PresetError, match="run.precision: fp16 needs a CUDA device"):
        pixloom.render(tiny_preset, steps=1, run__precision="fp16")
