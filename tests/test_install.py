"""The wheel: one package ``pixloom`` (core/ -> pixloom, plugins/ -> pixloom.plugins,
presets/ -> pixloom.presets) with its data files, nothing named ``core`` or
``plugins`` at the top level, and it works when installed somewhere else."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# What a source checkout has that a wheel build must not depend on or pick up.
NOT_SOURCE = shutil.ignore_patterns(".git", "tests", "build", "dist", "*.egg-info", "__pycache__", "outputs",
                                    ".pytest_cache", ".benchmarks", ".ci", "*.part", ".venv", "venv")


def subprocess_env(pythonpath=()) -> dict:
    """This environment with ``pythonpath`` first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in pythonpath] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run(args, **kwargs):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240, **kwargs)
    assert proc.returncode == 0, f"{args[:4]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the source tree (the checkout itself stays clean)."""
    work = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(REPO, work / "src", ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "--disable-pip-version-check", "-q", "-w", str(work / "dist"), str(source)])
    [built] = (work / "dist").glob("pixloom-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
          "-q", "--target", str(target), str(wheel)])
    return target


def wheel_names(wheel: Path) -> set:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def test_wheel_holds_one_package_pixloom(wheel):
    names = wheel_names(wheel)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"pixloom", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    for required in ("pixloom/__init__.py", "pixloom/__main__.py", "pixloom/hookspecs.py",
                     "pixloom/plugins/__init__.py", "pixloom/presets/__init__.py", "pixloom/presets/default.yaml"):
        assert required in names, required


def test_every_source_file_is_in_the_wheel(wheel):
    names = wheel_names(wheel)
    expected = []
    for folder, package in (("core", "pixloom"), ("plugins", "pixloom/plugins"), ("presets", "pixloom/presets")):
        root = REPO / folder
        for path in root.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            if path.suffix in (".py", ".yaml", ".safetensors", ".json"):
                expected.append(f"{package}/{rel}")
    missing = [e for e in expected if e not in names]
    assert not missing, f"in the source tree but not in the wheel (setup.py packages/package_data?): {missing}"


def test_wheel_files_are_readable_by_everyone(wheel):
    with zipfile.ZipFile(wheel) as z:
        unreadable = [i.filename for i in z.infolist()
                      if (i.external_attr >> 16) and ((i.external_attr >> 16) & 0o444) != 0o444]
    assert not unreadable, f"files other users could not read once installed: {unreadable}"


def test_wheel_declares_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        entry = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = z.read(entry).decode()
    assert "[console_scripts]" in text and "pixloom = pixloom.cli:main" in text


CHECK = """
import importlib.util, json, sys
import pixloom, pixloom.plugins, pixloom.presets
from pixloom.manager import build_registry, create_plugin_manager
from pixloom.preset import load_preset, shipped_presets
registry = build_registry(create_plugin_manager())
print(json.dumps({
    "pixloom": pixloom.__file__,
    "plugins": pixloom.plugins.__file__,
    "builtin_modules": [sys.modules[m].__file__ for m in sys.modules if m.startswith("pixloom.plugins.")],
    "presets": {k: str(v) for k, v in shipped_presets().items()},
    "default_generator": load_preset("default").cfg.generator.name,
    "classes": {k: sorted(v) for k, v in registry.classes.items()},
    "top_level_core": importlib.util.find_spec("core") is not None,
    "top_level_plugins": importlib.util.find_spec("plugins") is not None,
}))
"""


def test_installed_wheel_imports_from_its_own_folder(installed, tmp_path):
    proc = _run([sys.executable, "-c", CHECK], cwd=str(tmp_path), env=subprocess_env(pythonpath=[installed]))
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    root = installed.resolve()
    assert Path(info["pixloom"]).resolve() == root / "pixloom" / "__init__.py"
    assert Path(info["plugins"]).resolve().parent == root / "pixloom" / "plugins"
    assert info["builtin_modules"] and all(root in Path(f).resolve().parents for f in info["builtin_modules"])
    assert "default" in info["presets"] and root in Path(info["presets"]["default"]).resolve().parents
    assert info["default_generator"] == "pixel"
    assert {"pixel"} <= set(info["classes"]["generator"]) and {"clip", "smoothness"} <= set(info["classes"]["loss"])
    assert not info["top_level_core"] and not info["top_level_plugins"]


def test_installed_wheel_runs_the_command(installed, tmp_path):
    env = subprocess_env(pythonpath=[installed])
    proc = _run([sys.executable, "-m", "pixloom", "presets"], cwd=str(tmp_path), env=env)
    assert "default" in [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    version = _run([sys.executable, "-m", "pixloom", "--version"], cwd=str(tmp_path), env=env)
    import pixloom

    assert version.stdout.strip() == f"pixloom {pixloom.__version__}"
