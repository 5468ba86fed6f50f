"""The plugin manager: built-ins, entry points, loose files, and the registry
of plugin classes by kind and name."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pluggy

from . import hookspecs
from .errors import PluginError
from .interfaces import KINDS

ENTRY_POINT_GROUP = "pixloom"
TRACE_ENV = "PIXLOOM_TRACE_PLUGINS"

# Built-in plugins, registered exactly like third-party ones.
DEFAULT_PLUGINS = (
    "pixloom.plugins.pixel",
    "pixloom.plugins.vqgan",
    "pixloom.plugins.dalle",
    "pixloom.plugins.diffusion",
    "pixloom.plugins.clip_perceptor",
    "pixloom.plugins.clip_loss",
    "pixloom.plugins.image_losses",
    "pixloom.plugins.prior_loss",
    "pixloom.plugins.cutouts",
    "pixloom.plugins.png_output",
    "pixloom.plugins.frames_output",
    "pixloom.plugins.gif_output",
    "pixloom.plugins.mp4_output",
    "pixloom.plugins.contact_sheet",
)

_REGISTER_HOOKS = {
    "generator": "pixloom_register_generators",
    "perceptor": "pixloom_register_perceptors",
    "loss": "pixloom_register_losses",
    "augmentation": "pixloom_register_augmentations",
    "output": "pixloom_register_outputs",
}


def _load_plugin_file(path: Path):
    """Import a loose .py plugin file as a module, with a one-line error on failure."""
    name = f"pixloom_local_plugins.{path.stem}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise PluginError(f"plugin file {path}: syntax error on line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:  # a plugin's import code may raise anything
        sys.modules.pop(name, None)
        raise PluginError(f"plugin file {path}: import failed: {type(exc).__name__}: {exc}") from exc
    return module


def create_plugin_manager(plugins_dirs=(), entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the built-ins, the entry-point group ``pixloom``
    and every ``*.py`` file of each folder in ``plugins_dirs``."""
    pm = pluggy.PluginManager("pixloom")
    pm.add_hookspecs(hookspecs)
    for modname in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(modname), name=modname)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise PluginError(f"a plugin from entry-point group '{ENTRY_POINT_GROUP}' failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
    seen = set()  # the same folder given twice (or by two spellings) loads once
    for folder in plugins_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            raise PluginError(f"--plugins-dir {folder}: not a directory")
        real = folder.resolve()
        if real in seen:
            continue
        seen.add(real)
        for path in sorted(folder.glob("*.py")):
            if pm.has_plugin(str(path)):
                continue
            module = _load_plugin_file(path)
            if pm.is_registered(module):
                continue
            pm.register(module, name=f"{path}")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements a hook pixloom does not have: {exc}") from exc
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(lambda line: sys.stderr.write(f"[pixloom trace] {line}"))
        pm.enable_tracing()
    return pm


def plugin_in_traceback(pm: pluggy.PluginManager, exc: BaseException) -> str | None:
    """The name of the registered plugin whose code raised ``exc`` (innermost frame)."""
    files = {}
    for plugin in pm.get_plugins():
        path = getattr(plugin, "__file__", None)
        if path is None:
            try:
                path = sys.modules[type(plugin).__module__].__file__
            except (KeyError, AttributeError):
                continue
        files[os.path.realpath(path)] = pm.get_name(plugin)
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        name = files.get(os.path.realpath(frame.f_code.co_filename))
        if name:
            found = name
    return found


def call_hook(pm: pluggy.PluginManager, hook: str, **kwargs):
    """Call a lifecycle hook; a plugin that raises becomes a one-line PluginError
    naming the plugin and the hook."""
    try:
        return getattr(pm.hook, hook)(**kwargs)
    except PluginError:
        raise
    except Exception as exc:
        who = plugin_in_traceback(pm, exc) or "a plugin"
        raise PluginError(f"plugin {who} raised in hook {hook}: {type(exc).__name__}: {exc}",
                          exit_code=3) from exc


@dataclass
class Registry:
    """Plugin classes by kind and name, gathered from the registration hooks."""

    classes: dict  # kind -> {name: class}

    def get(self, kind: str, name: str):
        table = self.classes[kind]
        if name not in table:
            choices = ", ".join(sorted(table)) or "none"
            raise PluginError(f"unknown {kind} plugin {name!r} (available: {choices})")
        return table[name]

    def names(self, kind: str) -> list:
        return sorted(self.classes[kind])


def _describe(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def build_registry(pm: pluggy.PluginManager) -> Registry:
    classes = {}
    for kind in KINDS:
        hook = _REGISTER_HOOKS[kind]
        table = {}
        for group in call_hook(pm, hook):
            for cls in group or ():
                name = getattr(cls, "name", "")
                if not name:
                    raise PluginError(f"{kind} class {_describe(cls)} has no 'name' attribute")
                if name in table and table[name] is not cls:
                    raise PluginError(f"two {kind} plugins are both named {name!r}: "
                                      f"{_describe(table[name])} and {_describe(cls)}")
                table[name] = cls
        classes[kind] = table
    return Registry(classes)


def plugin_versions(registry: Registry) -> dict:
    """{"kind/name": version} of every registered plugin class."""
    return {f"{kind}/{name}": str(getattr(cls, "version", "0"))
            for kind, table in registry.classes.items() for name, cls in sorted(table.items())}
