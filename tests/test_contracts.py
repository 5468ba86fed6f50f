"""Contract tests: one class per plugin kind, run over EVERY registered plugin of
that kind (built-ins, entry points), so a new plugin is covered the moment it
is registered.

A plugin is built with its ``Params`` defaults plus the few required values in
``REQUIRED_PARAMS``; a new plugin whose defaults do not construct and that has
no entry there fails loudly, asking for one.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from pixloom.errors import PixloomError, PresetError
from pixloom.interfaces import BuildContext
from pixloom.loop import StepInputs
from pixloom.manager import build_registry, create_plugin_manager
from pixloom.preset import validate_params
from pixloom.state import RenderResult, State

REGISTRY = build_registry(create_plugin_manager())

# What a plugin needs beyond its Params defaults to be built for a test.
# A value may be a callable taking the tiny CLIP's path.
REQUIRED_PARAMS = {
    ("perceptor", "clip"): {"model": lambda tiny: str(tiny)},
    ("loss", "clip"): {"prompts": ["a red circle", "a blue square:-0.5"]},
    ("loss", "prior"): {"prompts": ["a red circle"]},  # in a render: the clip loss's prompts
}

WIDTH, HEIGHT = 40, 32  # not square: catches swapped axes
SEED = 1234


def plugins(kind: str) -> list:
    return [pytest.param(name, id=f"{kind}-{name}") for name in REGISTRY.names(kind)]


def all_plugins() -> list:
    return [pytest.param(kind, name, id=f"{kind}-{name}")
            for kind in REGISTRY.classes for name in REGISTRY.names(kind)]


def make_ctx(tmp_path: Path, seed: int = SEED, label: str = "") -> BuildContext:
    return BuildContext(size=(WIDTH, HEIGHT), device=torch.device("cpu"), seed=seed,
                        out_dir=tmp_path, preset_dir=tmp_path, label=label,
                        extra={"save_every": 0, "stem": "contract"})


def required_params(kind: str, name: str, tiny_clip_path) -> dict:
    table = REQUIRED_PARAMS.get((kind, name), {})
    return {k: (v(tiny_clip_path) if callable(v) else v) for k, v in table.items()}


def build(kind: str, name: str, tiny_clip_path, ctx: BuildContext, **params):
    """An instance of a registered plugin with valid params (as the loop builds it)."""
    cls = REGISTRY.get(kind, name)
    given = {**required_params(kind, name, tiny_clip_path), **params}
    try:
        p = validate_params(cls.Params, given, f"contract: {kind}.params", f"{kind} '{name}'")
        instance = cls(p, ctx)
    except (PixloomError, ValueError, TypeError, FileNotFoundError) as exc:
        if (kind, name) not in REQUIRED_PARAMS:
            pytest.fail(f"{kind} plugin {name!r} does not build from its Params defaults ({exc}); "
                        f"add its required params to REQUIRED_PARAMS in {__file__}")
        raise
    if isinstance(instance, torch.nn.Module):
        instance.to(ctx.device)
    return instance


def pattern_image(width=WIDTH, height=HEIGHT) -> torch.Tensor:
    """A target a coarse generator can approach too: left half orange, right half teal."""
    image = torch.empty(1, 3, height, width)
    image[..., : width // 2] = torch.tensor([0.9, 0.5, 0.1]).view(1, 3, 1, 1)
    image[..., width // 2:] = torch.tensor([0.1, 0.6, 0.7]).view(1, 3, 1, 1)
    return image


def assert_reaches(tensors, what: str) -> None:
    grads = [t.grad for t in tensors]
    assert any(g is not None for g in grads), f"no gradient reached {what}"
    assert all(torch.isfinite(g).all() for g in grads if g is not None), f"non-finite gradient on {what}"
    assert any(g.abs().sum() > 0 for g in grads if g is not None), f"only zero gradients reached {what}"


# ---------------------------------------------------------------- every plugin

def _wrong_value(annotation):
    """A value OmegaConf cannot convert to ``annotation`` (None: no such value, e.g. Any)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        return _wrong_value(inner[0]) if len(inner) == 1 else None
    if origin in (list, tuple, typing.List, typing.Tuple):
        return "not-a-list"
    if origin in (dict, typing.Dict):
        return "not-a-mapping"
    if annotation in (int, float):
        return "not-a-number"
    if annotation is bool:
        return "not-a-bool"
    if annotation is str:
        return [1, 2]
    return None


@pytest.mark.parametrize("kind,name", all_plugins())
class TestParamsContract:
    """Every plugin's Params is a dataclass that validate_params checks."""

    def test_params_is_a_dataclass_with_defaults_documented(self, kind, name):
        cls = REGISTRY.get(kind, name)
        assert cls.name == name
        assert dataclasses.is_dataclass(cls.Params), f"{kind} {name}: Params must be a @dataclass"
        assert (cls.__doc__ or "").strip(), f"{kind} {name}: a docstring is what 'pixloom list' shows"
        assert str(cls.version)

    def test_unknown_param_is_a_preset_error_naming_the_key(self, kind, name, tiny_clip_path):
        cls = REGISTRY.get(kind, name)
        params = {**required_params(kind, name, tiny_clip_path), "no_such_param_xyz": 1}
        with pytest.raises(PresetError) as info:
            validate_params(cls.Params, params, f"my.yaml: {kind}.params", f"{kind} '{name}'")
        message = str(info.value)
        assert "my.yaml" in message and f"{kind}.params.no_such_param_xyz" in message
        assert "\n" not in message
        for f in dataclasses.fields(cls.Params):
            assert f.name in message, f"the valid keys should be listed: {message}"

    def test_wrong_type_is_a_preset_error_naming_the_key(self, kind, name, tiny_clip_path):
        cls = REGISTRY.get(kind, name)
        hints = typing.get_type_hints(cls.Params)
        candidates = [(f.name, _wrong_value(hints.get(f.name))) for f in dataclasses.fields(cls.Params)]
        candidates = [(k, v) for k, v in candidates if v is not None]
        if not candidates:
            pytest.skip(f"{kind} {name}: no typed parameter")
        for key, value in candidates:
            params = {**required_params(kind, name, tiny_clip_path), key: value}
            with pytest.raises(PresetError) as info:
                validate_params(cls.Params, params, f"my.yaml: {kind}.params", f"{kind} '{name}'")
            message = str(info.value)
            assert f"my.yaml: {kind}.params.{key}" in message, message
            assert name in message and "\n" not in message

    def test_params_not_a_mapping_is_a_preset_error(self, kind, name):
        cls = REGISTRY.get(kind, name)
        with pytest.raises(PresetError, match="must be a mapping"):
            validate_params(cls.Params, [1, 2], f"my.yaml: {kind}.params", f"{kind} '{name}'")

    def test_defaults_round_trip_through_omegaconf(self, kind, name, tiny_clip_path):
        """The resolved preset stores validated params; loading them again gives the same params."""
        from pixloom.preset import params_to_dict

        cls = REGISTRY.get(kind, name)
        first = validate_params(cls.Params, required_params(kind, name, tiny_clip_path), "p", name)
        stored = OmegaConf.to_yaml(OmegaConf.create(params_to_dict(first)))
        again = validate_params(cls.Params, OmegaConf.create(stored), "p", name)
        assert again == first


# ---------------------------------------------------------------- generators

@pytest.mark.parametrize("name", plugins("generator"))
class TestGeneratorContract:

    def test_synth_shape_range_and_dtype(self, name, tiny_clip_path, tmp_path):
        gen = build("generator", name, tiny_clip_path, make_ctx(tmp_path))
        image = gen.synth()
        assert image.shape == (1, 3, HEIGHT, WIDTH)
        assert image.dtype == torch.float32
        assert torch.isfinite(image).all()
        assert image.min() >= 0 and image.max() <= 1

    def test_gradients_reach_the_parameters(self, name, tiny_clip_path, tmp_path):
        gen = build("generator", name, tiny_clip_path, make_ctx(tmp_path))
        params = [p for p in gen.parameters() if p.requires_grad]
        assert params, "a generator needs trainable parameters"
        weights = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
        (gen.synth() * weights).sum().backward()
        assert_reaches(params, f"generator {name}'s parameters")

    def test_same_seed_same_image(self, name, tiny_clip_path, tmp_path):
        torch.manual_seed(0)
        a = build("generator", name, tiny_clip_path, make_ctx(tmp_path, seed=7)).synth().detach()
        torch.manual_seed(0)
        b = build("generator", name, tiny_clip_path, make_ctx(tmp_path, seed=7)).synth().detach()
        assert torch.equal(a, b)

    def test_to_image_is_synth_without_gradient(self, name, tiny_clip_path, tmp_path):
        gen = build("generator", name, tiny_clip_path, make_ctx(tmp_path))
        image = gen.to_image()
        assert not image.requires_grad
        assert torch.allclose(image, gen.synth().detach(), atol=1e-6)

    def test_init_from_image_moves_toward_it(self, name, tiny_clip_path, tmp_path):
        gen = build("generator", name, tiny_clip_path, make_ctx(tmp_path))
        target = pattern_image()
        before = F.mse_loss(gen.to_image(), target).item()
        gen.init_from_image(target)
        after = F.mse_loss(gen.to_image(), target).item()
        assert after < 0.5 * before, f"init_from_image: mse {before:.4f} -> {after:.4f}"
        assert [p for p in gen.parameters() if p.requires_grad], "still trainable after init"

    def test_one_optimiser_step_changes_the_image(self, name, tiny_clip_path, tmp_path):
        gen = build("generator", name, tiny_clip_path, make_ctx(tmp_path))
        params = [p for p in gen.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=0.05)
        before = gen.to_image()
        gen.before_step(0, 2)
        F.mse_loss(gen.synth(), pattern_image()).backward()
        opt.step()
        gen.after_step()
        after = gen.to_image()
        assert not torch.equal(before, after)
        assert after.min() >= 0 and after.max() <= 1


# ---------------------------------------------------------------- perceptors

@pytest.mark.parametrize("name", plugins("perceptor"))
class TestPerceptorContract:

    @pytest.fixture
    def perceptor(self, name, tiny_clip_path, tmp_path):
        p = build("perceptor", name, tiny_clip_path, make_ctx(tmp_path, label=name))
        return p.eval().requires_grad_(False)  # as the loop freezes it

    def test_encode_image_shape_and_gradient_to_the_input(self, perceptor):
        s = perceptor.input_size
        assert isinstance(s, int) and s > 0
        images = torch.rand(3, 3, s, s, requires_grad=True)
        embeds = perceptor.encode_image(images)
        assert embeds.ndim == 2 and embeds.shape[0] == 3
        assert torch.isfinite(embeds).all()
        (embeds * torch.randn_like(embeds)).sum().backward()
        assert_reaches([images], "the perceptor's input images")

    def test_encode_text_shape_matches_image_embeddings(self, perceptor):
        texts = perceptor.encode_text(["a red circle", "a blue square", "a green star"])
        s = perceptor.input_size
        images = perceptor.encode_image(torch.rand(2, 3, s, s))
        assert texts.ndim == 2 and texts.shape == (3, images.shape[1])
        assert torch.isfinite(texts).all()
        assert not torch.allclose(texts[0], texts[1]), "different texts, different embeddings"

    def test_encodings_are_deterministic(self, perceptor):
        s = perceptor.input_size
        images = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))
        assert torch.equal(perceptor.encode_image(images), perceptor.encode_image(images))
        assert torch.equal(perceptor.encode_text(["a red circle"]), perceptor.encode_text(["a red circle"]))


# ---------------------------------------------------------------- augmentations

@pytest.mark.parametrize("name", plugins("augmentation"))
class TestAugmentationContract:
    CUT = 24

    def test_output_shape_and_range(self, name, tiny_clip_path, tmp_path):
        aug = build("augmentation", name, tiny_clip_path, make_ctx(tmp_path))
        crops = aug(torch.rand(1, 3, HEIGHT, WIDTH), self.CUT)
        assert crops.ndim == 4 and crops.shape[0] >= 1 and crops.shape[1:] == (3, self.CUT, self.CUT)
        assert torch.isfinite(crops).all()
        assert crops.min() >= 0 and crops.max() <= 1

    def test_gradients_reach_the_input(self, name, tiny_clip_path, tmp_path):
        aug = build("augmentation", name, tiny_clip_path, make_ctx(tmp_path))
        image = torch.rand(1, 3, HEIGHT, WIDTH, requires_grad=True)
        crops = aug(image, self.CUT)
        (crops * torch.randn_like(crops)).sum().backward()
        assert_reaches([image], "the augmentation's input")

    def test_deterministic_under_torch_manual_seed(self, name, tiny_clip_path, tmp_path):
        aug = build("augmentation", name, tiny_clip_path, make_ctx(tmp_path))
        image = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(42)
        a = aug(image, self.CUT)
        torch.manual_seed(42)
        b = aug(image, self.CUT)
        assert torch.equal(a, b)

    def test_any_cut_size(self, name, tiny_clip_path, tmp_path):
        aug = build("augmentation", name, tiny_clip_path, make_ctx(tmp_path))
        image = torch.rand(1, 3, HEIGHT, WIDTH)
        assert aug(image, 16).shape[-2:] == (16, 16)
        assert aug(image, 48).shape[-2:] == (48, 48)


# ---------------------------------------------------------------- losses

@pytest.mark.parametrize("name", plugins("loss"))
class TestLossContract:

    def _inputs(self, tiny_clip_path, tmp_path, image):
        perceptor = build("perceptor", "clip", tiny_clip_path, make_ctx(tmp_path, label="clip"))
        perceptors = {"clip": perceptor.eval().requires_grad_(False)}
        aug = build("augmentation", "cutouts", tiny_clip_path, make_ctx(tmp_path), num=4)
        return perceptors, StepInputs(image, 0, 10, 0, aug, perceptors, perceptor.input_size)

    def test_scalar_finite_and_gradients_reach_the_image(self, name, tiny_clip_path, tmp_path):
        loss = build("loss", name, tiny_clip_path, make_ctx(tmp_path, label=name))
        image = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        perceptors, inputs = self._inputs(tiny_clip_path, tmp_path, image)
        loss.setup(perceptors)
        torch.manual_seed(0)
        value = loss(inputs)
        assert isinstance(value, torch.Tensor) and value.ndim == 0, f"loss {name} must return a 0-dim tensor"
        assert torch.isfinite(value)
        value.backward()
        assert_reaches([image], f"the image through loss {name}")

    def test_deterministic_for_the_same_image_and_seed(self, name, tiny_clip_path, tmp_path):
        loss = build("loss", name, tiny_clip_path, make_ctx(tmp_path, label=name))
        image = torch.rand(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
        values = []
        for _ in range(2):
            perceptors, inputs = self._inputs(tiny_clip_path, tmp_path, image)
            loss.setup(perceptors)
            torch.manual_seed(0)
            values.append(loss(inputs).item())
        assert values[0] == values[1]


# ---------------------------------------------------------------- outputs

@pytest.mark.parametrize("name", plugins("output"))
class TestOutputContract:

    def test_on_end_writes_files_into_the_output_folder(self, name, tiny_clip_path, tmp_path, tiny_preset):
        from pixloom.preset import load_preset

        out_dir = tmp_path / "out"
        out_dir.mkdir()
        ctx = make_ctx(out_dir)
        output = build("output", name, tiny_clip_path, ctx)
        image = pattern_image()
        preset = load_preset(tiny_preset).cfg
        state = State(step=0, total_steps=2, image=image, preset=preset, out_dir=out_dir)
        output.on_start(state)
        history = []
        for step in (1, 2):
            state.step = step
            history.append({"total": 1.0 / step, "clip": 1.0 / step})
            state.losses = dict(history[-1])
            output.on_step(state)
        pil = Image.fromarray((image[0].permute(1, 2, 0) * 255).round().byte().numpy(), "RGB")
        result = RenderResult(image=pil, tensor=image, history=history, preset=preset, seed=SEED,
                              steps=2, plugins={"generator/pixel": "0"})
        written = output.on_end(state, result)
        assert written, f"output {name} wrote nothing"
        for path in written:
            path = Path(path)
            assert path.is_file() and path.stat().st_size > 0
            assert out_dir.resolve() in path.resolve().parents
        assert not list(out_dir.rglob("*.part")), "no temporary files left behind"
