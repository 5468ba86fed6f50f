"""The optimisation loop. It talks only to the plugin interfaces: it knows
nothing of CLIP, VQGAN or pixels (minGPT's trainer "has nothing to do with GPT")."""
from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .device import pick_device, rng_states, seed_everything, set_rng_states
from .errors import EXIT_INTERRUPTED, PixloomError, PluginError, RunError
from .files import ensure_output_dir
from .interfaces import BuildContext
from .manager import Registry, call_hook
from .models import sharing_loads
from .optim import build_optimizer, lr_factor, set_lr
from .perf import configure as configure_perf
from .preset import LoadedPreset, params_to_dict, validate_params
from .state import RenderResult, State
from .step import StepInputs, run_step  # noqa: F401 (StepInputs: pixloom.loop.StepInputs)


@dataclass
class Run:
    """Every plugin instance of one render, built from a preset."""

    generator: object
    perceptors: dict
    augment: object
    losses: list  # (label, weight, Loss)
    outputs: list
    resolved: object  # the fully resolved preset (DictConfig)
    device: torch.device
    cut_size: int
    stem: str
    out_dir: Path
    extra: dict = field(default_factory=dict)
    perf: object = None  # pixloom.perf.Perf: precision and crop batch


def _labels(entries) -> list:
    names = [e.label or e.name for e in entries]
    out = []
    for i, n in enumerate(names):
        out.append(n if names.count(n) == 1 else f"{n}#{i}")
    return out


def loss_labels(cfg) -> list:
    """The labels of a preset's losses, as the step's terms name them."""
    return _labels(cfg.losses)


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "render"


def run_prompts(cfg) -> list:
    """The run's text prompts: those of the first loss that has any (the clip
    loss's, as the preset or ``--prompt`` gave them, weights included)."""
    for loss in cfg.losses:
        prompts = (loss.params or {}).get("prompts") if isinstance(loss.params, dict) or OmegaConf.is_dict(loss.params) else None
        if prompts:
            return list(OmegaConf.to_container(prompts) if OmegaConf.is_config(prompts) else prompts)
    return []


def output_stem(cfg) -> str:
    if cfg.output.name:
        return _slug(str(cfg.output.name))
    prompts = run_prompts(cfg)
    if prompts:
        first = prompts[0]
        first = str(first.get("text", "render")) if isinstance(first, dict) else str(first)
        return _slug(first.rsplit(":", 1)[0] if re.search(r":\s*-?[\d.]+$", first) else first)
    return "render"


def _construct(registry: Registry, kind: str, spec, where: str, ctx: BuildContext, source: str):
    cls = registry.get(kind, spec.name) if spec.name in registry.classes[kind] else None
    if cls is None:
        choices = ", ".join(registry.names(kind)) or "none"
        raise PluginError(f"{source}: {where}.name: unknown {kind} plugin {spec.name!r} (available: {choices})")
    params = validate_params(cls.Params, spec.params, f"{source}: {where}.params", f"{kind} '{spec.name}'")
    try:
        instance = cls(params, ctx)
    except PixloomError as exc:
        raise type(exc)(f"{source}: {where} ({kind} '{spec.name}'): {exc}", exc.exit_code) from exc
    except (ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise PluginError(f"{source}: {where} ({kind} '{spec.name}'): {exc}") from exc
    return instance, params


def build_run(loaded: LoadedPreset, registry: Registry) -> Run:
    cfg = loaded.cfg
    source = loaded.source
    device = pick_device(cfg.run.device)
    width, height = (int(s) for s in cfg.run.size)
    out_dir = Path(cfg.output.dir).expanduser()
    resolved = OmegaConf.create(OmegaConf.to_container(cfg))

    stem = output_stem(cfg)
    # one list shared by every plugin: an animation updates it in place when its prompts change
    prompts = run_prompts(cfg)

    def ctx(label=""):
        return BuildContext(size=(width, height), device=device, seed=int(cfg.run.seed),
                            out_dir=out_dir, preset_dir=loaded.directory, label=label,
                            extra={"save_every": int(cfg.output.save_every), "stem": stem,
                                   "prompts": prompts})

    generator, gp = _construct(registry, "generator", cfg.generator, "generator", ctx("generator"), source)
    resolved.generator.params = params_to_dict(gp)
    generator.to(device)

    perceptors = {}
    for i, (label, spec) in enumerate(zip(_labels(cfg.perceptors), cfg.perceptors)):
        p, pp = _construct(registry, "perceptor", spec, f"perceptors.{i}", ctx(label), source)
        resolved.perceptors[i].params = params_to_dict(pp)
        perceptors[label] = p.to(device).eval().requires_grad_(False)
    cut_size = max((p.input_size for p in perceptors.values()), default=64)

    augment, ap = _construct(registry, "augmentation", cfg.augment, "augment", ctx("augment"), source)
    resolved.augment.params = params_to_dict(ap)
    augment.to(device)

    losses = []
    for i, (label, spec) in enumerate(zip(_labels(cfg.losses), cfg.losses)):
        loss, lp = _construct(registry, "loss", spec, f"losses.{i}", ctx(label), source)
        resolved.losses[i].params = params_to_dict(lp)
        losses.append((label, float(spec.weight), loss.to(device)))

    outputs = []
    for i, entry in enumerate(cfg.output.plugins):
        if isinstance(entry, str):
            entry = OmegaConf.create({"name": entry, "params": {}})
        elif OmegaConf.is_dict(entry):
            entry = OmegaConf.merge({"name": "???", "params": {}}, entry)
        else:
            raise PluginError(f"{source}: output.plugins.{i}: must be a name or {{name, params}}")
        out, op = _construct(registry, "output", entry, f"output.plugins.{i}", ctx(entry.name), source)
        resolved.output.plugins[i] = {"name": entry.name, "params": params_to_dict(op)}
        outputs.append(out)

    run = Run(generator, perceptors, augment, losses, outputs, resolved, device, cut_size, stem, out_dir,
              extra={"prompts": prompts})
    run.perf = configure_perf(run, cfg.run)
    return run


def setup_loss(run: Run, index: int) -> None:
    """Run loss ``index``'s ``setup`` (prompt embeddings and other constants)."""
    label, _, loss = run.losses[index]
    try:
        loss.setup(run.perceptors)
    except PixloomError:
        raise
    except Exception as exc:
        raise PluginError(f"loss {label} ({type(loss).__module__}) raised in setup: "
                          f"{type(exc).__name__}: {exc}", exit_code=3) from exc


def setup_losses(run: Run) -> None:
    for index in range(len(run.losses)):
        setup_loss(run, index)


def _progress_bar(total: int, enabled: bool, desc: str | None = None):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                unit="step", leave=False, desc=desc)


class Interrupted(Exception):
    """Raised between steps after a Ctrl-C: the step count reached is complete."""

    def __init__(self, step: int):
        super().__init__(f"interrupted after step {step}")
        self.step = step


class InterruptGuard:
    """Turns the first SIGINT into a request to stop at the next step boundary
    (so the saved state is consistent); a second SIGINT interrupts at once."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.requested:
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _snapshot(params) -> list:
    return [p.detach().clone() for p in params]


@torch.no_grad()
def _restore(params, snapshot) -> None:
    for p, saved in zip(params, snapshot):
        p.copy_(saved)


def initial_state(run: Run, cfg, steps: int, frame: int = 0, start_step: int = 0) -> State:
    return State(step=start_step, total_steps=steps, image=run.generator.to_image(),
                 parameters=[p for p in run.generator.parameters() if p.requires_grad],
                 frame=frame, lr=float(cfg.run.lr), seed=int(cfg.run.seed), device=str(run.device),
                 out_dir=run.out_dir, preset=run.resolved)


def make_optimizer(run: Run, cfg):
    params = [p for p in run.generator.parameters() if p.requires_grad]
    if not params:
        raise PluginError(f"generator {run.generator.name} has no trainable parameters")
    return build_optimizer(cfg.run.optimizer, params, float(cfg.run.lr), cfg.run.optimizer_params)


def optimize(run: Run, pm, cfg, *, steps: int, frame: int = 0, progress: bool = True,
             callbacks=(), history: list | None = None, optimizer=None, start_step: int = 0,
             guard: InterruptGuard | None = None, state: State | None = None, stop_at: int | None = None,
             hooks: bool = True, label: str | None = None) -> tuple:
    """Run steps ``start_step``..``steps`` of ``run``'s generator (or only up to
    ``stop_at``, with every schedule still spread over ``steps``); return (state, history).
    ``hooks=False`` calls no ``pixloom_step`` hook and no output (a candidate start).

    Raises :class:`Interrupted` between steps when ``guard`` saw a Ctrl-C, and
    :class:`RunError` when a loss or a parameter stops being finite (after
    putting the parameters back to the last finite step's, unless
    ``run.on_nan: recover`` asks to halve the learning rate and go on).
    """
    history = [] if history is None else history
    optimizer = optimizer or make_optimizer(run, cfg)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sync_every = 1 if run.device.type == "cpu" else 10
    recover = cfg.run.get("on_nan", "stop") == "recover"
    recoveries = 0
    pending = []
    good = _snapshot(params)
    state = state or initial_state(run, cfg, steps, frame=frame, start_step=start_step)
    state.parameters = params
    # state.lr enters as the base rate; each step it shows the rate that step used
    # (base x schedule factor). A callback that changes it sets a new base rate.
    base_lr = float(state.lr)
    end = steps if stop_at is None else min(steps, stop_at)
    bar = _progress_bar(steps, progress, label)
    bar.update(start_step)
    try:
        step = start_step
        while step < end:
            factor = lr_factor(cfg.run.schedule, step, steps)
            state.lr = base_lr * factor
            state.extra["base_lr"] = base_lr
            set_lr(optimizer, state.lr)
            run.generator.before_step(step, steps)
            image, total, terms = run_step(run, optimizer, step, steps, frame)  # forward and backward
            optimizer.step()
            run.generator.after_step()
            pending.append({"total": total, **terms})  # detached: synced every sync_every steps
            step += 1
            state.step = step
            state.image = image.detach()
            if step % sync_every == 0 or step == end:
                rows = [{k: float(v) for k, v in row.items()} for row in pending]
                pending.clear()
                problem = _nonfinite(rows, params)
                if problem:
                    _restore(params, good)
                    if not recover or recoveries >= 5:
                        raise RunError(f"{problem} at step {step}; stopped at the last good image "
                                       f"(lower run.lr or that loss's weight, or set run.on_nan=recover)")
                    recoveries += 1
                    base_lr /= 2
                    state.lr = base_lr * factor
                    state.extra["base_lr"] = base_lr
                    optimizer.state.clear()
                    step = max(start_step, step - len(rows))
                    state.step = step
                    continue
                history.extend(rows)
                good = _snapshot(params)
                state.losses = dict(history[-1])
                bar.set_postfix({k: f"{v:.4f}" for k, v in state.losses.items()}, refresh=False)
            bar.update(1)
            for fn in callbacks:
                new = fn(state)
                if isinstance(new, State):
                    state = new
            for new in (call_hook(pm, "pixloom_step", state=state) or ()) if hooks else ():
                if isinstance(new, State):
                    state = new
            if state.lr != base_lr * factor:  # a callback or hook changed the rate
                base_lr = state.lr / factor if factor > 0 else state.lr
                state.extra["base_lr"] = base_lr
            for out in run.outputs if hooks else ():
                out.on_step(state)
            if state.stop:
                break
            if guard is not None and guard.requested and not pending:
                raise Interrupted(step)
    finally:
        bar.close()
    return state, history


def _nonfinite(rows: list, params) -> str | None:
    """What went bad in these steps' losses or the parameters, or None."""
    for row in rows:
        bad = [k for k, v in row.items() if k != "total" and not math.isfinite(v)]
        if bad:
            return f"loss {bad[0]} became {row[bad[0]]}"
        if not math.isfinite(row["total"]):
            return f"the total loss became {row['total']}"
    for p in params:
        if not bool(torch.isfinite(p).all()):
            return "the generator's parameters became NaN or infinite"
    return None


def to_pil(tensor: torch.Tensor):
    from PIL import Image

    array = (tensor[0].detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def run_plugin_versions(run: Run) -> dict:
    """{"kind/name": version} of the plugins one run used."""
    used = [run.generator, *run.perceptors.values(), run.augment, *(l for _, _, l in run.losses), *run.outputs]
    return {f"{p.kind}/{p.name}": str(p.version) for p in used}


def _finish(run: Run, pm, state: State, history: list, started: float) -> RenderResult:
    final = run.generator.to_image().float().cpu()
    result = RenderResult(image=to_pil(final), tensor=final, history=history, preset=run.resolved,
                          seed=int(run.resolved.run.seed), steps=state.step, plugins=run_plugin_versions(run))
    result.seconds = time.perf_counter() - started
    result.candidates = run.extra.get("candidates")
    for out in run.outputs:
        result.files.extend(out.on_end(state, result) or [])
    return result


def _begin(loaded: LoadedPreset, registry: Registry, seed: int) -> tuple:
    """Build a run of ``loaded`` with run seed ``seed`` as a plain render starts: (run, optimizer, cfg)."""
    cfg = loaded.cfg
    if int(cfg.run.seed) != seed:
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        cfg.run.seed = seed
        loaded = LoadedPreset(cfg, loaded.source, loaded.directory)
    seed_everything(seed)
    run = build_run(loaded, registry)
    ensure_output_dir(run.out_dir)  # before the work, not after it
    setup_losses(run)
    seed_everything(seed)
    return run, make_optimizer(run, cfg), cfg


def candidate_score(history: list, select_by, window: int = 5) -> float:
    """A candidate's score (lower is better): the mean over its last ``window``
    steps of the ``select_by`` terms' sum (empty: the total loss)."""
    rows = history[-window:]
    if not rows:
        return math.inf
    return sum(sum(row[k] for k in select_by) if select_by else row["total"] for row in rows) / len(rows)


class Selection:
    """Best of ``run.candidates`` starts: run seed + i for i < candidates each runs
    ``candidate_steps`` steps (schedules as in the whole run), and the start whose
    ``select_by`` losses are lowest over its last steps goes on to the end. The
    winner continues with its own random state, so the result is the pixels a
    plain render with the winning seed makes; its resolved preset says that seed,
    with ``candidates: 1``. A start whose losses stop being finite is left out
    (its score is None); when every start fails, the last one's error stands."""

    def __init__(self, loaded: LoadedPreset, registry: Registry, steps: int):
        self.loaded, self.registry, self.steps = loaded, registry, steps
        self.current = None  # (run, optimizer, cfg, state, history): the start being optimised

    def run(self, pm, guard, progress: bool) -> tuple:
        cfg = self.loaded.cfg
        base, count = int(cfg.run.seed), int(cfg.run.candidates)
        k = min(int(cfg.run.candidate_steps), self.steps)
        by = list(cfg.run.select_by)
        best, scores, failed = None, [], None
        with sharing_loads():  # the starts share each model: one load, one copy
            for i in range(count):
                run, optimizer, run_cfg = _begin(self.loaded, self.registry, base + i)
                state = initial_state(run, run_cfg, self.steps)
                self.current = (run, optimizer, run_cfg, state, [])
                try:
                    state, history = optimize(run, pm, run_cfg, steps=self.steps, progress=progress,
                                              history=self.current[4], optimizer=optimizer, guard=guard, state=state,
                                              stop_at=k, hooks=False, label=f"start {i + 1}/{count} (seed {base + i})")
                except RunError as exc:  # a start whose losses stop being finite is left out
                    failed = exc
                    scores.append(None)
                    continue
                state.lr = state.extra.get("base_lr", state.lr)  # the base rate, for the rest of the run
                self.current = (run, optimizer, run_cfg, state, history)
                score = candidate_score(history, by)
                scores.append(round(score, 6))
                if best is None or score < best[0]:
                    best = (score, (run, optimizer, run_cfg, state, history), rng_states(run.device))
        if best is None:
            raise failed  # every start failed: the render stops at the last one's last good image
        _, chosen, rng = best
        set_rng_states(rng)
        self.current = chosen
        run = chosen[0]
        run.resolved.run.candidates = 1
        run.extra["candidates"] = {"seeds": [base + i for i in range(count)], "steps": k,
                                   "select_by": by or ["total"], "scores": scores,
                                   "chosen": int(run.resolved.run.seed)}
        return chosen

    def take_current(self) -> tuple:
        """The start being optimised when a Ctrl-C or a failure stopped the choosing,
        made the render's own: its recipe says its seed with ``candidates: 1``."""
        run, _, _, state, _ = self.current
        run.resolved.run.candidates = 1
        for out in run.outputs:
            out.on_start(state)
        return self.current


def render_loaded(loaded: LoadedPreset, pm, registry: Registry, *, progress=None, callbacks=(),
                  resume=None) -> RenderResult:
    """Render a loaded preset: build the plugins, optimise, write the outputs.

    With ``run.candidates`` > 1 the render is the best of that many starts
    (:class:`Selection`). A Ctrl-C stops at the next step boundary, writes the
    image so far and a resume file, and raises a PixloomError with exit code
    130; ``resume`` (a :class:`pixloom.resume.ResumeState`) continues such a run exactly.
    """
    from .resume import save_resume

    cfg = loaded.cfg
    started = time.perf_counter()
    steps = int(cfg.run.steps)
    show = bool(cfg.run.progress) if progress is None else progress
    selection = Selection(loaded, registry, steps) if resume is None and int(cfg.run.candidates) > 1 else None
    run = optimizer = state = None
    history = []
    try:
        with InterruptGuard() as guard:
            if selection is not None:
                run, optimizer, cfg, state, history = selection.run(pm, guard, show)
                start = state.step
            else:
                with sharing_loads():  # a model two plugins name (a generator's and a loss's) is loaded once
                    run, optimizer, cfg = _begin(loaded, registry, int(cfg.run.seed))
                start = 0
                if resume is not None:
                    start, history = resume.restore(run, optimizer)
                state = initial_state(run, cfg, steps, start_step=start)
                if resume is not None:
                    state.lr = resume.lr
            call_hook(pm, "pixloom_run_start", state=state)
            for out in run.outputs:
                out.on_start(state)
            state, history = optimize(run, pm, cfg, steps=steps, progress=show, callbacks=callbacks,
                                      history=history, optimizer=optimizer, start_step=start,
                                      guard=guard, state=state)
    except Interrupted as stop:
        if run is None and selection is not None:  # stopped while choosing: the start in progress
            run, optimizer, cfg, state, history = selection.take_current()
        state.step = stop.step
        result = _finish(run, pm, state, history, started)
        saved = save_resume(run, optimizer, state, history, steps)
        shown = result.files[0] if result.files else "nothing"
        raise PixloomError(f"interrupted at step {stop.step}/{steps}: saved {shown} and {saved}; "
                           f"continue with: pixloom render --resume {saved}", EXIT_INTERRUPTED) from None
    except RunError as exc:
        if run is None and selection is not None and selection.current is not None:
            run, optimizer, cfg, state, history = selection.take_current()  # every start failed: the last one
        if run is None:
            raise
        state.image = run.generator.to_image()
        result = _finish(run, pm, state, history, started)
        shown = f"; the last good image is {result.files[0]}" if result.files else ""
        raise RunError(f"{exc}{shown}") from exc
    result = _finish(run, pm, state, history, started)
    call_hook(pm, "pixloom_run_end", state=state, result=result)
    return result
