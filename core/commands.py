"""Subcommands beyond render/list/presets: CLIP tools, the shapes world,
training the embedded models and evaluating guided generation."""
from __future__ import annotations

import argparse
import sys

from .errors import PixloomError


def _perceptor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--perceptor", default="clip", help="perceptor plugin name (default: clip)")
    p.add_argument("--model", default=None, help="its model: an embedded name (default shapes-clip) or a file")
    p.add_argument("--device", default="auto")


def _perceptor(args):
    from .clip_tools import build_perceptor

    return build_perceptor(args.perceptor, args.model, args.device, args.plugins_dir or ())


def cmd_score(args) -> int:
    from .clip_tools import score

    if not args.text:
        raise PixloomError("score: give at least one --text")
    sims = score(_perceptor(args), args.images, args.text)
    width = max(len(str(p)) for p in args.images)
    print(f"{'image':<{width}}  " + "  ".join(f"{t[:24]:>24}" for t in args.text))
    for path, row in zip(args.images, sims.tolist()):
        print(f"{str(path):<{width}}  " + "  ".join(f"{v:>24.4f}" for v in row))
    return 0


def cmd_classify(args) -> int:
    from .clip_tools import classify, parse_labels

    labels = parse_labels(args.labels)
    probs = classify(_perceptor(args), args.images, labels)
    for path, row in zip(args.images, probs.tolist()):
        ranked = sorted(zip(labels, row), key=lambda x: -x[1])[: args.top]
        print(f"{path}: " + ", ".join(f"{label} {p:.3f}" for label, p in ranked))
    return 0


def cmd_search(args) -> int:
    from .clip_tools import search

    if args.top < 1:
        raise PixloomError(f"--top must be at least 1 (got {args.top})")
    for path, sim in search(args.folder, _perceptor(args), args.text, args.top):
        print(f"{sim:.4f}  {path}")
    return 0


def _own(argv: list) -> list:
    """A passed-through command line without pixloom's own --debug (main() has seen it)."""
    return [a for a in argv if a != "--debug"]


def cmd_world(args) -> int:
    from . import world

    return world.main(_own(args.world_args))


def cmd_train(args) -> int:
    from .training import perceptor

    return perceptor.main(_own(args.train_args))


def cmd_evaluate(args) -> int:
    from . import evaluate

    return evaluate.main(_own(args.eval_args), plugins_dirs=args.plugins_dir or ())


def cmd_bench(args) -> int:
    from . import bench

    return bench.main(args.bench_args, plugins_dirs=args.plugins_dir or ())


def add_commands(sub, common) -> None:
    """Add the extra subcommands to the ``pixloom`` parser."""
    from .models_cli import add_models_command

    add_models_command(sub, common)

    p = sub.add_parser("score", parents=[common], help="CLIP similarity of images to captions")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--text", action="append", required=True, help="a caption (repeatable)")
    _perceptor_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("classify", parents=[common], help="zero-shot classification of images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--labels", required=True, help='comma-separated labels: "a circle,a square,a star"')
    p.add_argument("--top", type=int, default=5, help="labels shown per image")
    _perceptor_args(p)
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("search", parents=[common], help="text-to-image search over a folder (cached index)")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--text", required=True)
    p.add_argument("--top", type=int, default=5)
    _perceptor_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("world", parents=[common], help="the shapes world: sample grids (see: pixloom world --help)",
                       add_help=False)
    p.add_argument("world_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_world)

    p = sub.add_parser("train", parents=[common], add_help=False,
                       help="train an embedded perceptor (see: pixloom train --help)")
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], add_help=False,
                       help="judge guided generation on the shapes-world prompts (see: pixloom evaluate --help)")
    p.add_argument("eval_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", parents=[common], add_help=False,
                       help="measure speed, memory and time to recognisable (see: pixloom bench --help)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)

    from .animate_cli import add_animate_command

    add_animate_command(sub, common)
