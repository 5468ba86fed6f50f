"""``pixloom animate``: the command over :func:`pixloom.animate.animate`."""
from __future__ import annotations

import sys

from .errors import PixloomError


def _overrides(args) -> list:
    from .cli import _parse_size

    pairs = list(args.overrides or [])
    flags = {"animation.steps": args.steps, "animation.first_steps": args.first_steps,
             "animation.frames": args.frames, "animation.fps": args.fps, "run.seed": args.seed,
             "run.device": args.device, "output.dir": args.out}
    pairs += [(key, value) for key, value in flags.items() if value is not None]
    if args.size is not None:
        pairs.append(("run.size", _parse_size(args.size)))
    if args.quiet:
        pairs.append(("run.progress", False))
    return pairs


def cmd_animate(args) -> int:
    from .animate import animate

    if args.resume:
        given = [flag for flag, value in (("PRESET", args.preset), ("KEY=VALUE", args.overrides),
                                          ("--prompt", args.prompt), ("--steps", args.steps),
                                          ("--first-steps", args.first_steps), ("--frames", args.frames),
                                          ("--fps", args.fps), ("--seed", args.seed), ("--size", args.size),
                                          ("--out", args.out)) if value]
        if given:
            raise PixloomError(f"animate: --resume goes on with the run's saved preset; drop {given[0]} "
                               f"(only --device and --quiet go with --resume)")
        extra = {"device": args.device} if args.device else {}
        result = animate(resume=args.resume, plugins_dirs=args.plugins_dir or (),
                         progress=False if args.quiet else None, **extra)
    elif args.preset is None:
        raise PixloomError("animate: give a preset (a file or a shipped name such as animation/zoom: "
                           "see 'pixloom presets') or --resume FOLDER")
    else:
        result = animate(args.preset, prompts=args.prompt, overrides=_overrides(args),
                         plugins_dirs=args.plugins_dir or (), progress=None)
    print(f"pixloom: {len(result.frames)} frames ({result.steps} steps) in {result.seconds:.1f} s "
          f"-> {result.run_dir}", file=sys.stderr)
    for path in result.files:
        print(path)
    return 0


def add_animate_command(sub, common) -> None:
    """Add ``animate`` to the ``pixloom`` command's subparsers."""
    p = sub.add_parser("animate", parents=[common], help="render an animation preset: frames, GIF, MP4",
                       description="Render an animation preset (one with an animation: block, e.g. "
                                   "animation/zoom) into a new folder <out>/<name>.anim/. Overrides are "
                                   "KEY=VALUE dotlist items (animation.frames=48 run.lr=0.05). "
                                   "See docs/animation.md.")
    p.add_argument("preset", nargs="?", help="a preset file or a shipped preset name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotlist overrides")
    p.add_argument("--resume", metavar="FOLDER",
                   help="continue an interrupted animation: its <name>.anim folder (or state file)")
    p.add_argument("--prompt", action="append", metavar="TEXT[:WEIGHT]",
                   help="a fixed prompt for every frame instead of the preset's prompt keyframes (repeatable)")
    p.add_argument("--frames", type=int, help="number of frames (animation.frames)")
    p.add_argument("--steps", type=int, help="steps of every frame after the first (animation.steps)")
    p.add_argument("--first-steps", type=int, help="steps of frame 0 (animation.first_steps)")
    p.add_argument("--fps", type=float, help="frames per second of the GIF and MP4 (animation.fps)")
    p.add_argument("--seed", type=int)
    p.add_argument("--size", metavar="WxH")
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", metavar="DIR", help="the folder in which the animation's folder is made")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_animate)
