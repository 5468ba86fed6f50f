"""Judging guided generation: render a fixed set of shapes-world prompts and
ask the judge perceptor (trained separately, never used for guidance) where it
ranks each target caption among all captions of the same form.

    pixloom evaluate [--preset default] [--prompts eval|tune] [--seeds 0,1,2] [--out DIR] [KEY=VALUE ...]

The evaluation prompts come from a seed that tuning never uses; ``--prompts tune``
gives the separate set the presets were tuned on. One render a prompt is a
noisy measure (the same preset scored 25 and 28 of 32 with two run seeds), so
``--seeds`` renders every prompt once per seed and reports the top-1 fraction
over all renders and for each seed.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import world
from .clip_tools import build_perceptor, embed_texts
from .files import atomic_write
from .preset import parse_override

EVAL_SEED = 20261122  # the evaluation prompts: never used for tuning
TUNE_SEED = 7  # the prompts the presets were tuned on

FORMS = (
    [world.Form(colour=True, shape=True, background=True)] * 20
    + [world.Form(size=True, colour=True, shape=True, background=True)] * 6
    + [world.Form(colour=True, shape=True, position=True, background=True)] * 6
)


def prompt_set(seed: int, exclude=()) -> list:
    """[(caption, Form)]: one distinct caption a form in FORMS, with random values,
    none of them in ``exclude``."""
    g = torch.Generator().manual_seed(seed)
    seen = set(exclude)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    out = []
    for form in FORMS:
        text = None
        while text is None or text in seen:
            fg = pick(world.COLOUR_NAMES)
            bg = pick([c for c in world.COLOUR_NAMES if c != fg])
            text = world.compose(world.Content(
                size=pick(world.SAID_SIZES) if form.size else None,
                colour=fg if form.colour else None,
                shape=pick(world.SHAPES) if form.shape else None,
                position=pick(world.POSITIONS) if form.position else None,
                background=bg if form.background else None,
            ))
        seen.add(text)
        out.append((text, form))
    return out


def tuning_prompts() -> list:
    return prompt_set(TUNE_SEED)


def evaluation_prompts() -> list:
    """The evaluation set: disjoint from the tuning set by construction."""
    return prompt_set(EVAL_SEED, exclude={t for t, _ in tuning_prompts()})


@dataclass
class Judged:
    prompt: str
    rank: int  # 1 = the judge's best caption
    candidates: int
    judge_top: str
    seconds: float
    file: str
    seed: int | None = None  # the run seed (None: the preset's own)


@torch.no_grad()
def judge_rank(judge, image: torch.Tensor, prompt: str, form, cache: dict) -> tuple:
    """(rank of ``prompt``, number of candidates, the judge's top caption) for a [1,3,H,W] image."""
    if form not in cache:
        captions = [c for c, _ in world.all_captions(form)]
        cache[form] = (captions, torch.cat([embed_texts(judge, captions[i:i + 512])
                                            for i in range(0, len(captions), 512)]))
    captions, texts = cache[form]
    size = judge.input_size
    device = next(iter(judge.buffers())).device
    x = F.interpolate(image.to(device), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    emb = F.normalize(judge.encode_image(x).float(), dim=-1).cpu()[0]
    sims = texts @ emb
    target = captions.index(prompt)
    rank = int((sims > sims[target]).sum()) + 1
    return rank, len(captions), captions[int(sims.argmax())]


def contact_sheet(results: list, images: list, path: Path, columns: int = 8, tile: int = 128) -> None:
    """A PNG of every render with its prompt and the judge's rank (green when top-1)."""
    import textwrap

    from PIL import Image, ImageDraw

    rows = (len(images) + columns - 1) // columns
    label_h = 44
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (res, im) in enumerate(zip(results, images)):
        x0, y0 = (k % columns) * tile, (k // columns) * (tile + label_h)
        sheet.paste(im.resize((tile, tile)), (x0, y0))
        colour = (0, 130, 0) if res.rank == 1 else (200, 0, 0)
        text = "\n".join(textwrap.wrap(res.prompt, width=tile // 6)[:3])
        draw.multiline_text((x0 + 2, y0 + tile + 1), text, fill="black", spacing=0)
        draw.text((x0 + tile - 30, y0 + 2), f"#{res.rank}", fill=colour)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))


def _top1(results: list) -> float:
    return round(sum(r.rank == 1 for r in results) / max(1, len(results)), 4)


def seeds_problem(seeds, overrides=()) -> str | None:
    """What is wrong with a list of run seeds for ``--seeds`` (None: nothing)."""
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        return f"--seeds must be distinct non-negative numbers (got {','.join(map(str, seeds))})"
    if any(parse_override(o)[0] == "run.seed" for o in overrides):
        return "--seeds and a run.seed override both set the seed: give one of them"
    return None


def run_evaluation(preset: str = "default", prompts: str = "eval", out: Path = Path("outputs/eval"),
                   judge_model: str = "shapes-judge", overrides=(), plugins_dirs=(), limit: int | None = None,
                   log=print, seeds=None) -> dict:
    """Render the prompts (once per seed of ``seeds``; None: once, with the
    preset's seed), judge each render and write evaluation.json and a contact sheet."""
    from .api import render

    problem = seeds_problem(seeds, overrides) if seeds else None
    if problem:
        raise ValueError(problem)
    seeded = bool(seeds)
    seeds = list(seeds) if seeded else [None]
    out = Path(out)
    (out / "renders").mkdir(parents=True, exist_ok=True)
    judge = build_perceptor("clip", judge_model)
    chosen = (evaluation_prompts() if prompts == "eval" else tuning_prompts())[:limit]
    results, images, cache = [], [], {}
    total = len(chosen) * len(seeds)
    for seed in seeds:
        extra = [] if seed is None else [f"run.seed={seed}"]
        for i, (prompt, form) in enumerate(chosen):
            t0 = time.perf_counter()
            name = f"{i:02d}-{prompt}" if seed is None else f"s{seed}-{i:02d}-{prompt}"
            res = render(preset, prompts=[prompt], overrides=list(overrides) + extra, plugins_dirs=plugins_dirs,
                         out=out / "renders", name=name, progress=False)
            seconds = time.perf_counter() - t0
            rank, n, top = judge_rank(judge, res.tensor, prompt, form, cache)
            results.append(Judged(prompt, rank, n, top, round(seconds, 2), str(res.files[0]) if res.files else "",
                                  seed))
            images.append(res.image)
            log(f"{len(results):>2}/{total}  rank {rank:>4}/{n:<5} {seconds:6.1f} s  "
                + ("" if seed is None else f"seed {seed}  ") + prompt
                + ("" if rank == 1 else f"   (judge: {top})"))
    top1 = _top1(results)
    summary = {
        "preset": preset, "prompts": prompts, "judge": judge_model, "overrides": list(overrides),
        "n": len(results), "top1": top1,
        "median_rank": statistics.median(r.rank for r in results) if results else None,
        "seconds_per_render_mean": round(statistics.mean(r.seconds for r in results), 2) if results else None,
        "seconds_per_render_max": max((r.seconds for r in results), default=None),
        "torch_threads": torch.get_num_threads(),
        "results": [asdict(r) for r in results],
    }
    if seeded:
        summary["seeds"] = seeds
        summary["top1_per_seed"] = {str(s): _top1([r for r in results if r.seed == s]) for s in seeds}
    atomic_write(out / "evaluation.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1)))
    contact_sheet(results, images, out / "contact-sheet.png")
    per_seed = "" if not seeded else " (per seed: " + ", ".join(
        f"{s}: {v:.3f}" for s, v in summary["top1_per_seed"].items()) + ")"
    log(f"top-1 {top1:.3f} ({sum(r.rank == 1 for r in results)}/{len(results)}){per_seed}, "
        f"{summary['seconds_per_render_mean']} s per render (max {summary['seconds_per_render_max']}); "
        f"wrote {out / 'evaluation.json'} and {out / 'contact-sheet.png'}")
    return summary


def main(argv=None, plugins_dirs=()) -> int:
    from .errors import ArgumentParser

    parser = ArgumentParser(prog="pixloom evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--prompts", choices=["eval", "tune"], default="eval")
    parser.add_argument("--judge", default="shapes-judge", help="the judge's model (never used for guidance)")
    parser.add_argument("--out", default="outputs/eval")
    parser.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    parser.add_argument("--seeds", default=None, metavar="S,S,...",
                        help="render every prompt once per run seed (default: once, with the preset's seed)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1 (got {args.limit})")
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            parser.error(f"--seeds must be comma-separated whole numbers (got {args.seeds!r})")
        problem = seeds_problem(seeds, args.overrides)
        if problem:
            parser.error(problem)
    run_evaluation(args.preset, args.prompts, Path(args.out), args.judge, args.overrides, plugins_dirs, args.limit,
                   seeds=seeds)
    return 0
