"""score, classify and search: mechanics with a tiny model, and correctness on
shapes-world images with known captions using the embedded perceptor."""
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pixloom import world
from pixloom.cli import main
from pixloom.clip_tools import build_perceptor, classify, refresh_index, score, search
from pixloom.models import embedded_models

HAS_SHAPES_CLIP = "shapes-clip" in embedded_models()
needs_shapes_clip = pytest.mark.skipif(not HAS_SHAPES_CLIP, reason="plugins/weights/shapes-clip.safetensors not trained yet")


def _write_world(folder, n, seed, **fixed):
    folder.mkdir(parents=True, exist_ok=True)
    images, attrs = world.sample(n, torch.Generator().manual_seed(seed), **fixed)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.png"
        Image.fromarray((images[i].permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
        paths.append(path)
    return paths, attrs


def test_search_index_is_cached_and_refreshed_when_files_change(tmp_path, tiny_clip_path):
    paths, _ = _write_world(tmp_path / "pics", 5, seed=1)
    perceptor = build_perceptor("clip", str(tiny_clip_path), "cpu")
    first = refresh_index(tmp_path / "pics", perceptor)
    assert first.updated == 5 and len(first.entries) == 5
    again = refresh_index(tmp_path / "pics", perceptor)
    assert again.updated == 0 and torch.equal(again.embeddings, first.embeddings)
    # change one file, remove one, add one
    time.sleep(0.01)
    Image.new("RGB", (64, 64), (220, 30, 30)).save(paths[0])
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns()))
    paths[1].unlink()
    Image.new("RGB", (64, 64), (30, 60, 220)).save(tmp_path / "pics" / "new.png")
    third = refresh_index(tmp_path / "pics", perceptor)
    assert third.updated == 2 and third.removed == 1 and len(third.entries) == 5
    assert sorted(e["path"] for e in third.entries) == sorted(["img000.png", "img002.png", "img003.png",
                                                              "img004.png", "new.png"])


def test_cli_tools_run_with_any_model_file(tmp_path, tiny_clip_path, capsys):
    paths, _ = _write_world(tmp_path / "pics", 3, seed=2)
    model = ["--model", str(tiny_clip_path)]
    assert main(["score", str(paths[0]), "--text", "a red circle", "--text", "a blue star", *model]) == 0
    out = capsys.readouterr().out
    assert "a red circle" in out and str(paths[0]) in out
    assert main(["classify", str(paths[0]), "--labels", "a circle,a star", *model]) == 0
    probs = [float(x.split()[-1]) for x in capsys.readouterr().out.split(":", 1)[1].split(",")]
    assert sum(probs) == pytest.approx(1.0, abs=2e-3)
    assert main(["search", str(tmp_path / "pics"), "--text", "a star", "--top", "2", *model]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["classify", str(paths[0]), "--labels", "only-one", *model]) == 2
    assert main(["search", str(tmp_path / "missing"), "--text", "a star", *model]) == 2


@needs_shapes_clip
def test_classify_shapes_of_world_images():
    images, attrs = world.sample(48, torch.Generator().manual_seed(4242))
    perceptor = build_perceptor("clip", None, "cpu")
    labels = [f"a {s}" for s in world.SHAPES]
    with torch.no_grad():
        emb = torch.nn.functional.normalize(perceptor.encode_image(images), dim=-1)
    texts = torch.nn.functional.normalize(perceptor.encode_text(labels), dim=-1)
    accuracy = ((emb @ texts.T).argmax(1) == attrs.shape).float().mean().item()
    assert accuracy >= 0.9


@needs_shapes_clip
def test_score_and_classify_files_prefer_the_true_caption(tmp_path):
    paths, attrs = _write_world(tmp_path / "pics", 12, seed=77)
    perceptor = build_perceptor("clip", None, "cpu")
    true = [world.caption(attrs, i, world.Form(colour=True, shape=True, background=True)) for i in range(12)]
    sims = score(perceptor, paths, true)
    assert (sims.argmax(1) == torch.arange(12)).float().mean() >= 0.9
    colours = [f"a {c} shape" for c in world.COLOUR_NAMES]
    probs = classify(perceptor, paths, colours)
    assert (probs.argmax(1) == attrs.fg).float().mean() >= 0.9
    assert torch.allclose(probs.sum(1), torch.ones(12), atol=1e-4)


@needs_shapes_clip
def test_search_finds_the_matching_images(tmp_path):
    folder = tmp_path / "pics"
    _write_world(folder, 20, seed=5, shape=torch.full((20,), world.SHAPES.index("square")))
    stars, _ = _write_world(tmp_path / "stars", 3, seed=6, shape=torch.full((3,), world.SHAPES.index("star")),
                            fg=torch.full((3,), world.COLOUR_NAMES.index("yellow")))
    for i, p in enumerate(stars):
        p.rename(folder / f"star{i}.png")
    perceptor = build_perceptor("clip", None, "cpu")
    hits = search(folder, perceptor, "a yellow star", top=3)
    assert sorted(p.name for p, _ in hits) == ["star0.png", "star1.png", "star2.png"]
