"""Third-party plugins: loose .py files in ``--plugins-dir``, a distribution
found through the entry-point group ``pixloom``, name clashes, every hook, and
PIXLOOM_TRACE_PLUGINS."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import pixloom
from pixloom.errors import PluginError
from pixloom.manager import build_registry, create_plugin_manager

TESTS_DIR = Path(__file__).resolve().parent

BRIGHTNESS = '''
from dataclasses import dataclass
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

class Brightness(Loss):
    """Pull the mean brightness up to target."""
    name = "brightness"
    @dataclass
    class Params:
        target: float = 0.9
    def forward(self, inputs):
        return (inputs.image.mean() - self.params.target) ** 2

@hookimpl
def pixloom_register_losses():
    return [Brightness]
'''

# One plugin of every kind, so that each registration hook is used from a plugins dir
# and a preset can swap each built-in for another without changing any other line.
KIT = '''
from dataclasses import dataclass, field
from typing import List
import torch
import torch.nn.functional as F
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Augmentation, Generator, Output, Perceptor

class Stripes(Generator):
    """One colour a column."""
    name = "stripes"
    @dataclass
    class Params:
        base: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        rng = torch.Generator().manual_seed(ctx.seed)
        start = torch.tensor(params.base).view(1, 3, 1, 1) + 0.1 * torch.randn(1, 3, 1, self.width, generator=rng)
        self.logits = torch.nn.Parameter(torch.logit(start.clamp(0.01, 0.99)))
    def synth(self):
        return torch.sigmoid(self.logits).expand(1, 3, self.height, self.width)
    @torch.no_grad()
    def init_from_image(self, image):
        self.logits.copy_(torch.logit(image.mean(dim=2, keepdim=True).clamp(0.01, 0.99)))

class Pool(Perceptor):
    """Average colours on a 4x4 grid; texts hash to fixed random vectors."""
    name = "pool"
    input_size = 16
    def encode_image(self, images):
        return F.adaptive_avg_pool2d(images, 4).flatten(1) - 0.5
    def encode_text(self, texts):
        rows = [torch.randn(48, generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
        return torch.stack(rows)

class Whole(Augmentation):
    """The whole image and its mirror image."""
    name = "whole"
    def forward(self, image, cut_size):
        x = F.interpolate(image, size=(cut_size, cut_size), mode="bilinear", align_corners=False)
        return torch.cat([x, x.flip(-1)])

class History(Output):
    """Writes the loss history as text."""
    name = "history"
    def on_end(self, state, result):
        path = self.ctx.out_dir / f"{self.ctx.extra['stem']}.history.txt"
        path.write_text("\\n".join(f"{row['total']:.6f}" for row in result.history))
        return [path]

@hookimpl
def pixloom_register_generators():
    return [Stripes]

@hookimpl
def pixloom_register_perceptors():
    return [Pool]

@hookimpl
def pixloom_register_augmentations():
    return [Whole]

@hookimpl
def pixloom_register_outputs():
    return [History]
'''

RECORDER = '''
from pixloom.hookspecs import hookimpl
CALLS = []

@hookimpl
def pixloom_run_start(state):
    CALLS.append(("pixloom_run_start", state.step, tuple(state.image.shape)))

@hookimpl
def pixloom_step(state):
    CALLS.append(("pixloom_step", state.step, dict(state.losses)))
    if state.step == 3:
        state.extra["note"] = "seen"

@hookimpl
def pixloom_run_end(result):  # an implementation may take fewer arguments than the spec
    CALLS.append(("pixloom_run_end", result.steps, [p.name for p in result.files]))
'''

STOPPER = '''
import dataclasses
from pixloom.hookspecs import hookimpl

@hookimpl
def pixloom_step(state):
    if state.step == 2:
        return dataclasses.replace(state, stop=True)
'''


def plugin_dir(tmp_path: Path, name: str, **files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for stem, source in files.items():
        (folder / f"{stem}.py").write_text(source, encoding="utf-8")
    return folder


def mean_brightness(result) -> float:
    return float(result.tensor.mean())


# ---------------------------------------------------------------- loose files

def test_loose_loss_plugin_changes_the_render(tiny_preset, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", brightness=BRIGHTNESS)
    tiny_preset["output"]["plugins"] = []
    without = pixloom.render(tiny_preset, steps=6)
    tiny_preset["losses"].append({"name": "brightness", "weight": 5.0})
    with_it = pixloom.render(tiny_preset, steps=6, plugins_dirs=[folder])
    assert "brightness" in with_it.history[0]
    assert not torch.equal(without.tensor, with_it.tensor)
    assert mean_brightness(with_it) > mean_brightness(without) + 0.01
    assert with_it.plugins["loss/brightness"] == "0"


def test_loose_plugin_through_the_cli(run_cli, tiny_preset_file, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", brightness=BRIGHTNESS)
    base = run_cli("render", tiny_preset_file, "--out", tmp_path / "a", "--quiet")
    bright = run_cli("render", tiny_preset_file, "--out", tmp_path / "b", "--quiet", "--plugins-dir", folder,
                     "losses.1.name=brightness", "losses.1.weight=5")
    assert base.code == 0 and bright.code == 0, bright.err
    a, b = (np.asarray(Image.open(r.out.splitlines()[0])) for r in (base, bright))
    assert a.mean() + 2 < b.mean()
    listed = run_cli("list", "--kind", "loss", "--plugins-dir", folder)
    assert "  brightness  (v0, pixloom_local_plugins.brightness)" in listed.out
    assert "Pull the mean brightness up to target." in listed.out and "target: float = 0.9" in listed.out


def test_every_kind_can_come_from_a_plugins_dir(tiny_preset, tmp_path):
    """Swapping generator, perceptor, augmentation and output changes no other line."""
    folder = plugin_dir(tmp_path, "plugins", kit=KIT)
    tiny_preset["generator"]["name"] = "stripes"
    tiny_preset["generator"]["params"] = {}
    tiny_preset["perceptors"][0] = {"name": "pool"}
    tiny_preset["augment"] = {"name": "whole"}
    tiny_preset["output"]["plugins"] = ["history", "png"]
    result = pixloom.render(tiny_preset, steps=5, plugins_dirs=[folder])
    t = result.tensor[0]
    assert torch.equal(t, t[:, :1, :].expand_as(t)), "the stripes generator made the image"
    names = sorted(Path(f).name for f in result.files)
    stem = "a-red-circle-on-a-blue-background"
    assert names == [f"{stem}.history.txt", f"{stem}.losses.png", f"{stem}.png"]
    totals = (tmp_path / "out" / f"{stem}.history.txt").read_text().split()
    assert len(totals) == 5 and totals[-1] < totals[0]
    assert result.plugins["perceptor/pool"] == "0" and result.plugins["augmentation/whole"] == "0"


def test_lifecycle_hooks_are_called_with_state_and_result(tiny_preset, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", recorder=RECORDER)
    notes = []
    result = pixloom.render(tiny_preset, steps=4, plugins_dirs=[folder],
                            callbacks=[lambda s: notes.append(s.extra.get("note"))])
    calls = sys.modules["pixloom_local_plugins.recorder"].CALLS
    assert calls[0] == ("pixloom_run_start", 0, (1, 3, 32, 32))
    assert [c[:2] for c in calls[1:5]] == [("pixloom_step", 1), ("pixloom_step", 2), ("pixloom_step", 3),
                                           ("pixloom_step", 4)]
    assert [c[2] for c in calls[1:5]] == result.history
    assert calls[5] == ("pixloom_run_end", 4, [Path(f).name for f in result.files])
    assert len(calls) == 6
    assert notes == [None, None, None, "seen"], "a hook's change to the state is kept"


def test_pixloom_step_hook_may_return_a_state_that_stops_the_run(tiny_preset, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", stopper=STOPPER)
    result = pixloom.render(tiny_preset, steps=10, plugins_dirs=[folder])
    assert result.steps == 2 and len(result.history) == 2


def test_name_clash_between_two_plugins_names_both(run_cli, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", first=BRIGHTNESS, second=BRIGHTNESS)
    result = run_cli("list", "--plugins-dir", folder)
    assert result.code == 2
    line = result.error_line()
    assert "'brightness'" in line
    assert "pixloom_local_plugins.first.Brightness" in line and "pixloom_local_plugins.second.Brightness" in line


def test_name_clash_with_a_built_in_names_both(tmp_path):
    folder = plugin_dir(tmp_path, "plugins", mysmooth=BRIGHTNESS.replace('"brightness"', '"smoothness"'))
    with pytest.raises(PluginError) as info:
        build_registry(create_plugin_manager(plugins_dirs=[folder]))
    message = str(info.value)
    assert "pixloom.plugins.image_losses.SmoothnessLoss" in message
    assert "pixloom_local_plugins.mysmooth.Brightness" in message


def test_the_same_plugins_dir_twice_is_harmless(run_cli, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", brightness=BRIGHTNESS)
    result = run_cli("list", "--kind", "loss", "--plugins-dir", folder, "--plugins-dir", folder)
    assert result.code == 0, result.err
    assert result.out.count("  brightness  (v") == 1


def test_a_misspelt_hook_is_an_error_naming_it(run_cli, tmp_path):
    source = BRIGHTNESS.replace("def pixloom_register_losses", "def pixloom_register_loses")
    folder = plugin_dir(tmp_path, "plugins", typo=source)
    result = run_cli("list", "--plugins-dir", folder)
    assert result.code == 2
    line = result.error_line()
    assert "pixloom_register_loses" in line and "typo.py" in line


def test_a_plugin_file_that_fails_to_import(run_cli, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", needy="import a_module_that_does_not_exist_xyz\n")
    result = run_cli("list", "--plugins-dir", folder)
    assert result.code == 2
    line = result.error_line()
    assert "needy.py" in line and "import failed" in line and "a_module_that_does_not_exist_xyz" in line


def test_a_plugin_class_without_a_name(run_cli, tmp_path):
    folder = plugin_dir(tmp_path, "plugins", nameless=BRIGHTNESS.replace('name = "brightness"', ''))
    result = run_cli("list", "--plugins-dir", folder)
    assert result.code == 2
    assert "Brightness" in result.error_line() and "name" in result.error_line()


# ---------------------------------------------------------------- tracing

def test_trace_env_logs_every_hook_call(tiny_preset, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIXLOOM_TRACE_PLUGINS", "1")
    pixloom.render(tiny_preset, steps=2)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[pixloom trace]")]
    for hook in ("pixloom_register_generators", "pixloom_register_perceptors", "pixloom_register_losses",
                 "pixloom_register_augmentations", "pixloom_register_outputs", "pixloom_run_start",
                 "pixloom_step", "pixloom_run_end"):
        assert any(hook in line for line in lines), f"{hook} not traced"
    assert sum("pixloom_step [hook]" in line for line in lines) == 2


@pytest.mark.parametrize("value", [None, "0", ""])
def test_no_trace_without_the_env(tiny_preset, monkeypatch, capsys, value):
    if value is None:
        monkeypatch.delenv("PIXLOOM_TRACE_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("PIXLOOM_TRACE_PLUGINS", value)
    pixloom.render(tiny_preset, steps=1)
    assert "[pixloom trace]" not in capsys.readouterr().err


def test_trace_in_a_subprocess(run_cli_subprocess):
    result = run_cli_subprocess("list", "--kind", "output", env={"PIXLOOM_TRACE_PLUGINS": "1"})
    assert result.code == 0
    assert "[pixloom trace]" in result.err and "pixloom_register_outputs" in result.err
    assert "[pixloom trace]" not in result.out


# ---------------------------------------------------------------- an installed distribution

@pytest.fixture(scope="module")
def installed_dist(tmp_path_factory) -> Path:
    """tests/plugin_dist installed (from a copy, so the source tree stays clean) into a
    folder that goes on PYTHONPATH: its entry point is then found by importlib.metadata."""
    work = tmp_path_factory.mktemp("dist")
    source = shutil.copytree(TESTS_DIR / "plugin_dist", work / "src",
                             ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--disable-pip-version-check", "-q", "--target", str(target), str(source)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert list(target.glob("pixloom_darkness-*.dist-info")), "no metadata installed"
    return target


def test_entry_point_plugin_changes_the_render(installed_dist, run_cli, run_cli_subprocess, tiny_preset_file, tmp_path):
    base = run_cli("render", tiny_preset_file, "--out", tmp_path / "a", "--quiet", "output.plugins=[png]")
    dark = run_cli_subprocess("render", tiny_preset_file, "--out", tmp_path / "b", "--quiet",
                              "losses.1.name=darkness", "losses.1.weight=5", pythonpath=[installed_dist])
    assert base.code == 0, base.err
    assert dark.code == 0, dark.err
    a, b = (np.asarray(Image.open(r.out.splitlines()[0])).astype(float) for r in (base, dark))
    assert b.mean() + 2 < a.mean()
    with Image.open(dark.out.splitlines()[0]) as im:
        assert '"loss/darkness": "0.1.0"' in im.text["pixloom:plugins"]


def test_entry_point_plugin_is_not_found_without_the_dist(run_cli, tiny_preset_file):
    result = run_cli("render", tiny_preset_file, "losses.1.name=darkness")
    assert result.code == 2
    assert "'darkness'" in result.error_line()
