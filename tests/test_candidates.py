"""Best of several starts (``run.candidates``): each seed runs a few steps, the
one whose chosen losses are lowest is finished, and the result is exactly the
render that seed makes on its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import pixloom
from pixloom.loop import candidate_score


def _choose(preset: dict, count=3, steps=3, by=("clip",)) -> dict:
    preset["run"].update(steps=8, candidates=count, candidate_steps=steps, select_by=list(by))
    return preset


def test_the_lowest_scoring_start_is_finished_and_equals_its_own_render(tiny_preset):
    result = pixloom.render(_choose(tiny_preset, count=3, steps=3))
    info = result.candidates
    assert info["seeds"] == [0, 1, 2] and info["steps"] == 3 and info["select_by"] == ["clip"]
    # every start, run alone for the selection's steps, scores what the selection said it did
    alone = {}
    for seed in info["seeds"]:
        plain = pixloom.render(tiny_preset, **{"run.candidates": 1, "seed": seed, "steps": 8})
        alone[seed] = plain
        assert abs(candidate_score(plain.history[:3], ["clip"]) - info["scores"][seed]) < 1e-5
    chosen = min(info["seeds"], key=lambda s: info["scores"][s])
    assert info["chosen"] == chosen == result.seed
    assert len({round(s, 4) for s in info["scores"]}) == 3  # the starts really differ
    # the winner went on with its own random state: the same pixels and losses as its plain render
    assert torch.equal(result.tensor, alone[chosen].tensor)
    assert [row["total"] for row in result.history] == [row["total"] for row in alone[chosen].history]
    assert result.preset.run.seed == chosen and result.preset.run.candidates == 1


def test_the_starts_share_one_load_of_each_model(tiny_preset, monkeypatch):
    import pixloom.clip_loading as clip_loading

    built = []
    real = clip_loading.build_clip
    monkeypatch.setattr(clip_loading, "build_clip", lambda state, source: built.append(source) or real(state, source))
    result = pixloom.render(_choose(tiny_preset, count=3, steps=3))
    assert len(result.candidates["scores"]) == 3
    assert len(built) == 1, built  # three starts, one CLIP read and built
    # outside a render nothing is cached: a second load is a new model
    model = tiny_preset["perceptors"][0]["params"]["model"]
    assert clip_loading.load_clip(model).model is not clip_loading.load_clip(model).model
    assert len(built) == 3


def test_sharing_loads_keys_on_the_arguments_and_ends_with_its_scope():
    from pixloom.models import shared, sharing_loads

    calls = []

    @shared
    def load(name, resolve=None, trust=False):
        calls.append(name)
        return object()

    with sharing_loads():
        a = load("a", resolve=lambda p: p)
        assert load("a", resolve=lambda p: p) is a  # a preset's resolve is left out of the key
        assert load("a", trust=True) is not a and load("b") is not a
        assert load(["a"]) is not load(["a"])  # an unhashable argument: no sharing, no error
    assert calls == ["a", "a", "b", ["a"], ["a"]]
    assert load("a") is not a and calls[-1] == "a"  # the scope's cache went with it


def test_the_selection_follows_the_losses_it_is_told_to_use(tiny_preset):
    by_clip = pixloom.render(_choose(tiny_preset, by=("clip",))).candidates
    by_total = pixloom.render(_choose(tiny_preset, by=())).candidates
    assert by_total["select_by"] == ["total"]
    # the smoothness term changes the scores, so the two selections rank from different numbers
    assert by_clip["scores"] != by_total["scores"]
    for info in (by_clip, by_total):
        assert info["chosen"] == min(info["seeds"], key=lambda s: info["scores"][s - info["seeds"][0]])


def test_candidates_start_from_the_run_seed(tiny_preset):
    tiny_preset["run"]["seed"] = 5
    info = pixloom.render(_choose(tiny_preset, count=2)).candidates
    assert info["seeds"] == [5, 6] and info["chosen"] in (5, 6)


def test_the_png_records_the_candidates_and_re_renders_bit_for_bit(run_cli, tiny_preset, write_preset, tmp_path):
    first = run_cli("render", write_preset(_choose(tiny_preset)), "--out", tmp_path / "a")
    assert first.code == 0, first.err
    [png] = [p for p in first.out.split() if p.endswith(".png") and not p.endswith(".losses.png")]
    with Image.open(png) as im:
        info = json.loads(im.text["pixloom:candidates"])
        recipe = yaml.safe_load(im.text["pixloom:preset"])
        before = np.asarray(im.convert("RGB")).copy()
    assert recipe["run"]["seed"] == info["chosen"] and recipe["run"]["candidates"] == 1
    again = run_cli("render", "--from", png, "--out", tmp_path / "b")
    assert again.code == 0, again.err
    [png2] = [p for p in again.out.split() if p.endswith(".png") and not p.endswith(".losses.png")]
    with Image.open(png2) as im:
        assert np.array_equal(before, np.asarray(im.convert("RGB")))
        assert "pixloom:candidates" not in im.text  # a plain render of the winning seed


def test_bad_candidate_settings_are_one_line_errors(run_cli, tiny_preset_file):
    for override, words in [("run.candidates=0", "run.candidates: must be at least 1"),
                            ("run.candidate_steps=0", "run.candidate_steps: must be at least 1"),
                            ("run.select_by=[nope]", "run.select_by: no loss labelled 'nope' (the losses: clip, smoothness)")]:
        res = run_cli("render", tiny_preset_file, "run.candidates=2", override)
        assert res.code == 2, res.err
        assert words in res.error_line()


BELL_PLUGIN = """
import os, signal
from dataclasses import dataclass
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

@dataclass
class Params:
    pass

class Bell(Loss):
    # rings Ctrl-C in the second start (seed 1), at its step 2: while the starts are being chosen
    name = "bell"
    version = "1"
    Params = Params

    def forward(self, inputs):
        if self.ctx.seed == 1 and inputs.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return inputs.image.sum() * 0

@hookimpl
def pixloom_register_losses():
    return [Bell]
"""


def test_ctrl_c_while_choosing_saves_that_start_and_resumes_it(tmp_path, tiny_preset, write_preset, run_cli):
    tiny_preset["run"].update(steps=12, candidates=3, candidate_steps=6, select_by=["clip"])
    tiny_preset["losses"].append({"name": "bell", "weight": 1.0})
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "bell.py").write_text(BELL_PLUGIN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "pixloom", "render", str(write_preset(tiny_preset)), "--quiet",
                           "--plugins-dir", str(plugins)], capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 130, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "interrupted at step 3/12" in line and "--resume" in line, line
    out = tmp_path / "out"
    [resume] = list(out.glob("*.resume.pt"))
    [png] = [p for p in out.glob("*.png") if not p.name.endswith(".losses.png")]
    with Image.open(png) as im:
        recipe = yaml.safe_load(im.text["pixloom:preset"])
    assert recipe["run"]["seed"] == 1 and recipe["run"]["candidates"] == 1  # the start it was in
    # the resumed render finishes that start (the bell rings only at step 2, which is past)
    done = run_cli("render", "--resume", resume, "--plugins-dir", plugins, "--quiet")
    assert done.code == 0, done.err


POISON_PLUGIN = """
from dataclasses import dataclass, field
from typing import List
import torch
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

@dataclass
class Params:
    seeds: List[int] = field(default_factory=lambda: [1])

class Poison(Loss):
    # NaN at step 2 of the starts whose seed is listed
    name = "poison"
    version = "1"
    Params = Params

    def forward(self, inputs):
        bad = self.ctx.seed in self.params.seeds and inputs.step == 2
        return inputs.image.sum() * (float("nan") if bad else 0.0)

@hookimpl
def pixloom_register_losses():
    return [Poison]
"""


def test_a_start_that_fails_is_left_out_and_all_failing_is_an_error(tmp_path, tiny_preset):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "poison.py").write_text(POISON_PLUGIN)
    tiny_preset["losses"].append({"name": "poison", "weight": 1.0, "params": {"seeds": [1]}})
    result = pixloom.render(_choose(tiny_preset, count=3, steps=4), plugins_dirs=[plugins])
    info = result.candidates
    assert info["scores"][1] is None and None not in (info["scores"][0], info["scores"][2])
    assert info["chosen"] in (0, 2) and len(result.history) == 8
    tiny_preset["losses"][-1]["params"]["seeds"] = [0, 1, 2]
    tiny_preset["output"]["dir"] = str(tmp_path / "all")
    with pytest.raises(pixloom.errors.RunError, match="poison became nan at step 3") as err:
        pixloom.render(tiny_preset, plugins_dirs=[plugins])
    assert "last good image" in str(err.value)
    [png] = [p for p in (tmp_path / "all").glob("*.png") if not p.name.endswith(".losses.png")]
    with Image.open(png) as im:
        assert yaml.safe_load(im.text["pixloom:preset"])["run"]["seed"] == 2  # the last start tried
