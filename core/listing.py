"""``pixloom list``: every registered plugin, its docstring and its parameters."""
from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap

from .manager import build_registry, create_plugin_manager

PLURALS = {"generator": "generators", "perceptor": "perceptors", "loss": "losses",
           "augmentation": "augmentations", "output": "outputs"}
_FIELD_COMMENT = re.compile(r"^\s*(\w+)\s*:[^#]*#\s*(.+)$")


def param_comments(params_cls) -> dict:
    """The ``# comment`` after each field of a Params dataclass, from its source."""
    try:
        source = inspect.getsource(params_cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for line in source.splitlines():
        m = _FIELD_COMMENT.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return "(required)"


def _type_name(t) -> str:
    return t if isinstance(t, str) else getattr(t, "__name__", str(t)).replace("typing.", "")


def describe_class(cls) -> str:
    doc = inspect.getdoc(cls) or ""
    lines = [f"  {cls.name}  (v{cls.version}, {cls.__module__})"]
    if doc:
        lines += textwrap.indent(doc, "      ").splitlines()
    comments = param_comments(cls.Params)
    fields = dataclasses.fields(cls.Params)
    if fields:
        lines.append("      params:")
    for f in fields:
        note = f"  # {comments[f.name]}" if f.name in comments else ""
        lines.append(f"        {f.name}: {_type_name(f.type)} = {_default(f)!r}{note}")
    return "\n".join(lines)


def describe_plugins(plugins_dirs=(), kind: str | None = None) -> str:
    registry = build_registry(create_plugin_manager(plugins_dirs=plugins_dirs))
    blocks = []
    for k, table in registry.classes.items():
        if kind and k != kind:
            continue
        blocks.append(f"{PLURALS[k]}:")
        blocks += [describe_class(cls) for _, cls in sorted(table.items())]
        blocks.append("")
    return "\n".join(blocks).rstrip()
