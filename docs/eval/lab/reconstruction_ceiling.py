"""The judge's top-1 on a VQGAN's or dVAE's reconstructions of world scenes at 64, 128 and 256 px
(colour + shape + background captions): what a token generator can draw at best.

    python docs/eval/lab/reconstruction_ceiling.py vqgan shapes-vqgan 50
    python docs/eval/lab/reconstruction_ceiling.py dvae path/to/model.safetensors 50

The reconstructions (nearest codes / argmax tokens) and their PSNR come from
the training commands' own held-out evaluation.
"""
import sys

import torch

from pixloom import world
from pixloom.clip_tools import build_perceptor
from pixloom.evaluate import judge_rank

SIZES = (64, 128, 256)


def main(kind: str, model_name: str, n: int = 50) -> None:
    torch.set_num_threads(1)
    if kind == "dvae":
        from pixloom.dvae import load_dvae
        from pixloom.training.dvae import evaluate

        model = load_dvae(model_name)
    else:
        from pixloom.training.vqgan import evaluate
        from pixloom.vqgan import load_vqgan

        model = load_vqgan(model_name)
    judge = build_perceptor("clip", "shapes-judge")
    form = world.Form(colour=True, shape=True, background=True)
    attrs = world.sample_attributes(n, torch.Generator().manual_seed(777))
    captions = [world.caption(attrs, i, form) for i in range(n)]
    cache, results = {}, {}
    for size in SIZES:
        result = evaluate(model, world.render(attrs, size))
        recon = result["recon"]
        top1 = sum(judge_rank(judge, recon[i:i + 1], captions[i], form, cache)[0] == 1 for i in range(n))
        results[size] = f"{top1}/{n} psnr {result['psnr']}"
    print(model_name, results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50)
