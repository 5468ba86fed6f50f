"""pixloom: CLIP-guided generative art driven by pluggy plugins."""

__version__ = "0.1.0"

__all__ = ["__version__", "render"]


def render(preset, **overrides):
    """Render a preset and return a :class:`pixloom.loop.RenderResult`.

    ``preset`` is a path, a shipped preset name, or a dict; ``overrides`` are
    dotted keys (``run__steps=50`` or ``**{"run.steps": 50}``) applied on top.
    """
    from .api import render as _render

    return _render(preset, **overrides)
