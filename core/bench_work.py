"""What ``pixloom bench`` times: a preset's pipeline step by step, the same
work done by hand (the bare step), and renders checked by the judge."""
from __future__ import annotations

import gc
import re
import statistics
import time

import torch
import torch.nn.functional as F

from .device import seed_everything
from .loop import build_run, setup_losses, initial_state, make_optimizer, optimize
from .perf import _autocast
from .preset import load_preset

QUIET = ["run.progress=false", "output.plugins=[]", "output.save_every=0"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak resident memory (VmHWM, reset through /proc/self/clear_refs where Linux
    allows it) and CUDA max allocated, over a ``with`` block, in MiB."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_mib = None
        self.cuda_mib = None

    @staticmethod
    def _hwm() -> int | None:
        try:
            with open("/proc/self/status") as f:
                m = re.search(r"VmHWM:\s+(\d+)", f.read())
            return int(m.group(1)) * 1024 if m else None
        except OSError:
            return None

    def __enter__(self):
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc):
        hwm = self._hwm()
        if hwm is None:
            import resource

            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.rss_mib = round(hwm / 2**20, 1)
        if self.device.type == "cuda":
            self.cuda_mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return False


class Pipeline:
    """A preset built once and stepped on demand through :func:`pixloom.loop.optimize`."""

    def __init__(self, preset, pm, registry, overrides=(), prompts=None):
        self.pm = pm
        started = time.perf_counter()
        self.loaded = load_preset(preset, [*overrides, *QUIET], prompts=prompts)
        self.cfg = self.loaded.cfg
        seed_everything(int(self.cfg.run.seed))
        self.run = build_run(self.loaded, registry)
        setup_losses(self.run)
        self.optimizer = make_optimizer(self.run, self.cfg)
        self.steps_total = int(self.cfg.run.steps)
        self.state = initial_state(self.run, self.cfg, self.steps_total)
        self.done = 0
        self.history = []
        sync(self.run.device)
        self.setup_s = time.perf_counter() - started

    @property
    def device(self) -> torch.device:
        return self.run.device

    def step(self, k: int = 1, callbacks=()) -> float:
        """Run k steps; return their seconds."""
        started = time.perf_counter()
        self.state, _ = optimize(self.run, self.pm, self.cfg, steps=self.done + k, start_step=self.done,
                                 progress=False, optimizer=self.optimizer, state=self.state,
                                 history=self.history, callbacks=callbacks)
        sync(self.device)
        self.done += k
        return time.perf_counter() - started

    def crop_count(self) -> int:
        with torch.no_grad():
            return int(self.run.augment(self.run.generator.to_image(), self.run.cut_size).shape[0])

    def bare_step(self, n_crops: int) -> None:
        """The same model work by hand: generator forward and backward, and one batched
        forward and backward per perceptor over n_crops crops of its input size."""
        run = self.run
        run.generator.before_step(self.done, self.steps_total)  # e.g. dalle's Gumbel sampling, as in a step
        image = run.generator.synth()
        total = 0
        with _autocast(run):
            for perceptor in run.perceptors.values():
                s = perceptor.input_size
                crops = F.interpolate(image, size=(s, s), mode="bilinear", align_corners=False)
                total = total + perceptor.encode_image(crops.expand(n_crops, -1, -1, -1)).float().square().mean()
        total.backward()
        run.generator.after_step()
        for p in run.generator.parameters():
            p.grad = None

    def bare(self, k: int, n_crops: int) -> float:
        started = time.perf_counter()
        for _ in range(k):
            self.bare_step(n_crops)
        sync(self.device)
        return time.perf_counter() - started


def overhead(pipe: Pipeline, rounds: int, k: int) -> dict:
    """Pipeline and bare seconds a step, interleaved round by round (so that other
    load on the machine falls on both alike); the ratio of their medians."""
    n = pipe.crop_count()
    pipe.bare(1, n)
    pipe.step(1)
    bare, full = [], []
    for _ in range(rounds):
        bare.append(pipe.bare(k, n) / k)
        full.append(pipe.step(k) / k)
    mb, mf = statistics.median(bare), statistics.median(full)
    return {"crops": n, "bare_s_per_step": round(mb, 5), "pipeline_s_per_step": round(mf, 5),
            "overhead_ratio": round(mf / mb, 3), "overhead_ratio_min": round(min(full) / min(bare), 3),
            "rounds": rounds, "steps_per_round": k}


def breakdown(pipe: Pipeline, k: int) -> dict:
    """Milliseconds of each part of a step, each timed alone (forward and backward,
    mean of ``k`` calls, best of 3 rounds) on the run's current image and crops: the
    generator, the augmentation, the perceptors over the step's crops, each loss on
    fixed embeddings, and the optimiser's update. What the pipeline spends beyond
    the bare step is the augmentation, the losses, the optimiser and the loop."""
    from .step import StepInputs

    run = pipe.run
    params = [p for p in run.generator.parameters() if p.requires_grad]
    image = run.generator.synth().detach().requires_grad_(True)
    crops = run.augment(image, run.cut_size).detach()

    def timed(fn) -> float:
        seconds = best_of_3(fn, k, run.device)
        for t in (*params, image):
            t.grad = None
        return round(seconds * 1e3, 3)

    def generator():
        run.generator.synth().float().sum().backward()

    def perceptors():
        leaf = crops.clone().requires_grad_(True)
        inputs = StepInputs(image, 0, 1, 0, run.augment, run.perceptors, run.cut_size, leaf)
        with _autocast(run):
            total = sum(inputs.embeddings(label).float().square().mean() for label in run.perceptors)
        total.backward()

    fixed = StepInputs(image, 0, 1, 0, run.augment, run.perceptors, run.cut_size, crops)
    with torch.no_grad(), _autocast(run):
        embeddings = {label: fixed.embeddings(label).float() for label in run.perceptors}

    def loss_fn(loss):
        def once():
            inputs = StepInputs(image, pipe.done, pipe.steps_total, 0, run.augment, run.perceptors,
                                run.cut_size, crops.clone().requires_grad_(True))
            inputs._embeddings = {label: e.clone().requires_grad_(True) for label, e in embeddings.items()}
            with _autocast(run):
                value = loss(inputs)
            if torch.is_tensor(value) and value.requires_grad:
                value.float().backward()
        return once

    def optimizer_step():
        for p in params:
            p.grad = torch.zeros_like(p)
        pipe.optimizer.step()

    parts = {"generator": timed(generator),
             "augmentation": round(time_augmentation(run, run.augment, k) * 1e3, 3),
             "perceptors": timed(perceptors)}
    for label, weight, loss in run.losses:
        if weight != 0:
            parts[f"loss {label}"] = timed(loss_fn(loss))
    parts["optimizer"] = timed(optimizer_step)
    return parts


def time_to_recognisable(preset, pm, registry, judge, prompts, check_every: int, max_steps: int | None,
                         overrides=(), log=print) -> list:
    """For each (caption, form): optimisation seconds (judge time left out) until the
    judge first ranks the caption top-1, checked every ``check_every`` steps."""
    from .evaluate import judge_rank

    cache, out = {}, []
    for i, (caption, form) in enumerate(prompts):
        extra = [f"run.steps={max_steps}"] if max_steps else []
        pipe = Pipeline(preset, pm, registry, overrides=[*overrides, *extra], prompts=[caption])
        clock = {"judge": 0.0, "found": None, "ranks": []}
        started = time.perf_counter()

        def check(state):
            if state.step % check_every and state.step != state.total_steps:
                return None
            sync(pipe.device)
            t0 = time.perf_counter()
            rank, n, _ = judge_rank(judge, state.image, caption, form, cache)
            clock["ranks"].append(rank)
            clock["candidates"] = n
            if rank == 1:
                clock["found"] = (t0 - started - clock["judge"], state.step)
                state.stop = True
            clock["judge"] += time.perf_counter() - t0
            return state

        pipe.step(pipe.steps_total, callbacks=[check])
        seconds, step = clock["found"] or (None, None)
        ranks = clock["ranks"]
        out.append({"prompt": caption, "seconds": None if seconds is None else round(seconds, 2), "step": step,
                    "setup_s": round(pipe.setup_s, 2), "best_rank": min(ranks, default=None),
                    "last_rank": ranks[-1] if ranks else None, "candidates": clock.get("candidates"),
                    "steps_run": pipe.done})
        log(f"  time to recognisable {i + 1}/{len(prompts)}: "
            f"{'not within %d steps (best rank %s)' % (pipe.steps_total, min(ranks, default='-')) if seconds is None else f'{seconds:.1f} s (step {step})'}"
            f"  {caption}")
        del pipe
    return out


def median_seconds(results: list):
    """Median over prompts, a never-recognised prompt counting as infinitely slow (None
    when more than half were never recognised)."""
    values = sorted(float("inf") if r["seconds"] is None else r["seconds"] for r in results)
    if not values:
        return None
    m = statistics.median(values)
    return None if m == float("inf") else round(m, 2)


def chained_cutouts(p):
    """The cutouts as pixloom made them before their one-resampling rewrite: kornia's
    RandomResizedCrop, then flip, affine, perspective, jitter and noise, each its own
    batched op and resampling. Kept here only for ``pixloom bench``'s comparison."""
    import kornia.augmentation as K

    post = [K.RandomHorizontalFlip(p=p.flip_p)]
    if p.affine_p > 0:
        post.append(K.RandomAffine(degrees=p.degrees, translate=(p.translate, p.translate),
                                   padding_mode="border", p=p.affine_p))
    if p.perspective_p > 0:
        post.append(K.RandomPerspective(distortion_scale=p.distortion, p=p.perspective_p))
    if p.jitter_p > 0:
        post.append(K.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue, p=p.jitter_p))
    if p.noise_p > 0:
        post.append(K.RandomGaussianNoise(std=p.noise_std, p=p.noise_p))
    post = torch.nn.Sequential(*post)
    crops = {}

    def forward(image, cut_size):
        n_over, n_crop = p.overview, p.num - p.overview
        parts = []
        if n_crop:
            if cut_size not in crops:
                crops[cut_size] = K.RandomResizedCrop((cut_size, cut_size), scale=(p.min_scale, p.max_scale),
                                                      cropping_mode="resample", p=1.0)
            parts.append(crops[cut_size](image.expand(n_crop, -1, -1, -1)))
        if n_over:
            whole = F.interpolate(image, size=(cut_size, cut_size), mode="bilinear", align_corners=False,
                                  antialias=True)
            parts.append(whole.expand(n_over, -1, -1, -1))
        return post(torch.cat(parts) if len(parts) > 1 else parts[0]).clamp(0, 1)

    return forward


def time_augmentation(run, augment, steps: int) -> float:
    """Seconds of one forward and backward pass of ``augment`` on the run's image (min of 3 rounds)."""
    image = run.generator.synth().detach().requires_grad_(True)

    def once():
        augment(image, run.cut_size).sum().backward()

    return best_of_3(once, steps, run.device)


def best_of_3(fn, k: int, device: torch.device) -> float:
    """Seconds a call of ``fn`` (after one warm-up call): the best of 3 rounds of ``k`` calls."""
    fn()
    best = float("inf")
    for _ in range(3):
        sync(device)
        started = time.perf_counter()
        for _ in range(k):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - started) / k)
    return best
