"""The judge's top-1 on a VQGAN's or dVAE's reconstructions of world scenes:
what a token generator can draw at best.

    python docs/eval/lab/reconstruction_ceiling.py vqgan shapes-vqgan 50
    python docs/eval/lab/reconstruction_ceiling.py dvae path/to/model.safetensors 50
    python docs/eval/lab/reconstruction_ceiling.py dvae shapes-dvae eval 4
    python docs/eval/lab/reconstruction_ceiling.py dvae shapes-dvae eval 4 256

With a number: that many random scenes (colour + shape + background captions)
at 64, 128 and 256 px. With ``eval K``: K scenes true of each of the 32
evaluation prompts (``pixloom evaluate``'s), at the renders' 128 px (or the
size given after K), judged against the prompt as ``pixloom evaluate`` judges
a render, with the count by shape. The reconstructions (nearest codes / argmax
tokens) and their PSNR come from the training commands' own held-out
evaluation.
"""
import sys
from collections import Counter

import torch

from pixloom import world
from pixloom.clip_tools import build_perceptor
from pixloom.evaluate import evaluation_prompts, judge_rank

SIZES = (64, 128, 256)


def load(kind: str, model_name: str):
    if kind == "dvae":
        from pixloom.dvae import load_dvae
        from pixloom.training.dvae import evaluate

        return load_dvae(model_name), evaluate
    from pixloom.training.vqgan import evaluate
    from pixloom.vqgan import load_vqgan

    return load_vqgan(model_name), evaluate


def random_scenes(model, evaluate, judge, model_name: str, n: int) -> None:
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


def evaluation_scenes(model, evaluate, judge, model_name: str, per_prompt: int, size: int = 128) -> None:
    prompts = evaluation_prompts()
    pool = world.sample_attributes(20000, torch.Generator().manual_seed(123))
    contents = [world.parse(p) for p, _ in prompts]
    true = world.truth(contents, pool)  # 1 where the prompt is surely true
    cache, right, total = {}, Counter(), Counter()
    for j, ((prompt, form), content) in enumerate(zip(prompts, contents)):
        chosen = (true[:, j] == 1).nonzero()[:, 0][:per_prompt]
        recon = evaluate(model, world.render(pool[chosen], size))["recon"]
        ranks = [judge_rank(judge, recon[i:i + 1], prompt, form, cache)[0] for i in range(len(chosen))]
        shape = content.shape
        right[shape] += sum(r == 1 for r in ranks)
        total[shape] += len(ranks)
        print(f"{j:>2} ranks {' '.join(f'{r:>3}' for r in ranks)}  {prompt}")
    print(model_name, f"{size} px: {sum(right.values())}/{sum(total.values())};",
          ", ".join(f"{s} {right[s]}/{total[s]}" for s in sorted(total)))


def main(kind: str, model_name: str, *rest: str) -> None:
    torch.set_num_threads(1)
    model, evaluate = load(kind, model_name)
    judge = build_perceptor("clip", "shapes-judge")
    if rest and rest[0] == "eval":
        per_prompt = int(rest[1]) if len(rest) > 1 else 4
        size = int(rest[2]) if len(rest) > 2 else 128
        evaluation_scenes(model, evaluate, judge, model_name, per_prompt, size)
    else:
        random_scenes(model, evaluate, judge, model_name, int(rest[0]) if rest else 50)


if __name__ == "__main__":
    main(*sys.argv[1:])
