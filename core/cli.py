"""The ``pixloom`` command: a thin layer over the Python API.

Every failure a user can cause prints one line on stderr and exits with the
code in docs/exit-codes.md; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_RUNTIME, PixloomError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message):
        raise PixloomError(f"{message} (see '{self.prog} --help')", EXIT_BAD_INPUT)


def _common(suppress: bool) -> argparse.ArgumentParser:
    default = argparse.SUPPRESS if suppress else None
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="show the full traceback of an error")
    p.add_argument("--plugins-dir", action="append", metavar="DIR", default=default,
                   help="load every *.py file in DIR as a plugin (repeatable)")
    return p


def _parse_size(text: str) -> list:
    parts = text.lower().replace("*", "x").split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise PixloomError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 256x256") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2:
        raise PixloomError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 256x256")
    return values


def _render_overrides(args) -> list:
    over = list(args.overrides or [])
    pairs = []
    if args.steps is not None:
        pairs.append(("run.steps", args.steps))
    if args.seed is not None:
        pairs.append(("run.seed", args.seed))
    if args.size is not None:
        pairs.append(("run.size", _parse_size(args.size)))
    if args.device is not None:
        pairs.append(("run.device", args.device))
    if args.out is not None:
        pairs.append(("output.dir", args.out))
    if args.quiet:
        pairs.append(("run.progress", False))
    return over + pairs


def cmd_render(args) -> int:
    from .api import render
    from .metadata import preset_from_png

    if args.from_image or args.resume:
        if args.preset is not None:
            args.overrides = [args.preset, *(args.overrides or [])]
        if args.from_image and args.resume:
            raise PixloomError("render: give either --from or --resume, not both")
        preset = preset_from_png(args.from_image) if args.from_image else None
    elif args.preset is None:
        raise PixloomError("render: give a preset (a file or a shipped name: see 'pixloom presets'), "
                           "--from IMAGE.png or --resume FILE")
    else:
        preset = args.preset
    result = render(preset, prompts=args.prompt, overrides=_render_overrides(args),
                    plugins_dirs=args.plugins_dir or (), progress=None, resume=args.resume)
    last = result.history[-1] if result.history else {}
    losses = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"pixloom: {result.steps} steps in {result.seconds:.1f} s ({losses})", file=sys.stderr)
    for path in result.files:
        print(path)
    return 0


def cmd_list(args) -> int:
    from .listing import describe_plugins

    print(describe_plugins(args.plugins_dir or (), kind=args.kind))
    return 0


def cmd_presets(args) -> int:
    from .preset import shipped_presets, _read_yaml

    for name, path in shipped_presets().items():
        description = str(_read_yaml(path).get("description", "") or "").strip().splitlines()
        print(f"{name:<24} {description[0] if description else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pixloom", parents=[_common(False)],
                     description="CLIP-guided generative art from YAML presets and plugins.")
    parser.add_argument("--version", action="version", version=f"pixloom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = _common(True)

    p = sub.add_parser("render", parents=[common], help="render a preset to a PNG",
                       description="Render a preset. Overrides are KEY=VALUE dotlist items "
                                   "(run.steps=50 losses.0.weight=2).")
    p.add_argument("preset", nargs="?", help="a preset file or a shipped preset name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotlist overrides")
    p.add_argument("--from", dest="from_image", metavar="IMAGE.png",
                   help="re-render from the recipe stored in a pixloom PNG")
    p.add_argument("--resume", metavar="FILE.resume.pt",
                   help="continue a render that was interrupted (Ctrl-C) from its resume file")
    p.add_argument("--prompt", action="append", metavar="TEXT[:WEIGHT]",
                   help="a text prompt for the clip loss (repeatable; negative weights push away)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--size", metavar="WxH")
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("list", parents=[common], help="every plugin with its parameters")
    p.add_argument("--kind", choices=["generator", "perceptor", "loss", "augmentation", "output"])
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("presets", parents=[common], help="the shipped presets")
    p.set_defaults(func=cmd_presets)

    from .commands import add_commands

    add_commands(sub, common)
    return parser


def main(argv=None) -> int:
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        # dotlist overrides may come after options (render PRESET --steps 5 a.b=1, animate likewise)
        args, extra = parser.parse_known_args(argv)
        debug = debug or bool(getattr(args, "debug", False))  # world/train/evaluate pass theirs on
        passthrough = {"world": "world_args", "train": "train_args", "evaluate": "eval_args", "bench": "bench_args"}
        if extra and args.command in passthrough:  # argparse leaves a leading option out of REMAINDER
            field = passthrough[args.command]
            setattr(args, field, [*extra, *getattr(args, field)])
            extra = []
        if extra:
            if args.command not in ("render", "animate") or any(e.startswith("-") for e in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*(args.overrides or []), *extra]
        return args.func(args)
    except PixloomError as exc:
        if debug:
            traceback.print_exc()
        print(f"pixloom: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `pixloom list | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("pixloom: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            traceback.print_exc()
        print("pixloom: error: out of memory: lower run.size or augment.params.num", file=sys.stderr)
        return EXIT_RUNTIME
    except Exception as exc:  # a bug: keep it to one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"pixloom: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
