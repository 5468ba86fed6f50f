"""bench.md: the tables of a ``pixloom bench`` run, each naming its machine and command."""
from __future__ import annotations


def _table(header: list, rows: list) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return out


def _fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict) -> str:
    m = report["machine"]
    where = f"{m['cpu']}, {m['cores']} cores" + (f", {m['gpu']}" if m.get("gpu") else ", no GPU")
    lines = [f"# pixloom bench ({report['date']})", "",
             f"Machine: {where}; Python {m['python']}, torch {m['torch']}, {m['threads']} torch threads, "
             f"device {m['device']}.", "", f"Command: `{report['command']}`", ""]
    for key, error in (report.get("errors") or {}).items():
        lines += [f"Section {key} failed: {error}", ""]
    if report.get("note"):
        lines += [report["note"], ""]
    if report.get("presets"):
        lines += ["## Presets", ""]
        rows = [[r["preset"], r["size"], r["crops"], r["steps"], _fmt(r["steps_per_s"], 2),
                 _fmt(r["s_per_render"], 1) + ("" if r["s_per_render_measured"] else " (est.)"),
                 _fmt(r["setup_s"], 1), _fmt(r["peak_rss_mib"], 0), _fmt(r["cuda_max_allocated_mib"], 0),
                 f"{r['pipeline_s_per_step'] * 1e3:.1f}", f"{r['bare_s_per_step'] * 1e3:.1f}",
                 _fmt(r["overhead_ratio"])] for r in report["presets"]]
        lines += _table(["preset", "size", "crops", "steps", "steps/s", "s/render", "setup s", "peak RSS MiB",
                         "CUDA max MiB", "pipeline ms/step", "bare ms/step", "overhead ratio"], rows)
        lines += ["", "Overhead ratio: median pipeline time a step over the median time of the same model work "
                      "done by hand (generator forward and backward, one batched perceptor forward and backward "
                      "over as many crops of the same size), interleaved rounds in one process. Goal: <= 1.15.", ""]
        labels = list(dict.fromkeys(k for r in report["presets"] for k in r.get("breakdown_ms", {})))
        if labels:
            lines += ["Where a step's time goes: each part timed alone, forward and backward, in ms (the bare "
                      "step is the generator and the perceptors; the pipeline adds the rest and its loop):", ""]
            rows = [[r["preset"], *(_fmt(r.get("breakdown_ms", {}).get(k), 2) for k in labels),
                     f"{r['pipeline_s_per_step'] * 1e3:.1f}"] for r in report["presets"]]
            lines += _table(["preset", *labels, "pipeline step"], rows) + [""]
    ttr = report.get("ttr")
    if ttr:
        lines += ["## Time to recognisable", "",
                  f"Preset `{ttr['preset']}`, judge `{ttr['judge']}` checked every {ttr['check_every']} steps "
                  f"(its time not counted), {ttr['prompts']} evaluation prompts: median "
                  f"**{_fmt(ttr['median_s'], 1)} s** of optimisation until the judge ranks the prompt top-1 "
                  f"({ttr['recognised']}/{ttr['prompts']} recognised within the steps run; a prompt never recognised "
                  f"counts as infinitely slow). Goal: < 10 s "
                  f"on 2 CPU cores.", ""]
        rows = [[r["prompt"], _fmt(r["seconds"], 1), r["step"] or "-", f"{r.get('best_rank')}/{r.get('candidates')}",
                 r.get("steps_run")] for r in ttr["results"]]
        lines += _table(["prompt", "seconds", "step", "best rank", "steps run"], rows) + [""]
    sc = report.get("scaling")
    if sc:
        lines += ["## Scaling", "", f"Preset `{sc['preset']}`, seconds a step (median over {sc.get('rounds', 1)} "
                                    f"rounds of the mean of {sc['steps_timed']} steps, after one warm-up); "
                                    f"the crops are the perceptor's input size whatever the output size. "
                                    f"Plot: scaling.png.", ""]
        lines += _table(["output size", "s/step"], [[f"{r['size']}x{r['size']}", _fmt(r["s_per_step"], 4)]
                                                   for r in sc["size"]]) + [""]
        lines += _table(["crops", "s/step"], [[r["crops"], _fmt(r["s_per_step"], 4)] for r in sc["crops"]]) + [""]
    if report.get("realsize"):
        lines += ["## Real-size workloads (random weights)", ""]
        rows = [[r["size"], r["crops"], r["steps_timed"], _fmt(r["s_per_step"], 4), _fmt(r.get("s_per_300_steps"), 1),
                 (f"all (room for {r['crop_batch']})" if not r["crop_batch"] or r["crop_batch"] >= r["crops"]
                  else r["crop_batch"]), _fmt(r["peak_rss_mib"], 0), _fmt(r["cuda_max_allocated_mib"], 0),
                 _fmt(r["overhead_ratio"])] for r in report["realsize"]]
        lines += ["VQGAN imagenet_f16_16384 generator, CLIP ViT-B/32 perceptor (published shapes), cutouts "
                  "defaults.", ""]
        lines += _table(["size", "crops", "steps timed", "s/step", "s/300 steps", "crop batch", "peak RSS MiB",
                         "CUDA max MiB", "overhead ratio"], rows) + [""]
    if report.get("options"):
        lines += ["## Options", ""]
        rows = [[r["option"], _fmt(r["baseline_s_per_step"], 4), _fmt(r["s_per_step"], 4), _fmt(r["speedup"], 2),
                 _fmt(r.get("compile_s"), 1)] for r in report["options"]]
        lines += _table(["option", "baseline s/step", "with it s/step", "speedup", "compile s"], rows) + [""]
    return "\n".join(lines)
