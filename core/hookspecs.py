"""The hooks pixloom calls, and what plugins may implement.

Every hook is called with keyword arguments only. An implementation may accept
fewer arguments than the spec names (pluggy passes only those it asks for), so
arguments are only ever added here, never renamed or removed.

Registration hooks return plugin *classes*; a preset names a class by its
``name`` attribute and passes ``params`` validated against the class's
``Params`` dataclass. Lifecycle hooks see one :class:`pixloom.state.State`.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("pixloom")
hookimpl = pluggy.HookimplMarker("pixloom")


@hookspec
def pixloom_register_generators():
    """Return a list of generator classes (subclasses of
    :class:`pixloom.interfaces.Generator`): parameters that synthesise an image.

    Not firstresult: every plugin's lists are gathered; two classes with the
    same ``name`` are an error naming both.
    """


@hookspec
def pixloom_register_perceptors():
    """Return a list of perceptor classes (:class:`pixloom.interfaces.Perceptor`):
    models that embed images and texts into one space (CLIP and kin).

    Not firstresult: every plugin's lists are gathered.
    """


@hookspec
def pixloom_register_losses():
    """Return a list of loss classes (:class:`pixloom.interfaces.Loss`), each
    scoring one step's image, crops and embeddings with a scalar to minimise.

    Not firstresult: every plugin's lists are gathered.
    """


@hookspec
def pixloom_register_augmentations():
    """Return a list of augmentation classes (:class:`pixloom.interfaces.Augmentation`)
    that cut one image into a batch of crops at the perceptors' input size.

    Not firstresult: every plugin's lists are gathered.
    """


@hookspec
def pixloom_register_outputs():
    """Return a list of output classes (:class:`pixloom.interfaces.Output`) that
    write what a run makes (PNG, frames, GIF, MP4, plots).

    Not firstresult: every plugin's lists are gathered.
    """


@hookspec
def pixloom_run_start(state):
    """Called once after every plugin is built and before the first step.

    :param state: the :class:`pixloom.state.State` of the run (``step`` is 0,
        ``image`` is the generator's initial image).

    Not firstresult, not historic; return values are ignored.
    """


@hookspec
def pixloom_step(state):
    """Called after every optimisation step.

    :param state: the :class:`pixloom.state.State`: ``step`` (1-based count of
        steps taken), ``image`` (detached, [1, 3, H, W] in 0..1), ``losses``
        (name -> weighted float), ``parameters`` (the generator's tensors),
        ``frame`` (animation frame index, 0 for a still), ``lr`` (the rate this
        step used: the base rate times the schedule's factor). An
        implementation may change the state in place (set ``state.stop = True``
        to end the run, or ``state.lr`` to change the learning rate; the
        schedule goes on scaling the new rate) or return a State, which replaces it.

    Not firstresult: every implementation is called; the last State returned wins.
    """


@hookspec
def pixloom_run_end(state, result):
    """Called once after the last step and after the outputs were written.

    :param state: the final :class:`pixloom.state.State`.
    :param result: the :class:`pixloom.state.RenderResult` about to be returned
        (final image, loss history, written files).

    Not firstresult, not historic; return values are ignored.
    """
