"""Output ``png``: the final image with its full recipe in PNG text chunks,
optional intermediate images, and a loss-curve plot."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

import pixloom
from pixloom.files import atomic_write, make_new_dir, write_new
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Output
from pixloom.loop import to_pil

from pixloom.metadata import PRESET_KEY


def png_metadata(result) -> dict:
    """The text chunks that let ``pixloom render --from`` re-render an image."""
    text = {
        PRESET_KEY: OmegaConf.to_yaml(result.preset),
        "pixloom:seed": str(result.seed),
        "pixloom:version": pixloom.__version__,
        "pixloom:plugins": json.dumps(getattr(result, "plugins", {}), sort_keys=True),
        "Software": f"pixloom {pixloom.__version__}",
    }
    if getattr(result, "candidates", None):
        text["pixloom:candidates"] = json.dumps(result.candidates, sort_keys=True)
    return text


def save_png(image, path: Path, text: dict | None = None) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_itxt(k, v)
    image.save(path, format="PNG", pnginfo=info)


def plot_losses(history: list, path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    keys = list(history[0]) if history else []
    steps = range(1, len(history) + 1)
    for key in keys:
        ax.plot(steps, [row.get(key, float("nan")) for row in history], label=key,
                linewidth=2 if key == "total" else 1)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


@dataclass
class PngParams:
    metadata: bool = True  # store the resolved preset, seed and versions in the PNG
    loss_plot: bool = True  # also write <name>.losses.png


class PngOutput(Output):
    """Writes ``<name>.png`` (never replacing an existing file: ``<name>-2.png``...)
    with the resolved preset, seed, pixloom and plugin versions as PNG text,
    ``<name>.losses.png``, and with ``output.save_every: N`` every Nth step's
    image under ``<name>.steps/``."""

    name = "png"
    version = pixloom.__version__
    Params = PngParams

    def on_start(self, state) -> None:
        self.steps_dir = None
        self.save_every = int(self.ctx.extra.get("save_every", 0))
        self.stem = self.ctx.extra.get("stem", "render")
        if self.save_every:
            self.steps_dir = make_new_dir(self.ctx.out_dir, self.stem, ".steps")

    def on_step(self, state) -> None:
        if self.steps_dir is not None and state.step % self.save_every == 0:
            image = to_pil(state.image)
            target = self.steps_dir / f"step-{state.step:06d}.png"
            atomic_write(target, lambda tmp: save_png(image, tmp))

    def on_end(self, state, result) -> list:
        text = png_metadata(result) if self.params.metadata else {}
        final = write_new(self.ctx.out_dir, self.stem, ".png", lambda tmp: save_png(result.image, tmp, text))
        written = [final]
        if self.params.loss_plot and result.history:
            written.append(write_new(self.ctx.out_dir, final.stem, ".losses.png",
                                     lambda tmp: plot_losses(result.history, tmp, final.stem)))
        return written


@hookimpl
def pixloom_register_outputs():
    return [PngOutput]
