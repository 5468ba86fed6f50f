"""The cutouts before and after the CPU noise bank and the pass-through clamp,
timed interleaved in one process (so that the machine's drift falls on both).

    python docs/bench/cutouts_before_after.py [REV]    # REV: the cutouts before (default 482f620)

Loads plugins/cutouts.py as it was at REV (``git show``) beside the installed
one, and times forward + backward of the default preset's cutouts (32 crops of
64 px from a 128 px image) at 2 threads: the median of 9 rounds of 30 calls each.
"""
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from pixloom.interfaces import BuildContext
from pixloom.plugins import cutouts as now

REPO = Path(__file__).resolve().parents[2]
PARAMS = dict(num=32, min_scale=0.6, overview=4, flip_p=0.0, affine_p=0.5, perspective_p=0.0,
              noise_p=1.0, noise_std=0.06)  # presets/default.yaml's augment.params


def module_at(rev: str):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:plugins/cutouts.py"], check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "cutouts_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("cutouts_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main(rev: str = "482f620") -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    ctx = BuildContext(size=(128, 128), device=torch.device("cpu"), seed=0)
    image = torch.rand(1, 3, 128, 128, requires_grad=True)
    before, after = (m.Cutouts(m.CutoutsParams(**PARAMS), ctx) for m in (module_at(rev), now))

    def call(aug):
        aug(image, 64).sum().backward()

    times = {"before": [], "after": []}
    for _ in range(9):
        for name, aug in (("before", before), ("after", after)):
            call(aug)
            started = time.perf_counter()
            for _ in range(30):
                call(aug)
            times[name].append((time.perf_counter() - started) / 30 * 1e3)
    b, a = statistics.median(times["before"]), statistics.median(times["after"])
    print(f"cutouts forward+backward, default preset, 2 threads: {rev} {b:.2f} ms, now {a:.2f} ms (x{b / a:.2f})")


if __name__ == "__main__":
    main(*sys.argv[1:])
