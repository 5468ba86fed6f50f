"""Rendering end to end with the tiny CLIP: the Python API, the CLI, the PNG
recipe and its bit-for-bit re-render, outputs, schedules, optimisers, callbacks."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pixloom
from pixloom.errors import PresetError
from pixloom.optim import optimizer_names
from pixloom.state import RenderResult, State

# Crops that are the whole image, unaugmented: the clip term is then an exact
# function of the image, so its fall over the steps is not noise.
STILL_CROPS = {"num": 2, "overview": 2, "flip_p": 0.0, "affine_p": 0.0, "perspective_p": 0.0,
               "noise_p": 0.0}


def final_pngs(files) -> list:
    return [Path(f) for f in files if str(f).endswith(".png") and not str(f).endswith(".losses.png")]


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def clip_only(preset: dict, prompts, steps=20, lr=0.05) -> dict:
    preset["losses"] = [{"name": "clip", "weight": 1.0, "params": {"prompts": list(prompts)}}]
    preset["augment"] = {"name": "cutouts", "params": dict(STILL_CROPS)}
    preset["run"].update(steps=steps, lr=lr)
    preset["output"]["plugins"] = []
    return preset


# ---------------------------------------------------------------- the Python API

def test_render_returns_image_tensor_and_history(tiny_preset):
    result = pixloom.render(tiny_preset, steps=3, size=[40, 32])
    assert isinstance(result, RenderResult)
    assert result.image.size == (40, 32) and result.image.mode == "RGB"
    assert result.tensor.shape == (1, 3, 32, 40)
    assert result.steps == 3 and len(result.history) == 3
    for row in result.history:
        assert set(row) == {"total", "clip", "smoothness"}
        assert row["total"] == pytest.approx(row["clip"] + row["smoothness"], rel=1e-5)
    assert np.array_equal(np.asarray(result.image), (result.tensor[0].permute(1, 2, 0) * 255).round().byte().numpy())
    assert result.preset.run.steps == 3 and list(result.preset.run.size) == [40, 32]
    assert set(result.plugins) == {"generator/pixel", "perceptor/clip", "augmentation/cutouts", "loss/clip",
                                   "loss/smoothness", "output/png"}
    assert all(isinstance(v, str) and v for v in result.plugins.values())
    assert [p.suffix for p in map(Path, result.files)] == [".png", ".png"]
    assert all(Path(f).is_file() for f in result.files)


def test_render_accepts_a_preset_file_and_dotlist_overrides(tiny_preset_file):
    result = pixloom.render(str(tiny_preset_file), overrides=["run.steps=2", "losses.1.weight=0.5"],
                            **{"output.plugins": []})
    assert result.steps == 2 and result.preset.losses[1].weight == 0.5
    assert result.files == []


def test_same_seed_same_image_other_seed_other_image(tiny_preset):
    tiny_preset["output"]["plugins"] = []
    a = pixloom.render(tiny_preset).tensor
    b = pixloom.render(tiny_preset).tensor
    c = pixloom.render(tiny_preset, seed=1).tensor
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_clip_loss_falls_toward_the_prompt(tiny_preset):
    result = pixloom.render(clip_only(tiny_preset, ["a red circle"]))
    clip = [row["clip"] for row in result.history]
    assert clip[-1] < clip[0], f"the clip term did not fall: {clip[0]:.6f} -> {clip[-1]:.6f}"
    assert min(clip[-5:]) < min(clip[:5])


def test_negative_prompt_weight_pushes_away(tiny_preset):
    toward = pixloom.render(clip_only(tiny_preset, ["a red circle"])).history
    away = pixloom.render(clip_only(tiny_preset, ["a red circle:-1"])).history
    start = toward[0]["clip"]
    assert away[0]["clip"] == pytest.approx(-start, rel=1e-6), "same seed, same start, weight -1"
    distance_toward, distance_away = toward[-1]["clip"], -away[-1]["clip"]
    assert distance_toward < start < distance_away


def test_prompts_argument_replaces_the_clip_prompts(tiny_preset):
    result = pixloom.render(tiny_preset, prompts=["a blue square:0.5"], steps=1)
    assert list(result.preset.losses[0].params.prompts) == ["a blue square:0.5"]
    assert result.preset.output.name is None
    assert final_pngs(result.files)[0].name == "a-blue-square.png"


def test_pixel_art_mode_makes_blocks_of_identical_pixels(tiny_preset):
    size = 4
    result = pixloom.render(tiny_preset, size=[32, 24], **{"generator.params.pixel_size": size})
    t = result.tensor[0]  # [3, 24, 32]
    blocks = t.view(3, 24 // size, size, 32 // size, size)
    assert torch.equal(blocks, blocks[:, :, :1, :, :1].expand_as(blocks)), "every block is one colour"
    assert not torch.equal(blocks[:, 0, 0, 0, 0], blocks[:, 0, 0, 1, 0]), "neighbouring blocks differ"
    array = np.asarray(result.image)
    assert (array.reshape(24 // size, size, 32 // size, size, 3) == array[::size, ::size][:, None, :, None]).all()


def test_init_from_a_flat_colour(tiny_preset):
    tiny_preset["generator"]["params"] = {"init": "flat", "init_color": [0.9, 0.1, 0.2], "noise_std": 0.0}
    result = pixloom.render(tiny_preset, steps=1, lr=1e-6)
    expected = torch.tensor([0.9, 0.1, 0.2]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    assert torch.allclose(result.tensor, expected, atol=1e-3)


def test_init_image_relative_to_the_preset_folder(tiny_preset, write_preset, tmp_path, monkeypatch):
    array = np.zeros((32, 32, 3), np.uint8)
    array[:, :16] = (250, 200, 20)
    array[:, 16:] = (20, 60, 230)
    Image.fromarray(array).save(tmp_path / "init.png")
    tiny_preset["generator"]["params"] = {"init": "image", "init_image": "init.png", "noise_std": 0.0}
    preset_file = write_preset(tiny_preset)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = pixloom.render(str(preset_file), steps=1, lr=1e-6)
    got = np.asarray(result.image).astype(int)
    assert np.abs(got - array.astype(int)).max() <= 2


def test_device_auto_is_the_cpu_here(tiny_preset):
    if torch.cuda.is_available() or (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        pytest.skip("an accelerator is present")
    seen = []
    pixloom.render(tiny_preset, device="auto", steps=1, callbacks=[lambda s: seen.append(s.device)])
    assert seen == ["cpu"]


# ---------------------------------------------------------------- callbacks

def test_callbacks_see_every_step(tiny_preset):
    seen = []

    def record(state):
        seen.append((state.step, state.total_steps, state.frame, tuple(state.image.shape),
                     state.image.requires_grad, dict(state.losses)))

    result = pixloom.render(tiny_preset, steps=3, callbacks=[record])
    assert [s[0] for s in seen] == [1, 2, 3]
    assert all(s[1:5] == (3, 0, (1, 3, 32, 32), False) for s in seen)
    assert [s[5] for s in seen] == result.history


def test_callback_setting_stop_ends_the_run(tiny_preset):
    def stop_at_two(state):
        if state.step == 2:
            state.stop = True

    result = pixloom.render(tiny_preset, steps=10, callbacks=[stop_at_two])
    assert result.steps == 2 and len(result.history) == 2


def test_callback_returning_a_changed_state_replaces_it(tiny_preset):
    seen = []

    def replace(state):
        seen.append(state.extra.get("mark"))
        if state.step == 1:
            return dataclasses.replace(state, extra={"mark": "replaced"})
        if state.step == 3:
            return dataclasses.replace(state, stop=True)
        return None

    result = pixloom.render(tiny_preset, steps=10, callbacks=[replace, lambda s: seen.append(s.extra.get("mark"))])
    assert result.steps == 3
    assert seen[:2] == [None, "replaced"], "the next callback sees the returned State"
    assert seen[2] == "replaced", "the returned State is carried into the next step"


def test_callback_changing_lr_changes_the_optimisation(tiny_preset):
    images = []

    def freeze_after_two(state):
        images.append(state.image.clone())
        if state.step == 2:
            state.lr = 0.0

    pixloom.render(tiny_preset, steps=5, callbacks=[freeze_after_two],
                   **{"run.optimizer": "sgd"})
    assert not torch.equal(images[0], images[1])
    assert torch.equal(images[2], images[3]) and torch.equal(images[3], images[4])


# ---------------------------------------------------------------- schedules and optimisers

def test_step_schedule_drop_stops_the_image_changing(tiny_preset):
    """gamma 0 at the half-way milestone: from then on the image stays still."""
    images = []
    tiny_preset["run"]["schedule"] = {"name": "step", "milestones": [0.5], "gamma": 0.0}
    pixloom.render(tiny_preset, steps=6, callbacks=[lambda s: images.append(s.image.clone())])
    # state.image after step k is the image step k scored (before its update)
    assert not torch.equal(images[1], images[2]), "steps 1..3 use the full rate"
    assert torch.equal(images[3], images[4]) and torch.equal(images[4], images[5])


def test_step_schedule_drops_show_in_state_lr(tiny_preset):
    """A callback recording ``state.lr`` sees the rate each step used."""
    lrs = []
    tiny_preset["run"]["schedule"] = {"name": "step", "milestones": [2, 4], "gamma": 0.1}
    pixloom.render(tiny_preset, steps=6, lr=0.5, callbacks=[lambda s: lrs.append(s.lr)])
    assert lrs == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005, 0.005])


def test_cosine_schedule_and_warmup_factors():
    from omegaconf import OmegaConf

    from pixloom.optim import lr_factor
    from pixloom.preset import ScheduleConfig

    cosine = OmegaConf.structured(ScheduleConfig(name="cosine", min_lr=0.1))
    factors = [lr_factor(cosine, s, 5) for s in range(5)]
    assert factors[0] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(factors, factors[1:]))
    warm = OmegaConf.structured(ScheduleConfig(warmup=4))
    assert [lr_factor(warm, s, 10) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


@pytest.mark.parametrize("name", ["sgd", "AdamW", "rmsprop"])
def test_any_torch_optimizer_by_name(tiny_preset, name):
    images = []
    result = pixloom.render(tiny_preset, steps=3, callbacks=[lambda s: images.append(s.image.clone())],
                            **{"run.optimizer": name, "run.optimizer_params": {"weight_decay": 0.0}})
    assert all(np.isfinite(row["total"]) for row in result.history)
    assert not torch.equal(images[0], images[-1])


def test_optimizer_params_reach_the_optimizer(tiny_preset):
    with pytest.raises(PresetError, match="momentum"):
        pixloom.render(tiny_preset, steps=1, **{"run.optimizer": "adam", "run.optimizer_params": {"momentum": 0.9}})


def test_unknown_optimizer_is_a_one_line_error(run_cli, tiny_preset_file):
    result = run_cli("render", tiny_preset_file, "run.optimizer=adamx")
    assert result.code == 2
    line = result.error_line()
    assert "run.optimizer" in line and "'adamx'" in line and "AdamW" in line and "SGD" in line


@pytest.mark.parametrize("name", optimizer_names())
def test_every_listed_optimizer_works_or_is_refused_in_one_line(run_cli, tiny_preset_file, name):
    """The unknown-optimizer message lists these as valid: each must run, or be
    refused with exit code 2 (never an internal error)."""
    result = run_cli("render", tiny_preset_file, "--steps", "2", f"run.optimizer={name}", "output.plugins=[]")
    if result.code != 0:
        assert result.code == 2, result.err
        assert result.error_line().startswith("pixloom: error:")


# ---------------------------------------------------------------- CLI, PNG recipe, outputs

def test_cli_render_writes_a_png_with_its_recipe(run_cli, tiny_preset_file, tmp_path):
    out = tmp_path / "cli-out"
    result = run_cli("render", tiny_preset_file, "--steps", "3", "--seed", "5", "--out", out, "--quiet")
    assert result.code == 0, result.err
    written = [Path(line) for line in result.out.splitlines()]
    assert all(p.is_file() and p.parent == out for p in written)
    [png] = final_pngs(written)
    assert png.name == "a-red-circle-on-a-blue-background.png"
    with Image.open(png) as im:
        text = dict(im.text)
        assert im.size == (32, 32)
    recipe = yaml.safe_load(text["pixloom:preset"])
    assert recipe["run"]["steps"] == 3 and recipe["run"]["seed"] == 5
    assert recipe["output"]["dir"] == str(out)
    # fully resolved: every plugin's defaults are filled in
    assert recipe["generator"]["params"]["pixel_size"] == 1
    assert recipe["augment"]["params"]["num"] == 4 and "noise_std" in recipe["augment"]["params"]
    assert recipe["losses"][1] == {"name": "smoothness", "weight": 0.1, "params": {"norm": "l1"}, "label": None}
    assert text["pixloom:seed"] == "5"
    assert text["pixloom:version"] == pixloom.__version__
    versions = json.loads(text["pixloom:plugins"])
    assert {"generator/pixel", "perceptor/clip", "augmentation/cutouts", "loss/clip",
            "loss/smoothness", "output/png"} <= set(versions)
    assert "3 steps" in result.err


def test_render_from_a_png_reproduces_it_bit_for_bit(run_cli_subprocess, tiny_preset_file, tmp_path):
    # bit for bit holds on one machine at one torch thread count (a CPU reduction's
    # order follows the threads), so both renders are new processes with the same pin
    same = {"OMP_NUM_THREADS": "1"}
    first = run_cli_subprocess("render", tiny_preset_file, "--steps", "4", "--seed", "3", "--out", tmp_path / "a",
                               env=same)
    assert first.code == 0, first.err
    [png] = final_pngs(first.out.splitlines())
    again = run_cli_subprocess("render", "--from", png, "--out", tmp_path / "b", env=same)
    assert again.code == 0, again.err
    [png2] = final_pngs(again.out.splitlines())
    assert png2.parent == tmp_path / "b" and png2.name == png.name
    assert np.array_equal(pixels(png), pixels(png2))
    with Image.open(png) as a, Image.open(png2) as b:
        recipe_a, recipe_b = yaml.safe_load(a.text["pixloom:preset"]), yaml.safe_load(b.text["pixloom:preset"])
    recipe_a["output"].pop("dir"), recipe_b["output"].pop("dir")
    assert recipe_a == recipe_b


def test_render_from_a_png_takes_overrides(run_cli, tiny_preset_file, tmp_path):
    first = run_cli("render", tiny_preset_file, "--steps", "2", "--out", tmp_path / "a")
    [png] = final_pngs(first.out.splitlines())
    again = run_cli("render", "--from", png, "--out", tmp_path / "b", "run.seed=9")
    assert again.code == 0, again.err
    [png2] = final_pngs(again.out.splitlines())
    with Image.open(png2) as im:
        assert im.text["pixloom:seed"] == "9"
    assert not np.array_equal(pixels(png), pixels(png2))


def test_loss_plot_is_written(tiny_preset):
    result = pixloom.render(tiny_preset, steps=3)
    plots = [Path(f) for f in result.files if str(f).endswith(".losses.png")]
    assert [p.name for p in plots] == ["a-red-circle-on-a-blue-background.losses.png"]
    with Image.open(plots[0]) as im:
        im.verify()
    with Image.open(plots[0]) as im:
        assert im.size[0] > 100 and im.size[1] > 100


def test_save_every_writes_intermediate_images(tiny_preset, tmp_path):
    tiny_preset["output"].update(save_every=2, name="steps test")
    result = pixloom.render(tiny_preset, steps=5)
    folder = tmp_path / "out" / "steps-test.steps"
    assert sorted(p.name for p in folder.iterdir()) == ["step-000002.png", "step-000004.png"]
    for p in folder.iterdir():
        with Image.open(p) as im:
            assert im.size == (32, 32)
    assert not np.array_equal(pixels(folder / "step-000002.png"), pixels(folder / "step-000004.png"))
    assert final_pngs(result.files)[0].name == "steps-test.png"


def test_two_renders_into_one_folder_never_overwrite(tiny_preset, tmp_path):
    first = pixloom.render(tiny_preset, steps=1)
    before = {Path(f): Path(f).read_bytes() for f in first.files}
    second = pixloom.render(tiny_preset, steps=2)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem = "a-red-circle-on-a-blue-background"
    assert names == sorted([f"{stem}.png", f"{stem}.losses.png", f"{stem}-2.png", f"{stem}-2.losses.png"])
    assert {Path(f).name for f in second.files} == {f"{stem}-2.png", f"{stem}-2.losses.png"}
    for path, data in before.items():
        assert path.read_bytes() == data


def test_output_name_and_no_metadata(tiny_preset):
    tiny_preset["output"].update(name="My Picture!", plugins=[{"name": "png", "params": {"metadata": False,
                                                                                         "loss_plot": False}}])
    result = pixloom.render(tiny_preset, steps=1)
    [png] = [Path(f) for f in result.files]
    assert png.name == "my-picture.png"
    with Image.open(png) as im:
        assert not any(k.startswith("pixloom:") for k in im.text)


# ---------------------------------------------------------------- list and presets

def test_list_shows_every_plugin_with_its_params(run_cli):
    import dataclasses as dc

    from pixloom.listing import PLURALS
    from pixloom.manager import build_registry, create_plugin_manager

    result = run_cli("list")
    assert result.code == 0, result.err
    sections = {}
    current = None
    for line in result.out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = line[:-1]
            sections[current] = []
        elif current:
            sections[current].append(line)
    registry = build_registry(create_plugin_manager())
    for kind, table in registry.classes.items():
        body = sections[PLURALS[kind]]
        for name, cls in table.items():
            starts = [i for i, line in enumerate(body) if line.startswith(f"  {name}  (v")]
            assert len(starts) == 1, f"{kind} {name} not listed once"
            end = next((i for i in range(starts[0] + 1, len(body)) if body[i].startswith("  ") and
                        not body[i].startswith("   ")), len(body))
            block = "\n".join(body[starts[0]:end])
            for f in dc.fields(cls.Params):
                assert f"        {f.name}: " in block, f"{kind} {name}: param {f.name} not listed"


def test_list_one_kind(run_cli):
    result = run_cli("list", "--kind", "loss")
    assert result.code == 0
    assert result.out.startswith("losses:") and "generators:" not in result.out
    assert "  smoothness  (v" in result.out and "norm: str = 'l1'" in result.out


def test_presets_lists_default(run_cli):
    result = run_cli("presets")
    assert result.code == 0, result.err
    names = [line.split()[0] for line in result.out.splitlines() if line.strip()]
    assert "default" in names
    default_line = next(line for line in result.out.splitlines() if line.startswith("default"))
    assert "pixel render" in default_line  # its description


def test_preset_base_chain_and_shipped_name(tiny_preset, write_preset, tmp_path):
    from pixloom.preset import load_preset

    base = write_preset(tiny_preset, "base.yaml")
    child = write_preset({"base": "base.yaml", "run": {"steps": 7}, "generator": {"params": {"pixel_size": 2}}},
                         "child.yaml")
    cfg = load_preset(str(child)).cfg
    assert cfg.run.steps == 7 and cfg.run.size == [32, 32]
    assert cfg.generator.name == "pixel" and cfg.generator.params == {"init": "noise", "pixel_size": 2}
    assert base.is_file()
    shipped = load_preset("default").cfg
    assert shipped.generator.name == "pixel" and shipped.losses[0].name == "clip"


def test_default_preset_renders_if_its_model_is_shipped(run_cli, tmp_path):
    from pixloom.models import embedded_models

    if "shapes-clip" not in embedded_models():
        pytest.skip("the embedded shapes-clip model is not shipped yet")
    result = run_cli("render", "default", "--steps", "2", "--size", "32x32", "--out", tmp_path,
                     "--quiet", "augment.params.num=4")
    assert result.code == 0, result.err
    [png] = final_pngs(result.out.splitlines())
    assert pixels(png).shape == (32, 32, 3)
