"""Augmentation ``cutouts``: random crops of several sizes, warped in one batched resampling."""
from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F

import pixloom
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Augmentation


NOISE_BANK = 8  # the CPU noise bank holds this many steps' worth of Gaussian numbers


class _ClampPassGradient(torch.autograd.Function):
    """Clamp to 0..1, with the gradient passed through unmasked: noise or jitter that
    pushes a crop's pixel out of range does not cut that pixel off from guidance, and
    the backward pass is free (a plain clamp's masks the gradient in four passes)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx, grad):
        return grad


@dataclass
class CutoutsParams:
    num: int = 32  # crops a step
    min_scale: float = 0.1  # smallest crop, as a fraction of the image's area
    max_scale: float = 1.0  # largest crop
    overview: int = 0  # of the crops, how many show the whole image
    flip_p: float = 0.5  # horizontal flips
    affine_p: float = 0.3  # small rotations, shifts and shears
    degrees: float = 10.0
    translate: float = 0.05
    perspective_p: float = 0.2
    distortion: float = 0.2
    jitter_p: float = 0.0  # colour jitter (keep hue 0 when prompts name colours)
    brightness: float = 0.05
    contrast: float = 0.05
    saturation: float = 0.05
    hue: float = 0.0
    noise_p: float = 0.5  # additive Gaussian noise
    noise_std: float = 0.05
    antialias: float = 0.0  # > 0: Gaussian blur before cropping, sigma = antialias x (image side / crop size)

    def __post_init__(self):
        if self.num < 1:
            raise ValueError(f"num: must be at least 1 (got {self.num})")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ValueError(f"min_scale/max_scale: need 0 < min_scale <= max_scale <= 1 "
                             f"(got {self.min_scale}, {self.max_scale})")
        if not 0 <= self.overview <= self.num:
            raise ValueError(f"overview: must be between 0 and num={self.num} (got {self.overview})")
        for name in ("flip_p", "affine_p", "perspective_p", "jitter_p", "noise_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: a probability must be in 0..1 (got {getattr(self, name)})")
        if self.antialias < 0:
            raise ValueError(f"antialias: must be >= 0 (got {self.antialias})")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue: must be in 0..0.5 (got {self.hue})")


class Cutouts(Augmentation):
    """``num`` random crops (area between ``min_scale`` and ``max_scale`` of the
    image, aspect ratio 3/4..4/3, ``overview`` of them the whole image) resampled
    to the perceptors' input size, flipped, rotated and shifted, warped in
    perspective, colour-jittered and noised. The same crops feed every
    perceptor in a step.

    Crop, flip, affine and perspective are one projective map a crop, so all the
    crops come from a single ``grid_sample`` call (one resampling, where chaining
    the four transforms would resample four times), with the image's border
    repeated outside it. Colour jitter (kornia) and noise follow on the batch.
    """

    name = "cutouts"
    version = pixloom.__version__
    Params = CutoutsParams

    def __init__(self, params: CutoutsParams, ctx):
        super().__init__(params, ctx)
        p = params
        self.jitter = K.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue, p=p.jitter_p) \
            if p.jitter_p > 0 else None
        self._grids = {}
        self._bank = None

    def _base_grid(self, size: int, device, dtype) -> torch.Tensor:
        """[3, size*size]: the output pixels' centres in normalised coordinates, homogeneous."""
        key = (size, device, dtype)
        if key not in self._grids:
            lin = (torch.arange(size, device=device, dtype=dtype) + 0.5) * (2 / size) - 1
            y, x = torch.meshgrid(lin, lin, indexing="ij")
            self._grids[key] = torch.stack([x.flatten(), y.flatten(), torch.ones_like(x).flatten()])
        return self._grids[key]

    def _post_maps(self, u: torch.Tensor) -> torch.Tensor:
        """[n, 3, 3]: from output to crop coordinates: flip, rotation and shift, perspective
        (each drawn with its probability) from uniform draws ``u`` [n, 14]."""
        p = self.params
        n = u.shape[0]
        flip = torch.where(u[:, 0] < p.flip_p, -1.0, 1.0).to(u.dtype)
        on = (u[:, 1] < p.affine_p).to(u.dtype)
        theta = torch.deg2rad((2 * u[:, 2] - 1) * p.degrees) * on
        tx, ty = ((2 * u[:, 3:5] - 1) * (2 * p.translate) * on[:, None]).unbind(1)
        c, s = torch.cos(theta), torch.sin(theta)
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        # inverse of "rotate by theta, then shift by t", then the flip
        m = torch.stack([flip * c, flip * s, -flip * (c * tx + s * ty),
                         -s, c, s * tx - c * ty,
                         zero, zero, one], 1).view(n, 3, 3)
        if p.perspective_p > 0:
            # kornia's RandomPerspective: each corner moves inwards by up to distortion/2 of the side
            on = (u[:, 5] < p.perspective_p).to(u.dtype)
            corners = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], device=u.device, dtype=u.dtype)
            moved = corners - corners * (p.distortion * u[:, 6:14].view(n, 4, 2) * on[:, None, None])
            m = m @ kornia.geometry.transform.get_perspective_transform(moved, corners.expand(n, 4, 2))
        return m

    def _crop_maps(self, n: int, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """[n, 3, 3]: from crop to image coordinates, torchvision's RandomResizedCrop
        (10 tries of area and log aspect ratio, the first that fits; else the whole image)."""
        p = self.params
        area = (p.min_scale + (p.max_scale - p.min_scale) * u[:, :10]) * (height * width)
        ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 10:20])
        w = torch.sqrt(area * ratio) / width  # fraction of the width
        h = torch.sqrt(area / ratio) / height
        fits = (w <= 1) & (h <= 1)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)
        any_fit = fits.any(1)
        w = torch.where(any_fit, w.gather(1, first)[:, 0], torch.ones_like(w[:, 0]))
        h = torch.where(any_fit, h.gather(1, first)[:, 0], torch.ones_like(h[:, 0]))
        cx = (2 * u[:, 20] - 1) * (1 - w)
        cy = (2 * u[:, 21] - 1) * (1 - h)
        zero, one = torch.zeros_like(w), torch.ones_like(w)
        return torch.stack([w, zero, cx, zero, h, cy, zero, zero, one], 1).view(n, 3, 3)

    def _warp(self, source: torch.Tensor, maps: torch.Tensor, cut_size: int) -> torch.Tensor:
        n = maps.shape[0]
        grid = maps @ self._base_grid(cut_size, source.device, source.dtype)  # [n, 3, s*s]
        grid = grid[:, :2] / grid[:, 2:] if self.params.perspective_p > 0 else grid[:, :2]
        # the crops' grids stacked into tall grids over the one source image: the backward pass
        # accumulates into [t, C, H, W] instead of an [n, C, H, W] buffer summed after. The CPU
        # kernels split the work by batch, so t is the number of threads (a divisor of n).
        t = 1
        if source.device.type == "cpu":
            t = max(d for d in range(1, min(n, torch.get_num_threads()) + 1) if n % d == 0)
        grid = grid.transpose(1, 2).reshape(t, n // t * cut_size, cut_size, 2)
        out = F.grid_sample(source.expand(t, -1, -1, -1), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        c = source.shape[1]
        if t == 1:
            return out.view(c, n, cut_size, cut_size).transpose(0, 1)
        return out.view(t, c, n // t, cut_size, cut_size).transpose(1, 2).reshape(n, c, cut_size, cut_size)

    def forward(self, image: torch.Tensor, cut_size: int) -> torch.Tensor:
        p = self.params
        n_over = p.overview
        n_crop = p.num - n_over
        height, width = image.shape[-2:]
        # one draw of every random number the step needs, on the image's device (no host sync)
        u = torch.rand(p.num, 38, device=image.device, dtype=torch.float32)
        post = self._post_maps(u[:, 22:36])
        crop = self._crop_maps(p.num, u, height, width)
        source = image
        ratio = max(height, width) / cut_size
        if p.antialias > 0 and ratio > 1:
            # resampling crops down without a low-pass filter aliases: fine patterns
            # the perceptor cannot really see would still move its features
            sigma = p.antialias * ratio
            k = 2 * math.ceil(2 * sigma) + 1
            source = kornia.filters.gaussian_blur2d(image, (k, k), (sigma, sigma), border_type="reflect")
        if n_over and ratio > 2:
            # the whole image shrunk more than 2x: low-pass it first (bilinear sampling at 2x
            # is already a 2x2 box filter, so up to there it shares the crops' resampling)
            whole = F.interpolate(image, size=(cut_size, cut_size), mode="bilinear",
                                  align_corners=False, antialias=True)
            parts = [self._warp(source, (crop[:n_crop] @ post[:n_crop]).to(image.dtype), cut_size)] if n_crop else []
            parts.append(self._warp(whole, post[n_crop:].to(image.dtype), cut_size))
            crops = torch.cat(parts) if len(parts) > 1 else parts[0]
        else:
            if n_over:  # whole-image crops: the identity instead of a random box
                crop = torch.cat([crop[:n_crop], torch.eye(3, device=crop.device).expand(n_over, 3, 3)])
            crops = self._warp(source, (crop @ post).to(image.dtype), cut_size)
        if self.jitter is not None:
            crops = self.jitter(crops)
        if p.noise_p > 0:
            noisy = u[:, 36] < p.noise_p
            if crops.device.type == "cpu":
                crops = self._cpu_noise(crops, noisy, u[0, 37])
            elif p.noise_p >= 1:
                crops = crops + torch.randn(crops.shape, device=crops.device, dtype=crops.dtype) * p.noise_std
            else:  # no host sync for the count
                noise = torch.randn(crops.shape, device=crops.device, dtype=crops.dtype)  # not _like: crops is strided
                crops = crops + noise * (noisy.to(crops.dtype) * p.noise_std)[:, None, None, None]
        elif self.jitter is None:
            return crops.contiguous()  # a warp of an image in 0..1 stays in 0..1
        return _ClampPassGradient.apply(crops)

    def _cpu_noise(self, crops: torch.Tensor, noisy: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Noise for the noisy crops from a window at a random place in a bank of Gaussian
        numbers drawn once (NOISE_BANK times a step's need): torch's CPU generator is serial,
        and drawing a step's noise took about as long as the cutouts themselves. Each crop's
        noise is still Gaussian, independent across its pixels and different every step."""
        idx = noisy.nonzero()[:, 0]
        need = len(idx) * crops[0].numel()
        full = crops.numel()
        if self._bank is None or self._bank.numel() < NOISE_BANK * full or self._bank.dtype != crops.dtype:
            # its own generator, seeded by the run's seed: a resumed render gets the same bank
            g = torch.Generator().manual_seed(int(self.ctx.seed) + 0x5EED)
            self._bank = torch.randn(NOISE_BANK * full, generator=g).to(crops.dtype)
        start = int(where * (self._bank.numel() - need))
        noise = self._bank[start:start + need].view(len(idx), *crops.shape[1:])
        if len(idx) == crops.shape[0]:
            return torch.add(crops, noise, alpha=self.params.noise_std)
        return crops.index_add(0, idx, noise, alpha=self.params.noise_std)


@hookimpl
def pixloom_register_augmentations():
    return [Cutouts]
