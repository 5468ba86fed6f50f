"""The Python API: ``pixloom.render(preset, **overrides)``. The CLI is a thin layer over it."""
from __future__ import annotations

from .errors import PixloomError
from .loop import render_loaded
from .manager import build_registry, create_plugin_manager
from .preset import load_preset

SHORTCUTS = {
    "steps": "run.steps",
    "seed": "run.seed",
    "device": "run.device",
    "lr": "run.lr",
    "size": "run.size",
    "out": "output.dir",
    "name": "output.name",
}


def keyword_overrides(kwargs: dict) -> list:
    """``steps=50``, ``run__lr=0.05`` or ``**{"losses.0.weight": 2}`` -> (key, value) overrides."""
    out = []
    for key, value in kwargs.items():
        key = SHORTCUTS.get(key, key.replace("__", "."))
        if key == "run.size" and isinstance(value, int):
            value = [value, value]
        if key == "output.dir":
            value = str(value)
        out.append((key, value))
    return out


def render(preset=None, *, prompts=None, overrides=(), plugins_dirs=(), progress=False, callbacks=(),
           entry_points=True, resume=None, **kwargs):
    """Render ``preset`` (a path, a shipped preset name or a dict) and return a
    :class:`pixloom.state.RenderResult` (``.image``, ``.history``, ``.files``).

    ``prompts`` replaces the text prompts of the first ``clip`` loss (``"text"``
    or ``"text:weight"``). ``overrides`` are dotlist strings (``"run.steps=50"``);
    keyword arguments are overrides too: ``steps``, ``seed``, ``device``, ``lr``,
    ``size``, ``out``, ``name``, or any dotted key with ``__`` for the dots.
    ``callbacks`` are called with the step State after every step and may return
    a changed State. ``resume`` (a ``.resume.pt`` written when a render was
    interrupted) continues that render; its preset is used, with overrides on top.
    """
    state = None
    if resume is not None:
        from .resume import load_resume

        state = load_resume(resume)
        preset = state.preset
    if preset is None:
        raise PixloomError("render: give a preset (a file or a shipped name) or a resume file")
    pm = create_plugin_manager(plugins_dirs=plugins_dirs, entry_points=entry_points)
    registry = build_registry(pm)
    loaded = load_preset(preset, [*overrides, *keyword_overrides(kwargs)], prompts=prompts)
    return render_loaded(loaded, pm, registry, progress=progress, callbacks=callbacks, resume=state)
