"""Subcommands beyond render/list/presets, each in its own module, added here."""
from __future__ import annotations


def add_commands(sub, common) -> None:
    """Add the extra subcommands to the ``pixloom`` parser."""
