"""``pixloom bench``: how fast pixloom renders, measured in one process.

    pixloom bench [--presets P ...] [--quick] [--out DIR] [--threads N] [--device D]
                  [--only presets,ttr,scaling,realsize,options]

For each shipped preset (animations aside): steps a second, seconds a render,
peak memory, the overhead ratio (the pipeline's time a step over the same
model work done by hand in the same process) and where a step's time goes
(generator, augmentation, perceptors, each loss, optimiser). Then the time until the judge
recognises a render (median over the evaluation prompts), seconds a step
against output size and crop count (table and plot), real-size workloads with
random weights (CLIP ViT-B/32, VQGAN imagenet_f16_16384, 32 crops), and the
options kept or dropped (threads, channels-last, torch.compile, TF32, fp16).
Writes bench.json, bench.md and scaling.png into --out.
"""
from __future__ import annotations

import datetime
import gc
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from .bench_work import (PeakMemory, Pipeline, breakdown, chained_cutouts, median_seconds, overhead, sync,
                         time_augmentation, time_to_recognisable)
from .device import keeps_torch_threads
from .files import atomic_write

SECTIONS = ("presets", "ttr", "scaling", "realsize", "options")
SIZES = (64, 128, 256, 512)
CROPS = (8, 16, 32, 64)
REAL_SIZES = (256, 400)


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def shipped_stills() -> list:
    from .preset import shipped_presets

    names = [name for name in shipped_presets() if not name.startswith("animation/")]
    return sorted(names, key=lambda n: n != "default")  # default first: the other sections use it


def _pm(plugins_dirs=()):
    from . import bench_models
    from .manager import build_registry, create_plugin_manager

    pm = create_plugin_manager(plugins_dirs=plugins_dirs, entry_points=False)
    pm.register(bench_models, name="pixloom.bench_models")
    return pm, build_registry(pm)


def bench_presets(presets, pm, registry, device_over, quick, log) -> list:
    rows = []
    for name in presets:
        with PeakMemory(torch.device("cpu")) as mem_cpu:
            pipe = Pipeline(name, pm, registry, overrides=device_over)
            with PeakMemory(pipe.device) as mem:
                steps = pipe.steps_total
                pipe.step(2)  # warm-up
                timed = 3 if quick else steps
                seconds = pipe.step(timed)
        s_step = seconds / timed
        ratio = overhead(pipe, rounds=3 if quick else 9, k=2 if quick else 4)
        parts = breakdown(pipe, k=3 if quick else 20)
        w, h = (int(v) for v in pipe.cfg.run.size)
        row = {"preset": str(name), "size": f"{w}x{h}", "crops": ratio["crops"], "steps": steps,
               "steps_timed": timed, "s_per_step": round(s_step, 5), "steps_per_s": round(1 / s_step, 2),
               "setup_s": round(pipe.setup_s, 2), "s_per_render": round(pipe.setup_s + s_step * steps, 2),
               "s_per_render_measured": not quick, "peak_rss_mib": mem_cpu.rss_mib,
               "cuda_max_allocated_mib": mem.cuda_mib, **ratio, "breakdown_ms": parts}
        rows.append(row)
        log(f"  {name}: {row['steps_per_s']} steps/s, {row['s_per_render']} s/render, "
            f"peak RSS {row['peak_rss_mib']} MiB, overhead ratio {row['overhead_ratio']}")
        del pipe
        gc.collect()
    return rows


def bench_ttr(preset, pm, registry, device_over, quick, n_prompts, check_every, judge_model, log) -> dict:
    from .clip_tools import build_perceptor
    from .evaluate import evaluation_prompts

    device = device_over[0].split("=", 1)[1] if device_over else "auto"
    judge = build_perceptor("clip", judge_model, device)
    prompts = evaluation_prompts()[:n_prompts]
    results = time_to_recognisable(preset, pm, registry, judge, prompts, check_every,
                                   max_steps=30 if quick else None, overrides=device_over, log=log)
    return {"preset": str(preset), "judge": judge_model, "prompts": len(prompts), "check_every": check_every,
            "median_s": median_seconds(results), "recognised": sum(r["seconds"] is not None for r in results),
            "results": results}


def _s_per_step(preset, pm, registry, overrides, steps, rounds=3) -> float:
    """Median over ``rounds`` of the mean seconds of ``steps`` steps, after one warm-up step."""
    import statistics

    pipe = Pipeline(preset, pm, registry, overrides=overrides)
    pipe.step(1)
    seconds = statistics.median(pipe.step(steps) / steps for _ in range(rounds))
    del pipe
    return round(seconds, 5)


def bench_scaling(preset, pm, registry, device_over, quick, log) -> dict:
    steps = 2 if quick else 5
    rounds = 1 if quick else 3
    sizes = SIZES[:2] if quick else SIZES
    crops = CROPS[:2] if quick else CROPS
    out = {"preset": str(preset), "steps_timed": steps, "rounds": rounds, "size": [], "crops": []}
    for s in sizes:
        out["size"].append({"size": s, "s_per_step": _s_per_step(preset, pm, registry,
                                                                 [*device_over, f"run.size=[{s},{s}]"], steps, rounds)})
        log(f"  scaling: {s}x{s}: {out['size'][-1]['s_per_step']} s/step")
    for n in crops:
        out["crops"].append({"crops": n, "s_per_step": _s_per_step(
            preset, pm, registry, [*device_over, f"augment.params.num={n}", "augment.params.overview=0"], steps,
            rounds)})
        log(f"  scaling: {n} crops: {out['crops'][-1]['s_per_step']} s/step")
    return out


def realsize_preset(size: int, device: str, crops: int = 32, precision: str = "auto") -> dict:
    return {"description": "real-size workload, random weights",
            "run": {"steps": 300, "seed": 0, "device": device, "size": [size, size], "lr": 0.1,
                    "precision": precision},
            "generator": {"name": "bench-vqgan"},
            "perceptors": [{"name": "bench-clip"}],
            "augment": {"name": "cutouts", "params": {"num": crops}},
            "losses": [{"name": "clip", "weight": 1.0, "params": {"prompts": ["a red circle on a blue background"]}}],
            "output": {"dir": "outputs", "plugins": []}}


def bench_realsize(pm, registry, device_name, quick, log) -> list:
    rows = []
    for size in REAL_SIZES:
        with PeakMemory(torch.device("cpu")) as mem_cpu:
            pipe = Pipeline(realsize_preset(size, device_name), pm, registry)
            on_gpu = pipe.device.type == "cuda"
            with PeakMemory(pipe.device) as mem:
                pipe.step(3 if on_gpu else 1)
                timed = (20 if quick else 300) if on_gpu else 2
                seconds = pipe.step(timed)
        ratio = overhead(pipe, rounds=5 if on_gpu else 1, k=5 if on_gpu else 1)
        row = {"workload": "VQGAN imagenet_f16_16384 + CLIP ViT-B/32 (random weights)", "size": f"{size}x{size}",
               "crops": ratio["crops"], "steps_timed": timed, "s_per_step": round(seconds / timed, 4),
               "seconds_timed": round(seconds, 2), "setup_s": round(pipe.setup_s, 2),
               "crop_batch": pipe.run.perf.crop_batch, "peak_rss_mib": mem_cpu.rss_mib,
               "bytes_per_crop_mib": round(pipe.run.perf.bytes_per_crop / 2**20, 1),
               "cuda_max_allocated_mib": mem.cuda_mib, **ratio}
        if on_gpu:
            row["s_per_300_steps"] = round(row["s_per_step"] * 300, 1)
        rows.append(row)
        log(f"  real size {size}x{size}: {row['s_per_step']} s/step ({timed} steps), ratio {row['overhead_ratio']}")
        del pipe
        gc.collect()
    return rows


def bench_options(preset, pm, registry, device_name, device_over, quick, log) -> list:
    """Each option against its baseline, the same work in the same process."""
    rows = []
    steps = 2 if quick else 6
    device = torch.device("cuda") if device_name in ("auto", "cuda") and torch.cuda.is_available() else \
        torch.device("cpu")

    def add(option, value, baseline, **extra):
        rows.append({"option": option, "s_per_step": value, "baseline_s_per_step": baseline,
                     "speedup": round(baseline / value, 3), **extra})
        log(f"  option {option}: {value} s/step against {baseline} ({rows[-1]['speedup']}x)")

    pipe = Pipeline(preset, pm, registry, overrides=device_over)
    params = getattr(pipe.run.augment, "params", None)
    if getattr(pipe.run.augment, "name", "") == "cutouts":
        fused = time_augmentation(pipe.run, pipe.run.augment, steps * 3)
        chained = time_augmentation(pipe.run, chained_cutouts(params), steps * 3)
        add(f"cutouts as one grid_sample vs chained kornia ops, forward+backward ({preset}, {params.num} crops)",
            round(fused, 5), round(chained, 5))
    del pipe
    if device.type == "cpu":
        threads = torch.get_num_threads()
        counts = sorted({1, max(1, os.cpu_count() or 1)})
        times = {}
        for n in counts:
            torch.set_num_threads(n)
            times[n] = _s_per_step(preset, pm, registry, device_over, steps)
        torch.set_num_threads(threads)
        for n in counts[1:]:
            add(f"torch.set_num_threads({n}) vs 1 ({preset})", times[n], times[1])
        pipe = Pipeline(preset, pm, registry, overrides=device_over)
        perceptors = [p for p in pipe.run.perceptors.values() if getattr(p, "channels_last", False)]
        if perceptors:
            n = pipe.crop_count()
            pipe.bare(1, n)
            on = min(pipe.bare(steps, n) for _ in range(3)) / steps
            for p in perceptors:
                p.channels_last = False
                p.model.visual.to(memory_format=torch.contiguous_format)
            pipe.bare(1, n)
            off = min(pipe.bare(steps, n) for _ in range(3)) / steps
            add(f"channels_last ResNet perceptor, bare step ({preset})", round(on, 5), round(off, 5))
        del pipe
    if not quick:
        base = Pipeline(preset, pm, registry, overrides=device_over)
        base.step(2)
        before = base.step(steps) / steps
        del base
        compiled = Pipeline(preset, pm, registry, overrides=[*device_over, "run.compile=true"])
        t0 = time.perf_counter()
        compiled.step(1)
        first = time.perf_counter() - t0
        compiled.step(2)
        after = compiled.step(steps) / steps
        add(f"torch.compile perceptor ({preset})", round(after, 5), round(before, 5),
            compile_s=round(first - after, 1), break_even_steps=round((first - after) / max(before - after, 1e-9)))
        del compiled
    if device.type == "cuda":
        times = {}
        for precision in ("fp32", "tf32", "fp16"):
            pipe = Pipeline(realsize_preset(400, "cuda", precision=precision), pm, registry)
            pipe.step(3)
            times[precision] = round(pipe.step(20) / 20, 4)
            del pipe
            gc.collect()
        add("TF32 (real size 400x400)", times["tf32"], times["fp32"])
        add("fp16 autocast (real size 400x400)", times["fp16"], times["tf32"])
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gc.collect()
    return rows


def plot_scaling(scaling: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label in ((axes[0], "size", "output size (px, square)"), (axes[1], "crops", "crops a step")):
        xs = [r[key] for r in scaling[key]]
        ys = [r["s_per_step"] for r in scaling[key]]
        ax.plot(xs, ys, "o-")
        ax.set_ylim(bottom=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(label)
        ax.set_ylabel("seconds a step")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


@keeps_torch_threads
def run_bench(presets=None, quick=False, out=Path("outputs/bench"), threads=None, device="auto",
              only=SECTIONS, ttr_prompts=None, check_every=5, judge="shapes-judge", command="", log=print,
              plugins_dirs=()) -> dict:
    from .device import pick_device
    from .bench_report import markdown

    if threads:
        torch.set_num_threads(int(threads))
    dev = pick_device(device)
    device_over = [] if device == "auto" else [f"run.device={device}"]
    presets = list(presets or shipped_stills())
    pm, registry = _pm(plugins_dirs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"date": datetime.date.today().isoformat(), "command": command, "quick": quick,
              "machine": machine(dev), "note": None}
    started = time.perf_counter()

    def write():
        report["seconds"] = round(time.perf_counter() - started, 1)
        atomic_write(out / "bench.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1)))
        atomic_write(out / "bench.md", lambda tmp: tmp.write_text(markdown(report) + "\n"))

    def section(key, title, fn):
        log(f"{title}:")
        try:
            report[key] = fn()
        except Exception as exc:  # a failed section is reported; the others still run
            report.setdefault("errors", {})[key] = f"{type(exc).__name__}: {exc}"
            log(f"  {key} failed: {type(exc).__name__}: {exc}")
        write()  # after every section: a run cut short keeps what it measured

    if "presets" in only:
        section("presets", "presets", lambda: bench_presets(presets, pm, registry, device_over, quick, log))
    if "ttr" in only:
        n = ttr_prompts or (2 if quick else None)
        section("ttr", "time to recognisable", lambda: bench_ttr(presets[0], pm, registry, device_over, quick, n,
                                                                 check_every, judge, log))
    if "scaling" in only:
        section("scaling", "scaling", lambda: bench_scaling(presets[0], pm, registry, device_over, quick, log))
        if "scaling" in report:
            plot_scaling(report["scaling"], out / "scaling.png",
                         f"pixloom bench: preset {presets[0]}, {report['machine']['cpu']}, "
                         f"{report['machine']['threads']} threads, {dev}")
    if "realsize" in only and not (quick and only == SECTIONS):  # --quick: only when --only names it
        section("realsize", "real-size workloads", lambda: bench_realsize(pm, registry, device, quick, log))
    if "options" in only:
        section("options", "options", lambda: bench_options(presets[0], pm, registry, device, device_over, quick, log))
    write()
    log(f"wrote {out / 'bench.json'}, {out / 'bench.md'}" + (" and scaling.png" if "scaling" in report else "")
        + f" in {report['seconds']} s")
    return report


def main(argv=None, plugins_dirs=()) -> int:
    from .cli import _Parser  # one-line errors, exit code 2

    parser = _Parser(prog="pixloom bench", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--presets", nargs="+", metavar="PRESET",
                        help="shipped preset names or files (default: every shipped non-animation preset)")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps of each, 2 prompts, 2 sizes; no real-size workloads unless --only names them")
    parser.add_argument("--out", default="outputs/bench", help="folder for bench.json, bench.md, scaling.png")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--ttr-prompts", type=int, help="evaluation prompts for time to recognisable (default all)")
    parser.add_argument("--check-every", type=int, default=5, help="steps between the judge's checks")
    parser.add_argument("--judge", default="shapes-judge")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section {unknown[0]!r} (valid: {', '.join(SECTIONS)})")
    command = "pixloom bench" + "".join(" " + shlex.quote(a) for a in (sys.argv[2:] if argv is None else argv))
    report = run_bench(args.presets, args.quick, Path(args.out), args.threads, args.device, only, args.ttr_prompts,
                       args.check_every, args.judge, command, plugins_dirs=plugins_dirs)
    return 1 if report.get("errors") else 0
