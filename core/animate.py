"""Animations: ``pixloom.animate.animate(preset, **overrides)``.

Frame 0 is optimised from the generator's own start (``animation.first_steps``
steps). Every later frame starts from the previous one moved by the camera
(``pixloom.camera``) and handed back to the generator with
``init_from_image``, then gets ``animation.steps`` steps. Prompts, loss weights,
the learning rate and other numbers may change by frame (``pixloom.keyframes``).

Everything goes through the plugin interfaces and :func:`pixloom.loop.optimize`,
so any generator that implements ``init_from_image`` animates (a latent one
re-encodes the moved frame there). After each frame the generator's tensors
are saved; see :mod:`pixloom.animation_state` for why that is enough to resume
exactly.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

import pixloom

from .animation_config import Animation, check_loss_params, check_settings, parse_animation
from .animation_state import Checkpoint, load_state, save_frame, save_state
from .camera import apply_move
from .device import seed_everything
from .errors import EXIT_INTERRUPTED, OutputError, PixloomError, PresetError, RunError
from .files import ensure_output_dir, make_new_dir
from .loop import (InterruptGuard, Interrupted, Run, build_run, initial_state, optimize, output_stem,
                   run_plugin_versions, setup_loss, to_pil)
from .manager import build_registry, call_hook, create_plugin_manager
from .preset import LoadedPreset, load_preset
from .state import RenderResult

# keyword shortcuts of animate() that differ from render()'s
ANIMATION_SHORTCUTS = {
    "frames": "animation.frames",
    "fps": "animation.fps",
    "steps": "animation.steps",
    "first_steps": "animation.first_steps",
}


@dataclass
class AnimationResult(RenderResult):
    """What :func:`animate` returns: a :class:`pixloom.state.RenderResult` whose
    ``image``/``tensor`` are the last frame, ``history`` one row a frame (its last
    step's losses) and ``steps`` the steps of all frames, plus every frame."""

    frames: list = field(default_factory=list)  # PIL images, one a frame
    frame_losses: list = field(default_factory=list)  # each frame's last step's losses
    fps: float = 12.0
    run_dir: Path | None = None
    resumed_at: int = 0  # the first frame this call rendered (0 unless resumed)


class AnimationInterrupted(PixloomError):
    """Ctrl-C during an animation: the complete frames are saved (exit 130)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, run_dir: Path, frames_done: int):
        super().__init__(message)
        self.run_dir = run_dir
        self.frames_done = frames_done


def result_frames(result) -> list:
    """An animation result's frames (PIL images); a still's image as its one frame."""
    frames = getattr(result, "frames", None)
    return list(frames) if frames else [result.image]


def result_fps(result, default: float = 12.0) -> float:
    return float(getattr(result, "fps", None) or default)


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame ``frame``: ``seed`` itself for frame 0 (so it matches a
    still render), then a 63-bit hash of both."""
    if frame == 0:
        return seed
    digest = hashlib.blake2b(f"pixloom-frame:{seed}:{frame}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _prompt_loss(cfg, animation: Animation, source: str):
    """The index of the loss that keyframed prompts drive (the first ``clip`` loss)."""
    if animation.prompts is None:
        return None
    for i, loss in enumerate(cfg.losses):
        if loss.name == "clip":
            return i
    raise PresetError(f"{source}: animation.prompts: needs a clip loss in losses to drive")


def _with_first_prompts(cfg, animation: Animation, index):
    """A copy of ``cfg`` whose prompt loss has frame 0's prompts (so it validates and names the files)."""
    cfg = copy.deepcopy(cfg)
    if index is not None:
        if not OmegaConf.is_dict(cfg.losses[index].params):
            cfg.losses[index].params = {}
        cfg.losses[index].params.prompts = animation.prompts.first()
    return cfg


class FrameSettings:
    """Applies one frame's keyframed settings and prompts to the run; re-runs a
    loss's ``setup`` (text encoding, never the perceptor) only when its inputs change."""

    def __init__(self, run: Run, cfg, animation: Animation, prompt_loss):
        self.run = run
        self.cfg = cfg
        self.animation = animation
        self.prompt_loss = prompt_loss
        self.weights = [w for _, w, _ in run.losses]
        self._prompts = None

    def apply(self, frame: int) -> tuple:
        """(the run for this frame, its cfg)."""
        weights = list(self.weights)
        cfg = self.cfg
        dirty = set()
        for key, value in self.animation.settings_at(frame).items():
            parts = key.split(".")
            if parts[0] == "run":
                if cfg is self.cfg:
                    cfg = copy.deepcopy(self.cfg)
                current = OmegaConf.select(cfg, key)
                OmegaConf.update(cfg, key, round(value) if isinstance(current, int) else value)
            elif parts[2] == "weight":
                weights[int(parts[1])] = value
            else:
                index, name = int(parts[1]), parts[3]
                params = self.run.losses[index][2].params
                current = getattr(params, name)
                value = round(value) if isinstance(current, int) else value
                if current != value:
                    setattr(params, name, value)
                    dirty.add(index)
        if self.prompt_loss is not None:
            prompts = self.animation.prompts_at(frame)
            if prompts != self._prompts:
                params = self.run.losses[self.prompt_loss][2].params
                params.prompts = [{"text": text, "weight": weight} for text, weight in prompts]
                dirty.add(self.prompt_loss)
                self._prompts = prompts
                shared = self.run.extra.get("prompts")
                if shared is not None:  # the run's prompts, which other plugins may follow
                    shared[:] = params.prompts
                    dirty.update(i for i, (_, _, loss) in enumerate(self.run.losses)
                                 if getattr(loss, "follows_run_prompts", False))
        for index in sorted(dirty):
            setup_loss(self.run, index)
        losses = [(label, w, loss) for (label, _, loss), w in zip(self.run.losses, weights)]
        return dataclasses.replace(self.run, losses=losses, outputs=[]), cfg


def _frames_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                unit="frame", desc="frames")


def _new_run_dir(cfg) -> Path:
    out = ensure_output_dir(Path(cfg.output.dir).expanduser())
    return make_new_dir(out, output_stem(cfg), ".anim")


def _saved(done: int, run_dir: Path) -> str:
    if done == 0:
        return f"no frame was complete ({run_dir})"
    return f"{'frame 0 is' if done == 1 else f'frames 0-{done - 1} are'} saved in {run_dir}"


def _build(loaded: LoadedPreset, cfg, registry, animation: Animation, checkpoint, plugins_dirs) -> tuple:
    """Build the run in its folder (a new one, or the checkpoint's); return (run, its cfg,
    info, frames, last frame tensor or None). A new folder that a bad preset leaves
    empty is removed again."""
    run_dir = checkpoint.run_dir if checkpoint else _new_run_dir(cfg)
    run_cfg = copy.deepcopy(cfg)
    run_cfg.output.dir = str(run_dir)
    try:
        seed_everything(int(cfg.run.seed))
        run = build_run(LoadedPreset(run_cfg, loaded.source, loaded.directory), registry)
        check_loss_params(animation, run.losses, loaded.source)
        for index in range(len(run.losses)):
            setup_loss(run, index)
        info = {
            "preset": OmegaConf.to_yaml(loaded.cfg),
            "source": loaded.source,
            "preset_dir": str(loaded.directory) if loaded.directory else None,
            "plugins_dirs": [str(Path(d).resolve()) for d in plugins_dirs],
            "frames": animation.frames,
            "frames_done": 0,
            "frame_losses": [],
            "steps": 0,
            "complete": False,
            "pixloom": pixloom.__version__,
            "plugins": run_plugin_versions(run),
        }
        if checkpoint is None:
            save_state(run_dir, run.generator, info)
            return run, run_cfg, info, [], None
    except BaseException:
        if checkpoint is None and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    checkpoint.restore(run.generator)
    info.update(frames_done=checkpoint.frames_done, frame_losses=checkpoint.info.get("frame_losses", []),
                steps=checkpoint.info.get("steps", 0))
    return run, run_cfg, info, checkpoint.load_frames(), checkpoint.last_frame


def animate_loaded(loaded: LoadedPreset, pm, registry, *, progress=None, callbacks=(),
                   checkpoint: Checkpoint | None = None, plugins_dirs=()) -> AnimationResult:
    """Animate a loaded preset (or go on with ``checkpoint``); see the module docstring.
    ``plugins_dirs`` are only recorded, for a later resume."""
    started = time.perf_counter()
    source = loaded.source
    animation = parse_animation(loaded.cfg.animation, source)
    prompt_loss = _prompt_loss(loaded.cfg, animation, source)
    cfg = _with_first_prompts(loaded.cfg, animation, prompt_loss)
    check_settings(animation, cfg, source)
    seed = int(cfg.run.seed)
    run, run_cfg, info, frames, last = _build(loaded, cfg, registry, animation, checkpoint, plugins_dirs)
    run_dir, done = run.out_dir, info["frames_done"]
    settings = FrameSettings(run, run_cfg, animation, prompt_loss)

    about = {"frames": animation.frames, "fps": animation.fps, "run_dir": run_dir}
    state = initial_state(run, run_cfg, animation.steps_for(done), frame=min(done, animation.frames - 1))
    state.extra["animation"] = about
    call_hook(pm, "pixloom_run_start", state=state)
    for out in run.outputs:
        out.on_start(state)
    show = bool(cfg.run.progress) if progress is None else progress
    bar = _frames_bar(animation.frames, done, show)
    frame = done
    try:
        with InterruptGuard() as guard:
            for frame in range(done, animation.frames):
                frame_run, frame_cfg = settings.apply(frame)
                seed_everything(frame_seed(seed, frame))
                if frame > 0:  # the last frame as it was saved, not re-synthesised: exact on resume
                    moved = apply_move(last.to(run.device), animation.move(frame))
                    run.generator.init_from_image(moved)
                steps = animation.steps_for(frame)
                state = initial_state(frame_run, frame_cfg, steps, frame=frame)
                state.extra["animation"] = about
                state, _ = optimize(frame_run, pm, frame_cfg, steps=steps, frame=frame, progress=show,
                                    callbacks=callbacks, guard=guard, state=state)
                last = run.generator.to_image().float().cpu()
                state.image = last
                for out in run.outputs:
                    out.on_frame(state)
                picture = to_pil(last)
                save_frame(run_dir, frame, picture)
                frames.append(picture)
                info["frame_losses"].append(dict(state.losses))
                info["steps"] += state.step
                info["frames_done"] = frame + 1
                save_state(run_dir, run.generator, info, last)
                bar.set_postfix({k: f"{v:.4f}" for k, v in state.losses.items()}, refresh=False)
                bar.update(1)
                if guard.requested and frame + 1 < animation.frames:
                    raise Interrupted(state.step)
    except (Interrupted, KeyboardInterrupt):
        bar.close()
        raise AnimationInterrupted(f"interrupted during frame {frame} of {animation.frames}: "
                                   f"{_saved(info['frames_done'], run_dir)}; "
                                   f"continue with: pixloom animate --resume {run_dir}",
                                   run_dir, info["frames_done"]) from None
    except RunError as exc:
        bar.close()
        raise RunError(f"frame {frame}: {exc}; {_saved(info['frames_done'], run_dir)}") from exc
    except OutputError as exc:  # e.g. the disk filled up: what was saved before stays, and resumes
        bar.close()
        raise OutputError(f"frame {frame}: {exc}; {_saved(info['frames_done'], run_dir)}; once there is "
                          f"room, continue with: pixloom animate --resume {run_dir}") from exc
    bar.close()

    result = AnimationResult(image=frames[-1], tensor=last, history=list(info["frame_losses"]),
                             preset=run.resolved, seed=seed, steps=info["steps"],
                             plugins=run_plugin_versions(run), frames=frames,
                             frame_losses=list(info["frame_losses"]), fps=animation.fps,
                             run_dir=run_dir, resumed_at=done)
    try:
        for out in run.outputs:
            result.files.extend(out.on_end(state, result) or [])
    except OutputError as exc:
        raise OutputError(f"{exc}; {_saved(info['frames_done'], run_dir)}; once there is room, write the "
                          f"outputs with: pixloom animate --resume {run_dir}") from exc
    info["complete"] = True
    save_state(run_dir, run.generator, info, last)
    result.seconds = time.perf_counter() - started
    call_hook(pm, "pixloom_run_end", state=state, result=result)
    return result


def _overrides(kwargs: dict) -> list:
    from .api import keyword_overrides

    pairs = [(ANIMATION_SHORTCUTS[k], v) for k, v in kwargs.items() if k in ANIMATION_SHORTCUTS]
    rest = {k: v for k, v in kwargs.items() if k not in ANIMATION_SHORTCUTS}
    return keyword_overrides(rest) + pairs


def animate(preset=None, *, prompts=None, overrides=(), resume=None, plugins_dirs=(), progress=False,
            callbacks=(), entry_points=True, **kwargs) -> AnimationResult:
    """Animate ``preset`` (a path, a shipped name such as ``animation/zoom``, or a
    dict with an ``animation`` block) and return an :class:`AnimationResult`
    (``.frames``, ``.files``, ``.run_dir``).

    Keyword overrides are those of :func:`pixloom.render` (``seed``, ``size``,
    ``out``, ``lr``, any dotted key with ``__`` for the dots), except that
    ``steps`` is ``animation.steps``; ``frames``, ``fps`` and ``first_steps``
    set the animation's too. ``prompts`` replaces the prompt keyframes with
    fixed prompts. ``resume`` (a run folder or its ``state/animation.safetensors``)
    continues an interrupted animation with its saved preset; only ``device``
    may be given with it. ``callbacks`` are called after every step with the
    State (``state.frame`` is the frame); raising KeyboardInterrupt there stops
    like Ctrl-C.
    """
    checkpoint = None
    if resume is not None:
        extra = [k for k in kwargs if k != "device"]
        if preset is not None or prompts or overrides or extra:
            raise PixloomError("animate: --resume goes on with the run's saved preset: give no preset, "
                               "prompts or overrides with it (only --device)")
        checkpoint = load_state(resume)
        if checkpoint.info.get("complete"):
            raise PixloomError(f"animate: --resume {checkpoint.run_dir}: the animation is already complete "
                               f"({checkpoint.frames_done} of {checkpoint.info.get('frames')} frames)")
        import yaml

        preset = yaml.safe_load(checkpoint.info["preset"])
    if preset is None:
        raise PixloomError("animate: give a preset (a file or a shipped name such as animation/zoom) "
                           "or --resume FOLDER")
    over = [*overrides, *_overrides(kwargs)]
    if prompts:
        over.append(("animation.prompts", None))
    if checkpoint is not None:
        info = checkpoint.info
        plugins_dirs = plugins_dirs or info.get("plugins_dirs") or ()
        loaded = load_preset(preset, over, source=info.get("source"))
        loaded = LoadedPreset(loaded.cfg, loaded.source, Path(info["preset_dir"]) if info.get("preset_dir") else None)
    else:
        loaded = load_preset(preset, over, prompts=prompts)
    pm = create_plugin_manager(plugins_dirs=plugins_dirs, entry_points=entry_points)
    registry = build_registry(pm)
    return animate_loaded(loaded, pm, registry, progress=progress, callbacks=callbacks, checkpoint=checkpoint,
                          plugins_dirs=plugins_dirs)
