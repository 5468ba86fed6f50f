"""docs/plugins.md runs: its opening example is a complete, short loss plugin
that changes a render, and every hook has documentation and a test."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixloom
import pixloom.hookspecs

TESTS_DIR = Path(__file__).resolve().parent
DOC = TESTS_DIR.parent / "docs" / "plugins.md"


def python_blocks(text: str) -> list:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def hook_names() -> list:
    return sorted(name for name in dir(pixloom.hookspecs)
                  if name.startswith("pixloom_") and hasattr(getattr(pixloom.hookspecs, name), "pixloom_spec"))


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture
def example(doc, tmp_path):
    """The guide's first python block saved as a plugin file: (folder, loss name)."""
    code = python_blocks(doc)[0]
    folder = tmp_path / "my-plugins"
    folder.mkdir()
    (folder / "example.py").write_text(code, encoding="utf-8")
    name = re.search(r'^\s+name = "([\w-]+)"', code, flags=re.M).group(1)
    return folder, name


def test_the_guide_opens_with_a_complete_loss_plugin(doc):
    first = python_blocks(doc)[0]
    assert len(first.splitlines()) <= 15
    assert doc.index("```python") < doc.index("\n## "), "the example comes before the first section"
    for part in ("@hookimpl", "def pixloom_register_losses():", "(Loss):", "name = ", "class Params",
                 "@dataclass", "def forward(self, inputs):", "inputs.image"):
        assert part in first, part
    compile(first, "example.py", "exec")


def test_the_example_changes_a_render(example, run_cli, tiny_preset_file, tmp_path):
    """The guide's command: ``render PRESET --plugins-dir DIR losses.1.name=NAME``."""
    folder, name = example
    runs = {}
    for weight in ("0", "0.1"):
        result = run_cli("render", tiny_preset_file, "--plugins-dir", folder, f"losses.1.name={name}",
                         f"losses.1.weight={weight}", "--steps", "6", "--out", tmp_path / weight, "--quiet")
        assert result.code == 0, result.err
        runs[weight] = np.asarray(Image.open(result.out.splitlines()[0])).astype(float)
    assert not np.array_equal(runs["0"], runs["0.1"]), "the example loss changed nothing"
    assert runs["0.1"].mean() > runs["0"].mean(), "brightness target 0.8 should brighten a mid-grey start"


def test_the_documented_commands_name_the_example(doc, example):
    _, name = example
    assert f"--plugins-dir my-plugins losses.1.name={name}" in doc
    assert "pixloom render presets/default.yaml --plugins-dir" in doc
    assert 'group `pixloom`' in doc and "[project.entry-points.pixloom]" in doc


def test_the_documented_command_on_the_default_preset(example, run_cli, tmp_path):
    from pixloom.models import embedded_models

    if "shapes-clip" not in embedded_models():
        pytest.skip("the embedded shapes-clip model is not shipped yet")
    folder, name = example
    result = run_cli("render", "presets/default.yaml", "--plugins-dir", folder, f"losses.1.name={name}",
                     "--steps", "2", "--size", "32x32", "augment.params.num=4", "--out", tmp_path, "--quiet")
    assert result.code == 0, result.err
    assert Path(result.out.splitlines()[0]).is_file()


def test_the_clip_loss_fragment_works(doc, tiny_preset, tmp_path):
    """The StepInputs section's setup/forward fragment, as the body of a Loss."""
    fragment = next(block for block in python_blocks(doc) if "def setup(self, perceptors)" in block)
    source = ("import torch\nfrom pixloom.hookspecs import hookimpl\nfrom pixloom.interfaces import Loss\n\n"
              "class Ring(Loss):\n    \"\"\"Doc fragment.\"\"\"\n    name = \"ring\"\n"
              + textwrap.indent(fragment, "    ")
              + "\n@hookimpl\ndef pixloom_register_losses():\n    return [Ring]\n")
    folder = tmp_path / "fragment"
    folder.mkdir()
    (folder / "ring.py").write_text(source, encoding="utf-8")
    tiny_preset["losses"] = [{"name": "ring"}]
    tiny_preset["output"]["plugins"] = []
    result = pixloom.render(tiny_preset, steps=3, plugins_dirs=[folder])
    assert set(result.history[0]) == {"total", "ring"}
    assert all(np.isfinite(row["ring"]) for row in result.history)


def test_every_hook_is_documented(doc):
    names = hook_names()
    assert len(names) >= 8
    missing = [n for n in names if f"`{n}(" not in doc]
    assert not missing, f"hooks without an entry in docs/plugins.md: {missing}"


def test_every_hook_has_a_test():
    """datasette's test_plugin_hooks_have_tests: a hook no test file names is untested."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TESTS_DIR.glob("test_*.py")
                        if p.name != Path(__file__).name)
    missing = [n for n in hook_names() if n not in sources]
    assert not missing, f"hooks no test exercises: {missing}"


def test_every_step_inputs_member_is_documented(doc):
    from pixloom.loop import StepInputs

    public = [n for n in dir(StepInputs) if not n.startswith("_")]
    public += [n for n in ("image", "step", "total_steps", "frame", "perceptors")]
    missing = [n for n in public if f"inputs.{n}" not in doc]
    assert not missing, f"StepInputs members missing from docs/plugins.md: {missing}"


def test_every_interface_method_is_documented(doc):
    import inspect

    from pixloom import interfaces

    missing = []
    for cls in (interfaces.Generator, interfaces.Perceptor, interfaces.Augmentation, interfaces.Loss,
                interfaces.Output):
        own = [n for n, v in vars(cls).items() if inspect.isfunction(v) and not n.startswith("_")]
        missing += [f"{cls.__name__}.{n}" for n in own if f"{n}(" not in doc]
    assert not missing, f"interface methods missing from docs/plugins.md: {missing}"
