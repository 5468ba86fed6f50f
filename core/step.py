"""One optimisation step's forward and backward pass.

The losses see a :class:`StepInputs`: the generator's image and, computed on
first use and shared, the augmentation's crops and each perceptor's embeddings
of them. When the crops must go through the perceptors in chunks to fit in
memory (``Run.perf.crop_batch``, see :mod:`pixloom.perf`), each chunk's losses
are back-propagated to the crops alone, and the crops' accumulated gradient
then flows once through the augmentation and the generator. A loss that uses
the crops is a mean over them, so chunk k's value counts n_k / N of it; a loss
that never touches the crops (smoothness) is computed once, with the first chunk.
"""
from __future__ import annotations

import torch

from .errors import PixloomError, PluginError, PresetError, RunError
from .perf import _autocast, plan_crop_batch


class StepInputs:
    """One step's inputs to the losses. Crops and each perceptor's embeddings are
    computed on first use and shared: one batched forward per perceptor a step."""

    def __init__(self, image, step, total_steps, frame, augment, perceptors, cut_size, cutouts=None):
        self.image = image
        self.step = step
        self.total_steps = total_steps
        self.frame = frame
        self.perceptors = perceptors
        self._augment = augment
        self._cut_size = cut_size
        self._cutouts = cutouts
        self._resized = {}
        self._embeddings = {}
        self._used_crops = False  # whether a loss asked for the crops (or their embeddings)

    @property
    def cutouts(self) -> torch.Tensor:
        """[N, 3, s, s]: the step's crops at the largest perceptor input size."""
        self._used_crops = True
        if self._cutouts is None:
            self._cutouts = self._augment(self.image, self._cut_size)
        return self._cutouts

    def cutouts_for(self, label: str) -> torch.Tensor:
        size = self.perceptors[label].input_size
        if size == self._cut_size:
            return self.cutouts
        if size not in self._resized:
            self._resized[size] = torch.nn.functional.interpolate(
                self.cutouts, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        self._used_crops = True
        return self._resized[size]

    def embeddings(self, label: str) -> torch.Tensor:
        """[N, D]: perceptor ``label``'s embeddings of the crops."""
        if label not in self._embeddings:
            self._embeddings[label] = self.perceptors[label].encode_image(self.cutouts_for(label))
        self._used_crops = True
        return self._embeddings[label]


def call_loss(label: str, loss, inputs: StepInputs):
    try:
        return loss(inputs)
    except PixloomError:
        raise
    except Exception as exc:
        if _out_of_memory(exc):
            raise  # run_step retries with fewer crops at a time
        raise PluginError(f"loss {label} ({type(loss).__module__}) raised in forward at step "
                          f"{inputs.step}: {type(exc).__name__}: {exc}", exit_code=3) from exc


def loss_terms(run, inputs: StepInputs) -> dict:
    """{label: weight x loss} of every loss with a non-zero weight."""
    return {label: weight * call_loss(label, loss, inputs) for label, weight, loss in run.losses if weight != 0}


def _no_losses(frame: int):
    where = f" at frame {frame}" if frame else ""
    return PresetError(f"losses: every loss has weight 0{where}, so there is nothing to optimise "
                       f"(give at least one a non-zero weight)")


def _backward(total: torch.Tensor, scale: float) -> None:
    if total.requires_grad:
        (total * scale if scale != 1 else total).backward()


def forward_backward(run, image: torch.Tensor, step: int, steps: int, frame: int) -> tuple:
    """Losses of ``image`` and their gradients in the generator's parameters
    (scaled by ``run.perf.loss_scale``); returns the detached (total, {label: term})."""
    perf = run.perf
    chunk = perf.crop_batch if perf is not None else 0
    scale = perf.loss_scale if perf is not None else 1.0
    crops = None
    if chunk:
        crops = run.augment(image, run.cut_size)
        perf.crops = crops.shape[0]
        if crops.shape[0] <= chunk:
            chunk = 0
    if not chunk:
        inputs = StepInputs(image, step, steps, frame, run.augment, run.perceptors, run.cut_size, crops)
        with _autocast(run):
            terms = loss_terms(run, inputs)
        if not terms:
            raise _no_losses(frame)
        total = torch.stack([torch.as_tensor(t, device=image.device).float() for t in terms.values()]).sum()
        _backward(total, scale)
        return total.detach(), {k: v.detach() for k, v in terms.items()}

    n = crops.shape[0]
    image_leaf = image.detach().requires_grad_(image.requires_grad)
    crops_leaf = crops.detach().requires_grad_(crops.requires_grad)
    sums, image_only = {}, set()
    for lo in range(0, n, chunk):
        part = crops_leaf[lo:lo + chunk]
        inputs = StepInputs(image_leaf, step, steps, frame, run.augment, run.perceptors, run.cut_size, part)
        chunk_total = None
        with _autocast(run):
            for label, weight, loss in run.losses:
                if weight == 0 or label in image_only:
                    continue
                inputs._used_crops = False
                value = weight * call_loss(label, loss, inputs)
                if inputs._used_crops:
                    value = value * (part.shape[0] / n)
                elif lo == 0:
                    image_only.add(label)  # counted once, here
                term = torch.as_tensor(value, device=image.device).float()
                chunk_total = term if chunk_total is None else chunk_total + term
                sums[label] = term.detach() if label not in sums else sums[label] + term.detach()
        if chunk_total is None:
            raise _no_losses(frame)
        _backward(chunk_total, scale)
    pairs = [(t, leaf.grad) for t, leaf in ((image, image_leaf), (crops, crops_leaf)) if leaf.grad is not None]
    if pairs:
        torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])
    terms = {label: sums[label] for label, w, _ in run.losses if label in sums}
    return torch.stack(list(terms.values())).sum(), terms


def _out_of_memory(exc: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc))


def run_step(run, optimizer, step: int, steps: int, frame: int) -> tuple:
    """Synthesise the image and back-propagate the step's losses into the
    generator's parameters; returns (image, total, terms). Out of memory in the
    step halves the crop batch and tries the step again."""
    perf = run.perf
    rng = _rng_state(run.device)  # a retried step draws the same crops
    while True:
        optimizer.zero_grad(set_to_none=True)
        try:
            image = run.generator.synth()
            if perf is not None and perf.crop_batch is None:  # auto: plan with the image in memory
                perf.crop_batch = plan_crop_batch(run)
            total, terms = forward_backward(run, image, step, steps, frame)
            break
        except Exception as exc:
            if not _out_of_memory(exc) or perf is None:
                raise
            n = min(perf.crop_batch or perf.crops or _crop_count(run), perf.crops or _crop_count(run))
        # out of the except block, so that its traceback no longer holds the step's tensors
        image = None
        optimizer.zero_grad(set_to_none=True)
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
        if n <= 1:
            raise RunError("out of memory with one crop at a time: lower run.size")
        perf.crop_batch = n // 2
        _set_rng_state(run.device, rng)
    if perf is not None and perf.loss_scale != 1:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.div_(perf.loss_scale)
    return image, total, terms


def _rng_state(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _crop_count(run) -> int:
    num = getattr(getattr(run.augment, "params", None), "num", None)
    return int(num) if num else 64
