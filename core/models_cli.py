"""``pixloom models``: list, fetch, verify and locate published model files.

    pixloom models list              # embedded models and the registry, with cache status
    pixloom models fetch ViT-B/32    # download into the cache (progress, resume, sha256)
    pixloom models verify [NAME]     # re-hash cached files against the registry
    pixloom models path imagenet_f16_16384   # where its files live (or must be put)

A failed fetch (no network, a wrong hash, a transfer cut short again and again)
exits with code 2 and one line naming the file and where to put it by hand.
"""
from __future__ import annotations

import argparse
import sys

from . import checkpoints
from .errors import CheckpointError


def _status(model: checkpoints.KnownModel) -> str:
    states = []
    for role, path in checkpoints.model_paths(model).items():
        if path.is_file():
            states.append("cached")
        elif path.with_name(path.name + ".part").is_file():
            states.append("partial")
        else:
            states.append("missing")
    if all(s == "cached" for s in states):
        return "cached"
    return "partial" if any(s != "missing" for s in states) else "missing"


def _size(model: checkpoints.KnownModel) -> str:
    mb = sum(f.approx_mb or 0 for f in model.files.values())
    return f"~{mb} MB" if mb else ""


def cmd_list(args) -> int:
    from .models import embedded_models

    print("embedded (shipped with pixloom, offline):")
    for name, path in embedded_models().items():
        print(f"  {name:<22} {_embedded_format(path):<8} {path}")
    print(f"registry (cache: {checkpoints.home() / 'models'}):")
    for m in checkpoints.known_models():
        print(f"  {m.name:<22} {m.kind:<8} {_status(m):<8} {_size(m):>8}  {m.description}")
    return 0


def _embedded_format(path) -> str:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("pixloom.format", '"clip"').strip('"')
    except Exception:
        return "?"


def cmd_fetch(args) -> int:
    model = checkpoints.get_model(args.name)
    paths = checkpoints.ensure_model(model, progress=not args.quiet)
    for path in paths.values():
        print(path)
    return 0


def cmd_verify(args) -> int:
    models = [checkpoints.get_model(args.name)] if args.name else checkpoints.known_models()
    bad = 0
    for m in models:
        for role, known in m.files.items():
            path = checkpoints.cache_path(m, role)
            label = f"{m.name} {known.filename}"
            if not path.is_file():
                if args.name:
                    print(f"{label}: missing (expected at {path})")
                    bad += 1
                continue
            size = path.stat().st_size
            if known.sha256 is None:
                print(f"{label}: present, {size / 1e6:.1f} MB (no published sha256 to check)")
                continue
            actual = checkpoints.sha256_file(path)
            if actual == known.sha256:
                print(f"{label}: ok (sha256 {actual[:16]}...)")
            else:
                print(f"{label}: MISMATCH (sha256 {actual[:16]}..., expected {known.sha256[:16]}...): "
                      f"delete {path} and fetch it again")
                bad += 1
    if bad:
        raise CheckpointError(f"models verify: {bad} file(s) missing or not matching the registry")
    return 0


def cmd_path(args) -> int:
    model = checkpoints.get_model(args.name)
    for path in checkpoints.model_paths(model).values():
        print(path)
    return 0


def add_models_command(sub, common) -> None:
    p = sub.add_parser("models", parents=[common], help="published model files: list, fetch, verify, path",
                       description=__doc__.split("\n\n")[0])
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", parser_class=type(p))
    msub.required = True
    q = msub.add_parser("list", parents=[common], help="embedded models and the registry, with cache status")
    q.set_defaults(func=cmd_list)
    q = msub.add_parser("fetch", parents=[common], help="download a registry model into the cache")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_fetch)
    q = msub.add_parser("verify", parents=[common], help="re-hash cached files against the registry")
    q.add_argument("name", nargs="?", metavar="NAME")
    q.set_defaults(func=cmd_verify)
    q = msub.add_parser("path", parents=[common], help="where a model's files live in the cache")
    q.add_argument("name", metavar="NAME")
    q.set_defaults(func=cmd_path)


def main(argv=None) -> int:  # ``python -m pixloom.models_cli`` without the rest of the CLI
    parser = argparse.ArgumentParser(prog="pixloom models")
    sub = parser.add_subparsers(dest="command")
    add_models_command(sub, argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except CheckpointError as exc:
        print(f"pixloom: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
