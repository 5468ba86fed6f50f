"""The world denoiser in the guidance lab: the "dn" priors and the "diff"
sampler of guidance_lab.py use pixloom's own denoiser (``pixloom.denoiser``),
trained by ``python -m pixloom.training.denoiser``.

    python -m pixloom.training.denoiser --out dn32.safetensors --steps 12000 --resolution 32
    python docs/eval/lab/world_denoiser.py sample dn32.safetensors OUT.png [churn]   # 16 samples

``sample`` runs the probability-flow ODE (churn 0: Euler steps) or, with churn
> 0, a stochastic sampler that draws that share of each step's noise afresh.
"""
import math
import sys

import torch

from pixloom.denoiser import load_denoiser


def load(path):
    return load_denoiser(path)


def sample(model, n=16, steps=100, sigma_max=4.0, sigma_min=0.02, churn=0.0, seed=1):
    """n unconditional samples in 0..1 on a geometric ladder of noise levels."""
    g = torch.Generator().manual_seed(seed)
    side = model.config.resolution
    sig = [sigma_max * (sigma_min / sigma_max) ** (i / (steps - 1)) for i in range(steps)] + [0.0]
    x = torch.randn(n, 3, side, side, generator=g) * sig[0]
    with torch.no_grad():
        for i in range(steps):
            d = model(x, torch.full((n,), sig[i]))
            eps = (x - d) / sig[i]
            x = d + sig[i + 1] * (math.sqrt(1 - churn) * eps + math.sqrt(churn) * torch.randn(x.shape, generator=g))
    return ((x + 1) / 2).clamp(0, 1)


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "sample":
    from PIL import Image

    torch.set_num_threads(1)
    img = sample(load(sys.argv[2]), churn=float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
    row = torch.cat([torch.cat(list(img[r * 8:(r + 1) * 8]), 2) for r in range(2)], 1)
    Image.fromarray((row.permute(1, 2, 0).numpy() * 255).astype("uint8")).resize((1024, 256)).save(sys.argv[3])
elif __name__ == "__main__":
    sys.exit(__doc__)
