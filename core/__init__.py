"""pixloom: CLIP-guided generative art driven by pluggy plugins."""

__version__ = "0.1.0"

__all__ = ["__version__", "render"]


def render(preset=None, **kwargs):
    """Render a preset and return a :class:`pixloom.state.RenderResult`.

    ``preset`` is a path, a shipped preset name, or a dict; keyword arguments are
    overrides (``steps=50``, ``run__lr=0.05``, ``**{"losses.0.weight": 2}``) and
    the options of :func:`pixloom.api.render` (prompts, callbacks, resume, ...).
    """
    from .api import render as _render

    return _render(preset, **kwargs)
