"""``pixloom evaluate``: prompts rendered, judged and summarised, once per run seed."""
import json

import numpy as np
from PIL import Image

from pixloom import evaluate, world


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_seeds_render_every_prompt_once_per_seed_and_are_reproducible(tiny_preset_file, tiny_clip_path, tmp_path):
    out = tmp_path / "eval"
    summary = evaluate.run_evaluation(str(tiny_preset_file), "tune", out, str(tiny_clip_path), limit=2,
                                      seeds=[0, 1], log=lambda *a: None)
    results = summary["results"]
    prompts = [p for p, _ in evaluate.tuning_prompts()[:2]]
    assert [(r["seed"], r["prompt"]) for r in results] == [(s, p) for s in (0, 1) for p in prompts]
    forms = dict(evaluate.tuning_prompts())
    for r in results:
        assert r["candidates"] == len(world.all_captions(forms[r["prompt"]]))
        assert 1 <= r["rank"] <= r["candidates"]
    # the seed reaches the render: the same prompt differs between seeds
    assert len({r["file"] for r in results}) == 4
    assert not np.array_equal(_pixels(results[0]["file"]), _pixels(results[2]["file"]))
    per_seed = summary["top1_per_seed"]
    assert set(per_seed) == {"0", "1"}
    assert summary["top1"] == round(sum(r["rank"] == 1 for r in results) / 4, 4)
    assert abs(summary["top1"] - (per_seed["0"] + per_seed["1"]) / 2) < 1e-3
    assert json.loads((out / "evaluation.json").read_text())["seeds"] == [0, 1]
    assert (out / "contact-sheet.png").stat().st_size > 0

    # seed 1 alone again: the same renders and ranks
    again = evaluate.run_evaluation(str(tiny_preset_file), "tune", tmp_path / "again", str(tiny_clip_path),
                                    limit=2, seeds=[1], log=lambda *a: None)["results"]
    assert [r["rank"] for r in again] == [r["rank"] for r in results[2:]]
    for a, b in zip(again, results[2:]):
        assert np.array_equal(_pixels(a["file"]), _pixels(b["file"]))


def test_without_seeds_the_preset_seed_is_used(tiny_preset_file, tiny_clip_path, tmp_path):
    summary = evaluate.run_evaluation(str(tiny_preset_file), "tune", tmp_path / "e", str(tiny_clip_path),
                                      limit=1, log=lambda *a: None)
    assert summary["results"][0]["seed"] is None and "top1_per_seed" not in summary
    seeded = evaluate.run_evaluation(str(tiny_preset_file), "tune", tmp_path / "s", str(tiny_clip_path),
                                     limit=1, seeds=[0], log=lambda *a: None)  # the tiny preset's own seed is 0
    assert np.array_equal(_pixels(summary["results"][0]["file"]), _pixels(seeded["results"][0]["file"]))


def test_seeds_problems_are_named():
    assert "distinct" in evaluate.seeds_problem([1, 1])
    assert "non-negative" in evaluate.seeds_problem([-1])
    assert "run.seed" in evaluate.seeds_problem([0], ["run.seed=2"])
    assert evaluate.seeds_problem([0, 1], ["run.steps=3"]) is None
