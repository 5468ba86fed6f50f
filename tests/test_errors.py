"""Every failure a user can cause is one line on stderr naming the problem, with
the exit code of docs/exit-codes.md and no traceback (``--debug`` shows it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Files:
    preset: Path  # a valid tiny preset
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name


@pytest.fixture
def files(tiny_preset_file, tmp_path) -> Files:
    (tmp_path / "malformed.yaml").write_text("run: {steps: 2\ngenerator: [pixel\n", encoding="utf-8")
    (tmp_path / "self.yaml").write_text("base: self.yaml\nrun: {steps: 2}\n", encoding="utf-8")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n", encoding="utf-8")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n", encoding="utf-8")
    (tmp_path / "orphan.yaml").write_text("base: nothere.yaml\n", encoding="utf-8")
    (tmp_path / "list.yaml").write_text("- run\n- steps\n", encoding="utf-8")
    broken = tmp_path / "broken-plugins"
    broken.mkdir()
    (broken / "broken_loss.py").write_text("def pixloom_register_losses(:\n    return []\n", encoding="utf-8")
    _images(tmp_path)
    return Files(tiny_preset_file, tmp_path)


def _images(folder: Path) -> None:
    """good.png, and broken stand-ins for an image: truncated, empty, not an image, a folder."""
    import numpy as np
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype("uint8")).save(folder / "good.png")
    data = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("a shopping list, not a picture\n", encoding="utf-8")
    (folder / "a-folder.png").mkdir()


# (id, arguments after "render" given the Files, substrings the one line must hold)
RENDER_ERRORS = [
    ("unknown-generator", lambda f: [f.preset, "generator.name=vqganx"],
     ["tiny.yaml", "generator.name", "unknown generator plugin 'vqganx'", "available: ", "pixel", "vqgan"]),
    ("unknown-loss", lambda f: [f.preset, "losses.1.name=smoothnes"],
     ["losses.1.name", "'smoothnes'", "clip", "smoothness", "symmetry"]),
    ("unknown-perceptor", lambda f: [f.preset, "perceptors.0.name=clop"], ["perceptors.0.name", "'clop'", "clip"]),
    ("unknown-augmentation", lambda f: [f.preset, "augment.name=cuts"], ["augment.name", "'cuts'", "cutouts"]),
    ("unknown-output", lambda f: [f.preset, "output.plugins=[jpeg]"], ["output.plugins.0.name", "'jpeg'", "png"]),
    ("unknown-param", lambda f: [f.preset, "generator.params.pixelsize=4"],
     ["tiny.yaml", "generator.params.pixelsize", "unknown parameter", "pixel_size", "init_color"]),
    ("unknown-loss-param", lambda f: [f.preset, "losses.0.params.prompt=[x]"],
     ["tiny.yaml", "losses.0.params.prompt", "prompts", "image_prompts"]),
    ("wrong-param-type", lambda f: [f.preset, "augment.params.num=many"],
     ["tiny.yaml", "augment.params.num", "'many'", "cutouts"]),
    ("wrong-param-type-list", lambda f: [f.preset, "generator.params.init_color=red"],
     ["generator.params.init_color", "pixel"]),
    ("bad-param-value", lambda f: [f.preset, "generator.params.init=plasma"],
     ["generator.params", "init", "'plasma'", "noise, flat, image"]),
    ("malformed-yaml", lambda f: [f.path("malformed.yaml")], ["malformed.yaml", "malformed YAML", "line 2"]),
    ("not-a-mapping", lambda f: [f.path("list.yaml")], ["list.yaml", "mapping"]),
    ("missing-preset", lambda f: [f.path("nowhere.yaml")], ["nowhere.yaml", "no such file", "default"]),
    ("base-extends-itself", lambda f: [f.path("self.yaml")], ["self.yaml", "extends itself"]),
    ("base-cycle", lambda f: [f.path("a.yaml")], ["a.yaml", "b.yaml", "extends itself"]),
    ("missing-base", lambda f: [f.path("orphan.yaml")], ["orphan.yaml", "nothere.yaml", "no such file"]),
    ("unknown-top-level-key", lambda f: [f.preset, "generators.name=pixel"],
     ["tiny.yaml", "generators", "unknown key", "generator", "losses"]),
    ("unknown-run-key", lambda f: [f.preset, "run.stpes=3"], ["run.stpes", "unknown key", "steps"]),
    ("unknown-key-in-a-loss", lambda f: [f.preset, "losses.0.wieght=2"], ["tiny.yaml", "losses.0.wieght", "weight"]),
    ("unknown-key-in-a-perceptor", lambda f: [f.preset, "perceptors.0.parms={}"], ["perceptors.0.parms", "params"]),
    ("unknown-key-in-an-output", lambda f: [f.preset, "output.plugins=[{name: png, parms: {}}]"],
     ["output.plugins.0.parms", "params"]),
    ("params-not-a-mapping", lambda f: [f.preset, "generator.params=[1]"], ["tiny.yaml", "generator.params"]),
    ("params-not-a-mapping-new-key", lambda f: [f.preset, "losses.1.params=[1]"], ["tiny.yaml", "losses.1.params"]),
    ("optimizer-params-not-a-mapping", lambda f: [f.preset, "run.optimizer_params=[1]"], ["run.optimizer_params"]),
    ("steps-0", lambda f: [f.preset, "--steps", "0"], ["run.steps", "at least 1", "got 0"]),
    ("steps-negative", lambda f: [f.preset, "run.steps=-5"], ["run.steps", "got -5"]),
    ("steps-not-a-number", lambda f: [f.preset, "run.steps=ten"], ["run.steps", "'ten'"]),
    ("size-0", lambda f: [f.preset, "--size", "0"], ["run.size", "between 8 and", "got 0"]),
    ("size-0-override", lambda f: [f.preset, "run.size=[32,0]"], ["run.size.1", "got 0"]),
    ("size-3d", lambda f: [f.preset, "run.size=[32,32,3]"], ["run.size", "[width, height]"]),
    ("size-malformed", lambda f: [f.preset, "--size", "big"], ["--size", "WIDTHxHEIGHT"]),
    ("nan-lr", lambda f: [f.preset, "run.lr=.nan"], ["run.lr", "positive finite", "nan"]),
    ("nan-lr-word", lambda f: [f.preset, "run.lr=nan"], ["run.lr", "nan"]),
    ("negative-lr", lambda f: [f.preset, "run.lr=-0.1"], ["run.lr", "-0.1"]),
    ("inf-weight", lambda f: [f.preset, "losses.0.weight=.inf"], ["losses.0.weight", "finite"]),
    ("unknown-device", lambda f: [f.preset, "--device", "tpu"], ["run.device", "'tpu'", "cpu", "cuda"]),
    ("unknown-device-override", lambda f: [f.preset, "run.device=gpu9"], ["run.device", "'gpu9'"]),
    ("unknown-schedule", lambda f: [f.preset, "run.schedule.name=linear"], ["run.schedule.name", "cosine"]),
    ("unknown-optimizer", lambda f: [f.preset, "run.optimizer=adamx"], ["run.optimizer", "'adamx'", "Adam", "SGD"]),
    ("bad-optimizer-params", lambda f: [f.preset, "run.optimizer_params={betas: 3}"], ["run.optimizer_params"]),
    ("plugins-dir-syntax-error", lambda f: [f.preset, "--plugins-dir", f.path("broken-plugins")],
     ["broken_loss.py", "syntax error", "line 1"]),
    ("plugins-dir-missing", lambda f: [f.preset, "--plugins-dir", f.path("no-such-dir")],
     ["no-such-dir", "not a directory"]),
    ("missing-model-file", lambda f: [f.preset, "perceptors.0.params.model=/no/such/model.safetensors"],
     ["perceptors.0", "clip", "/no/such/model.safetensors"]),
    ("corrupt-model-file", lambda f: [f.preset, f"perceptors.0.params.model={f.path('tiny.yaml')}"],
     ["perceptors.0", "tiny.yaml"]),
    ("missing-init-image", lambda f: [f.preset, "generator.params.init=image", "generator.params.init_image=no.png"],
     ["generator", "no.png", "no such file"]),
    ("clip-loss-without-prompts", lambda f: [f.preset, "losses.0.params.prompts=[]"],
     ["losses.0.params", "prompt"]),
    ("unknown-perceptor-label", lambda f: [f.preset, "losses.0.params.perceptors=[vit]"],
     ["'vit'", "clip"]),
    ("no-losses", lambda f: [f.preset, "losses=[]"], ["losses", "at least one"]),
    ("override-index-out-of-range", lambda f: [f.preset, "losses.5.weight=2"], ["losses.5.weight"]),
    ("from-missing-png", lambda f: ["--from", f.path("none.png")], ["none.png", "no such file"]),
    ("from-png-without-recipe", lambda f: ["--from", f.path("plain.png")], ["plain.png", "no pixloom recipe"]),
    ("no-preset", lambda f: [], ["give a preset"]),
    ("unknown-option", lambda f: [f.preset, "--stepz", "3"], ["--stepz"]),
    # prompts
    ("prompt-weight-not-a-number", lambda f: [f.preset, "losses.0.params.prompts=['a red circle:1.2.3']"],
     ["losses.0.params", "prompt 'a red circle:1.2.3'", "weight '1.2.3' is not a number"]),
    ("prompt-weight-not-a-number-mapping",
     lambda f: [f.preset, "losses.0.params.prompts=[{text: a red circle, weight: heavy}]"],
     ["losses.0.params", "weight 'heavy' is not a number"]),
    ("prompt-weight-not-a-number-cli", lambda f: [f.preset, "--prompt", "a red circle:2..5"],
     ["weight '2..5' is not a number"]),
    ("prompt-weight-nan", lambda f: [f.preset, "--prompt", "a red circle:nan"], ["weight must be finite"]),
    ("empty-prompt", lambda f: [f.preset, "--prompt", ""], ["losses.0.params", "empty text"]),
    ("empty-prompt-list-and-no-image-prompts", lambda f: [f.preset, "losses.0.params.prompts=[]",
                                                          "losses.0.params.image_prompts=[]"],
     ["losses.0.params", "prompt"]),
    ("image-prompt-weight-not-a-number",
     lambda f: [f.preset, f"losses.0.params.image_prompts=[{{path: {f.path('good.png')}, weight: lots}}]"],
     ["image prompt", "weight 'lots' is not a number"]),
    # init images and image prompts
    ("truncated-init-image", lambda f: [f.preset, "generator.params.init=image",
                                        f"generator.params.init_image={f.path('truncated.png')}"],
     ["generator", "truncated.png", "not a readable image", "truncated"]),
    ("empty-init-image", lambda f: [f.preset, "generator.params.init=image",
                                    f"generator.params.init_image={f.path('empty.png')}"],
     ["empty.png", "not a readable image"]),
    ("non-image-init-image", lambda f: [f.preset, "generator.params.init=image",
                                        f"generator.params.init_image={f.path('notes.txt')}"],
     ["notes.txt", "not a readable image"]),
    ("directory-as-init-image", lambda f: [f.preset, "generator.params.init=image",
                                           f"generator.params.init_image={f.path('a-folder.png')}"],
     ["a-folder.png", "is a directory"]),
    ("init-image-without-a-path", lambda f: [f.preset, "generator.params.init=image"], ["init_image"]),
    ("missing-image-prompt", lambda f: [f.preset, f"losses.0.params.image_prompts=[{f.path('nope.png')}]"],
     ["nope.png", "no such file"]),
    ("truncated-image-prompt", lambda f: [f.preset, f"losses.0.params.image_prompts=[{f.path('truncated.png')}]"],
     ["truncated.png", "not a readable image"]),
    # sizes, steps, numbers
    ("size-absurdly-large", lambda f: [f.preset, "--size", "100000x100000"],
     ["run.size.0", "between 8 and", "got 100000"]),
    ("size-absurdly-large-override", lambda f: [f.preset, "run.size=[64,1000000]"], ["run.size.1", "got 1000000"]),
    ("size-negative", lambda f: [f.preset, "--size=-64x64"], ["run.size.0", "got -64"]),
    ("steps-not-an-integer", lambda f: [f.preset, "run.steps=2.5"], ["run.steps", "2.5"]),
    ("lr-infinite", lambda f: [f.preset, "run.lr=.inf"], ["run.lr", "positive finite", "inf"]),
    ("lr-zero", lambda f: [f.preset, "run.lr=0"], ["run.lr", "got 0.0"]),
    ("seed-not-a-number", lambda f: [f.preset, "--seed", "abc"], ["--seed", "'abc'"]),
    # a directory where a file belongs (and the reverse)
    ("preset-is-a-directory", lambda f: [f.path("a-folder.png")], ["a-folder.png", "is a directory"]),
    ("model-is-a-directory", lambda f: [f.preset, f"perceptors.0.params.model={f.path('a-folder.png')}"],
     ["perceptors.0", "a-folder.png", "is a directory"]),
    ("resume-is-a-directory", lambda f: ["--resume", f.path("a-folder.png")], ["--resume", "is a directory"]),
    ("resume-missing", lambda f: ["--resume", f.path("gone.resume.pt")], ["gone.resume.pt", "no such file"]),
    ("from-is-a-directory", lambda f: ["--from", f.path("a-folder.png")], ["--from", "a-folder.png"]),
    ("from-and-resume", lambda f: ["--from", f.path("good.png"), "--resume", f.path("x.resume.pt")],
     ["either --from or --resume"]),
    ("plugins-dir-is-a-file", lambda f: [f.preset, "--plugins-dir", f.path("notes.txt")],
     ["notes.txt", "not a directory"]),
    # devices
    ("unknown-device-cuda-index", lambda f: [f.preset, "--device", "cuda:99"], ["run.device", "'cuda:99'"]),
    ("unknown-device-garbage", lambda f: [f.preset, "--device", "cpu:x:1"], ["run.device", "'cpu:x:1'"]),
]


@pytest.mark.parametrize("case,argv,expected", [pytest.param(*c, id=c[0]) for c in RENDER_ERRORS])
def test_render_error_is_one_line_with_exit_code_2(run_cli, files, case, argv, expected):
    if case == "from-png-without-recipe":
        from PIL import Image

        Image.new("RGB", (8, 8)).save(files.path("plain.png"))
    result = run_cli("render", *argv(files))
    assert result.code == 2, f"exit code {result.code}: {result.err}"
    line = result.error_line()
    assert line.startswith("pixloom: error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in: {line}"
    assert result.out == ""


def test_override_without_equals_is_one_line(run_cli, files):
    result = run_cli("render", files.preset, "steps")
    assert result.code == 2
    assert "'steps'" in result.error_line() and "KEY=VALUE" in result.err


def test_errors_before_running_write_nothing(run_cli, files, tmp_path):
    out = tmp_path / "never"
    for argv in (["generator.name=nope"], ["run.steps=0"], ["generator.params.bogus=1"]):
        assert run_cli("render", files.preset, "--out", out, *argv).code == 2
    assert not out.exists()


@pytest.mark.parametrize("argv", [["list", "--kind", "losses"], ["frobnicate"], []], ids=["bad-choice", "bad-command", "no-command"])
def test_bad_command_line_is_one_line(run_cli, argv):
    result = run_cli(*argv)
    assert result.code == 2
    assert result.error_line().startswith("pixloom: error:")


def test_list_with_a_broken_plugins_dir(run_cli, files):
    result = run_cli("list", "--plugins-dir", files.path("broken-plugins"))
    assert result.code == 2
    assert "broken_loss.py" in result.error_line()


# ---------------------------------------------------------------- in a real process

@pytest.mark.parametrize("argv,expected", [
    (lambda f: ["render", f.path("malformed.yaml")], "malformed YAML"),
    (lambda f: ["render", f.preset, "generator.name=vqganx"], "unknown generator plugin 'vqganx' (available: "),
    (lambda f: ["render", f.preset, "--plugins-dir", f.path("broken-plugins")], "syntax error"),
], ids=["malformed-yaml", "unknown-plugin", "plugins-dir-syntax-error"])
def test_subprocess_exit_code_and_single_stderr_line(run_cli_subprocess, files, argv, expected):
    result = run_cli_subprocess(*argv(files))
    assert result.code == 2
    assert expected in result.error_line()
    assert result.out == ""


# ---------------------------------------------------------------- a plugin that raises

RAISING_PLUGIN = '''
from pixloom.hookspecs import hookimpl

@hookimpl
def {hook}({args}):
    raise ValueError("the flux capacitor is empty")
'''


@pytest.fixture
def raising_plugin(tmp_path):
    def make(hook: str, args: str) -> Path:
        folder = tmp_path / f"raising-{hook}"
        folder.mkdir()
        (folder / "flux.py").write_text(RAISING_PLUGIN.format(hook=hook, args=args), encoding="utf-8")
        return folder

    return make


@pytest.mark.parametrize("hook,args", [("pixloom_run_start", "state"), ("pixloom_step", "state"),
                                       ("pixloom_run_end", "state, result")])
def test_plugin_raising_in_a_hook_names_plugin_and_hook(run_cli, files, raising_plugin, hook, args):
    folder = raising_plugin(hook, args)
    result = run_cli("render", files.preset, "--plugins-dir", folder)
    assert result.code == 3, result.err
    line = result.error_line()
    assert line.startswith("pixloom: error: plugin ")
    assert "flux.py" in line and f"hook {hook}" in line
    assert "ValueError: the flux capacitor is empty" in line


def test_plugin_raising_in_a_registration_hook(run_cli, raising_plugin):
    folder = raising_plugin("pixloom_register_losses", "")
    result = run_cli("list", "--plugins-dir", folder)
    assert result.code == 3
    line = result.error_line()
    assert "flux.py" in line and "pixloom_register_losses" in line


LOSS_RAISING = '''
from dataclasses import dataclass
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Loss

class Broken(Loss):
    """Raises in forward."""
    name = "broken"
    def forward(self, inputs):
        raise RuntimeError("division by cucumber")

@hookimpl
def pixloom_register_losses():
    return [Broken]
'''


def test_loss_raising_in_forward_names_the_loss(run_cli, files, tmp_path):
    folder = tmp_path / "broken-loss"
    folder.mkdir()
    (folder / "broken.py").write_text(LOSS_RAISING, encoding="utf-8")
    result = run_cli("render", files.preset, "--plugins-dir", folder, "losses.1.name=broken")
    assert result.code == 3
    line = result.error_line()
    assert "broken" in line and "forward" in line and "division by cucumber" in line


def test_debug_shows_the_traceback_in_a_subprocess(run_cli, run_cli_subprocess, files, raising_plugin):
    folder = raising_plugin("pixloom_step", "state")
    plain = run_cli("render", files.preset, "--plugins-dir", folder, "output.plugins=[]")
    debug = run_cli_subprocess("render", files.preset, "--plugins-dir", folder, "output.plugins=[]", "--debug")
    assert plain.code == debug.code == 3
    assert "Traceback (most recent call last)" in debug.err
    assert "flux.py" in debug.err and 'raise ValueError("the flux capacitor is empty")' in debug.err
    assert debug.err.rstrip().splitlines()[-1] == plain.error_line()


def test_debug_shows_the_traceback_of_a_preset_error(run_cli, files):
    result = run_cli("render", files.preset, "generator.name=nope", "--debug")
    assert result.code == 2
    assert "Traceback (most recent call last)" in result.err
    assert result.err.rstrip().splitlines()[-1].startswith("pixloom: error:")


def test_all_losses_weighted_zero_is_a_one_line_error(run_cli, files):
    """Nothing to optimise is the user's mistake: exit code 2, not an internal error."""
    result = run_cli("render", files.preset, "losses.0.weight=0", "losses.1.weight=0")
    assert result.code == 2, result.err
    assert "weight" in result.error_line()


# ---------------------------------------------------------------- every command, spot-checked

def _anim_preset(f: Files) -> Path:
    import yaml

    data = yaml.safe_load(f.preset.read_text())
    data["animation"] = {"frames": 2, "first_steps": 1, "steps": 1}
    path = f.path("anim.yaml")
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _model(f: Files) -> str:
    import yaml

    return yaml.safe_load(f.preset.read_text())["perceptors"][0]["params"]["model"]


# (id, argv given the Files, exit code, substrings of the one line)
COMMAND_ERRORS = [
    ("animate-missing-preset", lambda f: ["animate", f.path("nope.yaml")], 2, ["nope.yaml", "no such file"]),
    ("animate-malformed-yaml", lambda f: ["animate", f.path("malformed.yaml")], 2, ["malformed YAML"]),
    ("animate-zero-frames", lambda f: ["animate", _anim_preset(f), "animation.frames=0"], 2,
     ["animation.frames", "at least 1"]),
    ("animate-resume-not-an-animation", lambda f: ["animate", "--resume", f.path("a-folder.png")], 2,
     ["not an animation folder"]),
    ("animate-resume-missing", lambda f: ["animate", "--resume", f.path("gone.anim")], 2, ["no such folder"]),
    ("animate-unknown-plugin", lambda f: ["animate", _anim_preset(f), "losses.1.name=smoothnes"], 2,
     ["'smoothnes'"]),
    ("animate-output-dir-is-a-file", lambda f: ["animate", _anim_preset(f), f"output.dir={f.path('notes.txt')}"], 4,
     ["notes.txt", "is a file, not a folder"]),
    ("score-no-text", lambda f: ["score", f.path("good.png"), "--model", _model(f)], 2, ["--text"]),
    ("score-non-image", lambda f: ["score", f.path("notes.txt"), "--text", "x", "--model", _model(f)], 2,
     ["notes.txt", "not a readable image"]),
    ("score-missing-image", lambda f: ["score", f.path("gone.png"), "--text", "x", "--model", _model(f)], 2,
     ["gone.png", "no such file"]),
    ("score-directory-as-image", lambda f: ["score", f.path("a-folder.png"), "--text", "x", "--model", _model(f)],
     2, ["a-folder.png", "is a directory"]),
    ("score-unknown-device", lambda f: ["score", f.path("good.png"), "--text", "x", "--device", "tpu"], 2,
     ["'tpu'"]),
    ("score-unknown-model", lambda f: ["score", f.path("good.png"), "--text", "x", "--model", "nope"], 2,
     ["unknown model 'nope'"]),
    ("classify-one-label", lambda f: ["classify", f.path("good.png"), "--labels", "a circle", "--model", _model(f)],
     2, ["at least two"]),
    ("classify-truncated-image", lambda f: ["classify", f.path("truncated.png"), "--labels", "a,b",
                                            "--model", _model(f)], 2, ["truncated.png"]),
    ("search-missing-folder", lambda f: ["search", f.path("gone"), "--text", "x", "--model", _model(f)], 2,
     ["not a directory"]),
    ("search-top-0", lambda f: ["search", f.folder, "--text", "x", "--top", "0", "--model", _model(f)], 2,
     ["--top", "at least 1"]),
    ("models-unknown-name", lambda f: ["models", "path", "ViT-Z/99"], 2, ["unknown model 'ViT-Z/99'"]),
    ("models-unknown-action", lambda f: ["models", "frobnicate"], 2, ["invalid choice"]),
    ("evaluate-unknown-option", lambda f: ["evaluate", "--bogus"], 2, ["--bogus", "pixloom evaluate --help"]),
    ("evaluate-limit-0", lambda f: ["evaluate", "--limit", "0", "--out", f.path("eval")], 2, ["--limit"]),
    ("evaluate-seeds-not-numbers", lambda f: ["evaluate", "--seeds", "0,x", "--out", f.path("eval")], 2,
     ["--seeds", "'0,x'"]),
    ("evaluate-seeds-repeated", lambda f: ["evaluate", "--seeds", "1,1", "--out", f.path("eval")], 2,
     ["distinct"]),
    ("evaluate-seeds-and-run-seed", lambda f: ["evaluate", "--seeds", "0,1", "--out", f.path("eval"),
                                               "run.seed=3"], 2, ["run.seed"]),
    ("world-unknown-subcommand", lambda f: ["world", "bogus"], 2, ["'bogus'", "pixloom world --help"]),
    ("world-grid-into-a-directory", lambda f: ["world", "grid", f.path("a-folder.png")], 2, ["is a directory"]),
    ("world-grid-unknown-extension", lambda f: ["world", "grid", f.path("grid.txt")], 2, ["unknown image extension"]),
    ("world-grid-zero-samples", lambda f: ["world", "grid", f.path("g.png"), "--n", "0"], 2, ["--n"]),
    ("train-no-budget", lambda f: ["train", "--out", f.path("m.safetensors")], 2, ["--steps, --minutes"]),
    ("train-negative-steps", lambda f: ["train", "--out", f.path("m.safetensors"), "--steps", "-1"], 2,
     ["--steps must not be negative"]),
    ("train-nan-lr", lambda f: ["train", "--out", f.path("m.safetensors"), "--steps", "1", "--lr", "nan"], 2,
     ["--lr", "nan"]),
    ("train-out-is-a-directory", lambda f: ["train", "--out", f.path("a-folder.png"), "--steps", "1"], 2,
     ["is a directory"]),
    ("train-unknown-option", lambda f: ["train", "--out", f.path("m.safetensors"), "--steps", "1", "--bogus"], 2,
     ["--bogus"]),
    ("list-bad-kind", lambda f: ["list", "--kind", "losses"], 2, ["invalid choice: 'losses'"]),
    ("list-plugins-dir-missing", lambda f: ["list", "--plugins-dir", f.path("gone")], 2, ["not a directory"]),
    ("presets-extra-argument", lambda f: ["presets", "extra"], 2, ["unrecognized arguments: extra"]),
    ("bench-unknown-section", lambda f: ["bench", "--only", "speed", "--out", f.path("bench")], 2,
     ["--only: unknown section 'speed'"]),
    ("bench-unknown-option", lambda f: ["bench", "--bogus"], 2, ["--bogus", "pixloom bench --help"]),
]


@pytest.mark.parametrize("case,argv,code,expected", [pytest.param(*c, id=c[0]) for c in COMMAND_ERRORS])
def test_every_command_gives_one_line_errors(run_cli, files, case, argv, code, expected):
    result = run_cli(*argv(files))
    assert result.code == code, f"exit code {result.code}: {result.err}"
    line = result.error_line()
    assert line.startswith("pixloom: error: "), line
    for text in expected:
        assert text in line, f"{text!r} not in: {line}"


def test_every_command_is_spot_checked():
    from pixloom.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    checked = {c[0].split("-")[0] for c in COMMAND_ERRORS} | {"render"}
    assert commands <= checked, f"no one-line error test for: {sorted(commands - checked)}"


@pytest.mark.parametrize("argv", [["world", "grid"], ["train", "--bogus"], ["evaluate", "--bogus"]],
                         ids=["world", "train", "evaluate"])
def test_subcommand_parsers_print_no_usage_in_a_real_process(run_cli_subprocess, argv):
    result = run_cli_subprocess(*argv)
    assert result.code == 2
    assert result.error_line().startswith("pixloom: error: ") and "usage:" not in result.err


# ---------------------------------------------------------------- permissions, in a real process

def _unprivileged() -> list:
    """A command prefix under which file permissions apply: none for a normal user;
    as root (who reads and writes anything), setpriv dropping the capabilities
    that bypass them."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be made to apply")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def _run_unprivileged(args, cwd, timeout=120):
    import subprocess
    import sys

    from conftest import subprocess_env

    proc = subprocess.run([*_unprivileged(), sys.executable, "-m", "pixloom", *map(str, args)],
                          capture_output=True, text=True, cwd=str(cwd), timeout=timeout,
                          env=subprocess_env({"OMP_NUM_THREADS": "1"}))
    from conftest import CliResult

    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_unreadable_init_image_is_one_line(files, tmp_path):
    image = files.path("secret.png")
    image.write_bytes(files.path("good.png").read_bytes())
    image.chmod(0)
    try:
        result = _run_unprivileged(["render", files.preset, "generator.params.init=image",
                                    f"generator.params.init_image={image}"], tmp_path)
    finally:
        image.chmod(0o644)
    assert result.code == 2, result.err
    line = result.error_line()
    assert "secret.png" in line and "not readable (permission denied)" in line


def test_unwritable_output_dir_fails_before_the_work(files, tmp_path):
    """Exit code 4 at once, not after a million steps, and nothing is written."""
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = _run_unprivileged(["render", files.preset, "--steps", "1000000", "--out", out], tmp_path, timeout=90)
    finally:
        out.chmod(0o755)
    assert result.code == 4, result.err
    line = result.error_line()
    assert str(out) in line and "permission denied" in line
    assert not any(out.iterdir())


def test_output_dir_that_is_a_file_fails_before_the_work(run_cli, files):
    result = run_cli("render", files.preset, "--steps", "1000000", "--out", files.path("notes.txt"))
    assert result.code == 4
    assert "notes.txt: is a file, not a folder" in result.error_line()
    result = run_cli("render", files.preset, "--steps", "1000000", "--out", files.path("notes.txt") / "sub")
    assert result.code == 4
    assert "notes.txt" in result.error_line()


# ---------------------------------------------------------------- the exit-code table

def test_the_exit_code_table_lists_every_code():
    import re

    import pixloom.errors as errors

    docs = (Path(__file__).resolve().parent.parent / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    documented = {int(m) for m in re.findall(r"^\|\s*(\d+)\s*\|", docs, flags=re.M)}
    defined = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert documented == defined
    for cls in (errors.PixloomError, *errors.PixloomError.__subclasses__()):
        assert cls.exit_code in documented, cls
    assert "--debug" in docs


@pytest.mark.parametrize("argv", [
    lambda f: ["render", f.preset, "run.steps=0"],
    lambda f: ["animate", f.path("nope.yaml")],
    lambda f: ["score", f.path("notes.txt"), "--text", "x", "--model", _model(f)],
    lambda f: ["classify", f.path("good.png"), "--labels", "a", "--model", _model(f)],
    lambda f: ["search", f.path("gone"), "--text", "x", "--model", _model(f)],
    lambda f: ["models", "path", "ViT-Z/99"],
    lambda f: ["world", "grid", f.path("a-folder.png")],
    lambda f: ["train", "--out", f.path("m.safetensors")],
    lambda f: ["evaluate", "--limit", "0"],
    lambda f: ["list", "--plugins-dir", f.path("gone")],
], ids=["render", "animate", "score", "classify", "search", "models", "world", "train", "evaluate", "list"])
def test_debug_shows_the_traceback_for_every_command(run_cli, files, argv):
    args = argv(files)
    plain = run_cli(*args)
    debug = run_cli(*args, "--debug")
    assert plain.code == debug.code == 2
    assert "Traceback (most recent call last)" in debug.err
    assert debug.err.rstrip().splitlines()[-1] == plain.error_line()


# ---------------------------------------------------------------- the corpus covers the issue's list

ISSUE_CORPUS = {  # each kind of bad input the reliability issue names -> cases of the corpus above
    "malformed YAML": ["malformed-yaml", "animate-malformed-yaml"],
    "a preset extending itself": ["base-extends-itself", "base-cycle"],
    "unknown plugin": ["unknown-generator", "unknown-loss", "unknown-perceptor", "unknown-output"],
    "unknown key": ["unknown-top-level-key", "unknown-run-key", "unknown-param"],
    "wrong type": ["wrong-param-type", "steps-not-a-number", "steps-not-an-integer"],
    "negative or zero steps": ["steps-0", "steps-negative"],
    "size 0 or absurdly large": ["size-0", "size-0-override", "size-absurdly-large", "size-absurdly-large-override"],
    "NaN learning rate": ["nan-lr", "nan-lr-word"],
    "empty prompt list": ["clip-loss-without-prompts", "empty-prompt-list-and-no-image-prompts", "empty-prompt"],
    "prompt weight not a number": ["prompt-weight-not-a-number", "prompt-weight-not-a-number-mapping",
                                   "prompt-weight-not-a-number-cli"],
    "missing init image": ["missing-init-image"],
    "truncated init image": ["truncated-init-image", "empty-init-image"],
    "non-image init image": ["non-image-init-image"],
    "a directory where a file belongs": ["directory-as-init-image", "preset-is-a-directory", "model-is-a-directory",
                                         "resume-is-a-directory", "score-directory-as-image"],
    "unknown device": ["unknown-device", "unknown-device-override", "unknown-device-cuda-index"],
    "plugins-dir syntax error": ["plugins-dir-syntax-error"],
}
# in their own tests above: an unreadable init image (test_unreadable_init_image_is_one_line), an
# unwritable output folder (test_unwritable_output_dir_fails_before_the_work), a plugin that raises
# (test_plugin_raising_in_a_hook_names_plugin_and_hook, test_loss_raising_in_forward_names_the_loss)


def test_the_corpus_covers_every_kind_of_bad_input_the_issue_names():
    ids = {c[0] for c in RENDER_ERRORS} | {c[0] for c in COMMAND_ERRORS}
    missing = {kind: [c for c in cases if c not in ids] for kind, cases in ISSUE_CORPUS.items()}
    assert not any(missing.values()), missing
    assert len(ids) >= 30 and len(ids) == len(RENDER_ERRORS) + len(COMMAND_ERRORS)  # ids are unique
