"""Errors a user sees as one line, and the exit codes they map to.

docs/exit-codes.md lists every code; keep the two in step.
"""
from __future__ import annotations

import argparse

EXIT_OK = 0
EXIT_FAILURE = 1      # an unexpected internal error (a bug: run with --debug)
EXIT_BAD_INPUT = 2    # a broken preset, an unknown plugin, a bad argument or file
EXIT_RUNTIME = 3      # the run itself failed: a plugin raised, a numerical fault
EXIT_IO = 4           # an output could not be written (disk full, permissions)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); the current state was saved


class PixloomError(Exception):
    """An error with a one-line message meant for the user."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class PresetError(PixloomError):
    """A preset that cannot be loaded or does not validate."""


class PluginError(PixloomError):
    """A plugin that is unknown, clashes with another, or raised inside a hook."""


class CheckpointError(PixloomError):
    """A model file that is missing, corrupt, or refused as unsafe."""


class RunError(PixloomError):
    """A render that failed while running (e.g. a loss became NaN)."""

    exit_code = EXIT_RUNTIME


class OutputError(PixloomError):
    """An output file that could not be written."""

    exit_code = EXIT_IO


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one-line :class:`PixloomError` (exit code 2,
    no usage dump): for the parsers of subcommands such as ``world`` and ``train``."""

    def error(self, message):
        raise PixloomError(f"{message} (see '{self.prog} --help')", EXIT_BAD_INPUT)
