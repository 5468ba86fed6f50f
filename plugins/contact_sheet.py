"""Output ``contact``: a contact sheet, one PNG of every Nth frame in a grid."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pixloom
from pixloom.animate import result_frames
from pixloom.files import write_new
from pixloom.hookspecs import hookimpl
from pixloom.interfaces import Output
from pixloom.plugins.png_output import save_png


@dataclass
class ContactParams:
    every: int = 4  # frames 0, every, 2*every, ...
    columns: int = 0  # 0: as square a grid as the count allows
    gap: int = 2  # pixels between tiles
    labels: bool = True  # the frame number under each tile
    background: int = 24  # grey level of the gaps, 0..255

    def __post_init__(self):
        if self.every < 1:
            raise ValueError(f"every: must be at least 1 (got {self.every})")
        if self.columns < 0:
            raise ValueError(f"columns: must be 0 (automatic) or a positive count (got {self.columns})")
        if self.gap < 0:
            raise ValueError(f"gap: must not be negative (got {self.gap})")
        if not 0 <= self.background <= 255:
            raise ValueError(f"background: must be in 0..255 (got {self.background})")


def contact_sheet(frames: list, every: int = 4, columns: int = 0, gap: int = 2, labels: bool = True,
                  background: int = 24):
    """A PIL image of frames 0, every, 2*every... in rows of ``columns``."""
    from PIL import Image, ImageDraw

    picked = list(range(0, len(frames), every))
    columns = columns or math.ceil(math.sqrt(len(picked)))
    rows = math.ceil(len(picked) / columns)
    w, h = frames[0].size
    label_h = 12 if labels else 0
    sheet = Image.new("RGB", (columns * (w + gap) + gap, rows * (h + label_h + gap) + gap), (background,) * 3)
    draw = ImageDraw.Draw(sheet)
    for n, index in enumerate(picked):
        x = gap + (n % columns) * (w + gap)
        y = gap + (n // columns) * (h + label_h + gap)
        sheet.paste(frames[index].convert("RGB"), (x, y))
        if labels:
            draw.text((x + 1, y + h), str(index), fill=(220, 220, 220))
    return sheet


class ContactSheetOutput(Output):
    """Writes ``<name>.contact.png`` (never replacing an existing file): every
    ``every``-th frame in a grid, each with its frame number underneath."""

    name = "contact"
    version = pixloom.__version__
    Params = ContactParams

    def on_end(self, state, result) -> list:
        p = self.params
        sheet = contact_sheet(result_frames(result), p.every, p.columns, p.gap, p.labels, p.background)
        stem = self.ctx.extra.get("stem", "render")
        return [write_new(self.ctx.out_dir, stem, ".contact.png", lambda tmp: save_png(sheet, tmp))]


@hookimpl
def pixloom_register_outputs():
    return [ContactSheetOutput]
