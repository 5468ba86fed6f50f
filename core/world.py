"""The shapes world: a procedural, captioned image world (see WORLD.md).

Every embedded model of pixloom is trained on this world, and outside
evaluation relies on its words and colours, so the tables below are an
interface: extend them by adding, never by renaming.

Rendering is vectorised: a whole batch is drawn at once from coordinate grids
and signed distances (one pass per shape kind, never one per image), with a
1-pixel anti-aliased edge. All randomness comes from one ``torch.Generator``,
so a seed fixes the images and their captions.

    images, attrs = sample(16, torch.Generator().manual_seed(0))
    caption(attrs, 0)             # the full caption of image 0
    caption(attrs, 0, form=Form(colour=True, shape=True))   # "a red circle"

``python -m pixloom.world grid OUT.png [--seed S] [--n 16]`` writes a grid of
samples with their captions, to look at.
"""
from __future__ import annotations

import itertools
import math
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterator, Optional

import torch

from .files import atomic_write

RESOLUTION = 64

# --- the tables of WORLD.md -------------------------------------------------

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOUR_NAMES: list[str] = list(COLOURS)

SHAPES: list[str] = ["circle", "square", "triangle", "star", "cross", "ring"]
ROTATING = {"square", "triangle", "star", "cross"}   # circle and ring never rotate

# name -> radius range in pixels (inclusive); "medium" is drawn but never said
SIZES: dict[str, tuple[float, float]] = {"small": (6.0, 9.0), "medium": (10.0, 14.0), "large": (16.0, 22.0)}
SIZE_NAMES: list[str] = list(SIZES)
SAID_SIZES: list[str] = ["small", "large"]

# index = 3 * row + column over the 3 x 3 grid of thirds (row 0 = top)
POSITIONS: list[str] = [
    "in the top left", "at the top", "in the top right",
    "on the left", "in the center", "on the right",
    "in the bottom left", "at the bottom", "in the bottom right",
]
# A centre closer than this fraction of a third to an inner border of the
# 3 x 3 grid gets no position phrase (12% of 64/3 px = 2.56 px).
POSITION_MARGIN = 0.12

PREFIXES: list[str] = ["a picture of", "an image of", "a drawing of"]

MAX_JITTER = 0.06          # WORLD.md: colours within +-0.06 per channel
_COLOUR_JITTER = 0.035     # the three parts below add up to MAX_JITTER
_GRADIENT = 0.015          # background gradient, at most this at the image's edge
_NOISE = 0.01              # background pixel noise, uniform +-_NOISE
MAX_ROTATION = 20.0        # degrees

_PALETTE = torch.tensor([COLOURS[c] for c in COLOUR_NAMES], dtype=torch.float32) / 255.0


def article(word: str) -> str:
    """The English indefinite article for the word that follows it."""
    return "an" if word[0] in "aeiou" else "a"


def words() -> list[str]:
    """Every word the caption grammar can produce, in a fixed order."""
    out: list[str] = []
    for w in ["a", "an"]:
        out.append(w)
    for phrase in PREFIXES + SAID_SIZES + COLOUR_NAMES + SHAPES + ["shape"] + POSITIONS + ["on", "background"]:
        for w in phrase.split():
            if w not in out:
                out.append(w)
    return out


# --- attributes ------------------------------------------------------------

@dataclass
class Attributes:
    """Per-image attributes of a batch; every field is a tensor of length n."""

    fg: torch.Tensor          # long, index into COLOUR_NAMES
    bg: torch.Tensor          # long, index into COLOUR_NAMES, != fg
    shape: torch.Tensor       # long, index into SHAPES
    size: torch.Tensor        # long, index into SIZE_NAMES (0 small, 1 medium, 2 large)
    radius: torch.Tensor      # float, pixels
    cx: torch.Tensor          # float, pixels from the left edge
    cy: torch.Tensor          # float, pixels from the top edge
    angle: torch.Tensor       # float, degrees (0 for circle and ring)
    position: torch.Tensor    # long, index into POSITIONS, -1 when none is said
    fg_rgb: torch.Tensor      # float [n, 3], jittered foreground colour
    bg_rgb: torch.Tensor      # float [n, 3], jittered background colour
    gradient: torch.Tensor    # float [n, 3], background gradient (dx, dy, amplitude)
    noise_seed: torch.Tensor  # long, seed of the background pixel noise

    def __len__(self) -> int:
        return int(self.fg.shape[0])

    def __getitem__(self, index) -> "Attributes":
        return Attributes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def describe(self, i: int) -> dict:
        """Image i's attributes as plain words and numbers."""
        pos = int(self.position[i])
        return {
            "fg": COLOUR_NAMES[int(self.fg[i])],
            "bg": COLOUR_NAMES[int(self.bg[i])],
            "shape": SHAPES[int(self.shape[i])],
            "size": SIZE_NAMES[int(self.size[i])],
            "radius": float(self.radius[i]),
            "center": (float(self.cx[i]), float(self.cy[i])),
            "angle": float(self.angle[i]),
            "position": POSITIONS[pos] if pos >= 0 else None,
        }


def position_of(cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
    """Position index for shape centres in pixels, -1 near an inner third border."""
    third = RESOLUTION / 3.0
    margin = POSITION_MARGIN * third

    def cell(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = (v / third).floor().clamp(0, 2).long()
        borders = torch.tensor([third, 2 * third])
        near = ((v[..., None] - borders).abs() < margin).any(-1)
        return idx, near

    col, near_x = cell(cx)
    row, near_y = cell(cy)
    pos = 3 * row + col
    return torch.where(near_x | near_y, torch.full_like(pos, -1), pos)


def _uniform(n: int, lo, hi, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _centre(n: int, radius: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Centre coordinates: mostly inside a chosen third (so positions are balanced),
    sometimes anywhere (so border cases without a phrase occur); at least 0.6 r
    from the edge, so most of the shape is visible."""
    third = RESOLUTION / 3.0
    margin = POSITION_MARGIN * third
    lo_all, hi_all = 0.6 * radius, RESOLUTION - 0.6 * radius
    cell = torch.randint(0, 3, (n,), generator=g).float()
    lo = torch.maximum(cell * third + margin, lo_all)
    hi = torch.minimum((cell + 1) * third - margin, hi_all)
    lo = torch.minimum(lo, hi)
    in_cell = _uniform(n, 0.0, 1.0, g) * (hi - lo) + lo
    anywhere = _uniform(n, 0.0, 1.0, g) * (hi_all - lo_all) + lo_all
    free = torch.rand(n, generator=g) < 0.2
    return torch.where(free, anywhere, in_cell)


def sample_attributes(
    n: int,
    generator: torch.Generator,
    *,
    fg: Optional[torch.Tensor] = None,
    bg: Optional[torch.Tensor] = None,
    shape: Optional[torch.Tensor] = None,
    size: Optional[torch.Tensor] = None,
) -> Attributes:
    """Draw n random images' attributes; any of fg/bg/shape/size may be fixed
    by passing an index tensor (a fixed fg and bg must differ)."""
    g = generator
    ncol = len(COLOUR_NAMES)
    # draw everything unconditionally, so fixing one field keeps the others' stream
    bg_draw = torch.randint(0, ncol, (n,), generator=g)
    fg_offset = torch.randint(1, ncol, (n,), generator=g)
    shape_draw = torch.randint(0, len(SHAPES), (n,), generator=g)
    size_draw = torch.randint(0, len(SIZE_NAMES), (n,), generator=g)
    unit_r = torch.rand(n, generator=g)
    unit_angle = torch.rand(n, generator=g)
    jitter = (torch.rand(n, 2, 3, generator=g) * 2 - 1) * _COLOUR_JITTER
    grad_dir = torch.rand(n, generator=g) * 2 * math.pi
    grad_amp = torch.rand(n, generator=g) * _GRADIENT
    noise_seed = torch.randint(0, 2**62, (n,), generator=g)

    bg_i = bg.long().expand(n).clone() if bg is not None else bg_draw
    if fg is not None:
        fg_i = fg.long().expand(n).clone()
        if bg is None:  # keep bg != fg
            bg_i = torch.where(bg_i == fg_i, (fg_i + fg_offset) % ncol, bg_i)
    else:
        fg_i = (bg_i + fg_offset) % ncol
    if bool((fg_i == bg_i).any()):
        raise ValueError("foreground and background colours must differ")
    shape_i = shape.long().expand(n).clone() if shape is not None else shape_draw
    size_i = size.long().expand(n).clone() if size is not None else size_draw

    ranges = torch.tensor([SIZES[s] for s in SIZE_NAMES])
    r_lo, r_hi = ranges[size_i, 0], ranges[size_i, 1]
    radius = r_lo + (r_hi - r_lo) * unit_r
    cx = _centre(n, radius, g)
    cy = _centre(n, radius, g)
    rotating = torch.tensor([s in ROTATING for s in SHAPES])[shape_i]
    angle = torch.where(rotating, (unit_angle * 2 - 1) * MAX_ROTATION, torch.zeros(n))
    fg_rgb = (_PALETTE[fg_i] + jitter[:, 0]).clamp(0, 1)
    bg_rgb = (_PALETTE[bg_i] + jitter[:, 1]).clamp(0, 1)
    gradient = torch.stack([grad_dir.cos(), grad_dir.sin(), grad_amp], dim=1)
    return Attributes(
        fg=fg_i, bg=bg_i, shape=shape_i, size=size_i, radius=radius, cx=cx, cy=cy,
        angle=angle, position=position_of(cx, cy), fg_rgb=fg_rgb, bg_rgb=bg_rgb,
        gradient=gradient, noise_seed=noise_seed,
    )


# --- rendering -------------------------------------------------------------

def _box(x: torch.Tensor, y: torch.Tensor, hx: torch.Tensor, hy: torch.Tensor) -> torch.Tensor:
    qx, qy = x.abs() - hx, y.abs() - hy
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _segment(px, py, ax, ay, bx, by) -> torch.Tensor:
    """Distance from points p to the segment a-b (a, b broadcastable)."""
    dx, dy = bx - ax, by - ay
    t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
    return torch.sqrt((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2)


def signed_distance(kind: str, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance in pixels (negative inside) to a shape of radius r centred at
    the origin; x to the right, y downwards (so "up" is -y), unrotated."""
    if kind == "circle":
        return torch.sqrt(x * x + y * y) - r
    if kind == "square":
        return _box(x, y, 0.8 * r, 0.8 * r)
    if kind == "cross":
        return torch.minimum(_box(x, y, r, 0.3 * r), _box(x, y, 0.3 * r, r))
    if kind == "ring":
        return (torch.sqrt(x * x + y * y) - 0.72 * r).abs() - 0.28 * r
    if kind == "triangle":
        # equilateral, apex up, circumradius r: the inradius is r / 2
        d = y - r / 2                        # the bottom edge (outward normal down, +y)
        for a in (math.radians(30), math.radians(150)):
            d = torch.maximum(d, x * math.cos(a) - y * math.sin(a) - r / 2)
        # round off the outside of the corners exactly
        s3 = math.sqrt(3.0)
        corners = [(0.0, -1.0), (s3 / 2, 0.5), (-s3 / 2, 0.5)]
        edge = None
        for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
            e = _segment(x, y, ax * r, ay * r, bx * r, by * r)
            edge = e if edge is None else torch.minimum(edge, e)
        return torch.where(d > 0, edge, d)
    if kind == "star":
        # fold into the sector between an outer point (angle 0 = up) and an inner one
        theta = torch.atan2(x, -y)
        sector = 2 * math.pi / 5
        theta = torch.remainder(theta, sector)
        theta = torch.minimum(theta, sector - theta)
        rho = torch.sqrt(x * x + y * y)
        qx, qy = rho * theta.cos(), rho * theta.sin()
        ax, ay = r, torch.zeros_like(r)
        inner = 0.42 * r
        bx, by = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
        dist = _segment(qx, qy, ax, ay, bx, by)
        # inside the star within this sector = the triangle (origin, a, b)
        cross = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
        return torch.where(cross > 0, -dist, dist)
    raise ValueError(f"unknown shape {kind!r}")


def coverage(attrs: Attributes, resolution: int = RESOLUTION) -> torch.Tensor:
    """Anti-aliased foreground coverage [n, resolution, resolution] in 0..1."""
    n = len(attrs)
    scale = resolution / RESOLUTION
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / scale
    gy, gx = coords[:, None], coords[None, :]
    out = torch.zeros(n, resolution, resolution)
    for k, kind in enumerate(SHAPES):
        idx = (attrs.shape == k).nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            continue
        a = torch.deg2rad(attrs.angle[idx])[:, None, None]
        dx = gx - attrs.cx[idx][:, None, None]
        dy = gy - attrs.cy[idx][:, None, None]
        # rotate the grid by -angle into the shape's own frame
        x = dx * a.cos() + dy * a.sin()
        y = -dx * a.sin() + dy * a.cos()
        d = signed_distance(kind, x, y, attrs.radius[idx][:, None, None]) * scale
        out[idx] = (0.5 - d).clamp(0, 1)
    return out


def render(attrs: Attributes, resolution: int = RESOLUTION) -> torch.Tensor:
    """Images [n, 3, resolution, resolution], float in 0..1."""
    n = len(attrs)
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
    gy, gx = coords[:, None], coords[None, :]
    gdx, gdy, amp = (attrs.gradient[:, i, None, None] for i in range(3))
    ramp = (gx * gdx + gy * gdy) / math.sqrt(2) * amp             # within +-amp
    g = torch.Generator().manual_seed(int(attrs.noise_seed[0]) if n else 0)
    noise = (torch.rand(n, 1, resolution, resolution, generator=g) * 2 - 1) * _NOISE
    background = attrs.bg_rgb[:, :, None, None] + ramp[:, None] + noise
    mask = coverage(attrs, resolution)[:, None]
    images = mask * attrs.fg_rgb[:, :, None, None] + (1 - mask) * background
    return images.clamp(0, 1)


def sample(n: int, generator: torch.Generator, **fixed) -> tuple[torch.Tensor, Attributes]:
    """n random images [n, 3, 64, 64] in 0..1 and their attributes."""
    attrs = sample_attributes(n, generator, **fixed)
    return render(attrs), attrs


def mosaic_windows(n: int, generator: torch.Generator, low: int = 0, high: int = RESOLUTION) -> torch.Tensor:
    """n windows [n, 3, 64, 64] over 2 x 2 mosaics of world images, each window's
    top and left offsets drawn in low..high: scenes cut across shape borders,
    which no caption describes."""
    r = RESOLUTION
    tiles, _ = sample(4 * n, generator)
    tiles = tiles.view(n, 2, 2, 3, r, r).permute(0, 3, 1, 4, 2, 5).reshape(n, 3, 2 * r, 2 * r)
    oy = torch.randint(low, high + 1, (n,), generator=generator)
    ox = torch.randint(low, high + 1, (n,), generator=generator)
    return torch.stack([tiles[i, :, oy[i]: oy[i] + r, ox[i]: ox[i] + r] for i in range(n)])


def zoomed_windows(n: int, generator: torch.Generator, factor: int = 2) -> torch.Tensor:
    """n windows [n, 3, 64, 64] over world scenes rendered at ``factor`` times the
    resolution: the scale a model trained at 64 px meets when it draws at
    64 * factor px, with the shapes' edges as smooth as the world renders them there."""
    r = RESOLUTION
    scenes = render(sample_attributes(n, generator), r * factor)
    top = torch.randint(0, r * factor - r + 1, (n,), generator=generator)
    left = torch.randint(0, r * factor - r + 1, (n,), generator=generator)
    return torch.stack([scenes[i, :, top[i]: top[i] + r, left[i]: left[i] + r] for i in range(n)])


# --- captions --------------------------------------------------------------

@dataclass(frozen=True)
class Form:
    """Which optional parts a caption says (the shape word, or else "shape")."""

    prefix: Optional[str] = None
    size: bool = False
    colour: bool = False
    shape: bool = False
    position: bool = False
    background: bool = False


FULL = Form(size=True, colour=True, shape=True, position=True, background=True)


@dataclass(frozen=True)
class Content:
    """What a caption claims; None = not said. Values are words or phrases."""

    size: Optional[str] = None
    colour: Optional[str] = None
    shape: Optional[str] = None
    position: Optional[str] = None
    background: Optional[str] = None


def compose(content: Content, prefix: Optional[str] = None) -> str:
    """The caption text that says exactly ``content``."""
    noun = [w for w in (content.size, content.colour, content.shape or "shape") if w]
    parts = [article(noun[0])] + noun
    if content.position:
        parts.append(content.position)
    if content.background:
        parts += ["on", article(content.background), content.background, "background"]
    text = " ".join(parts)
    return f"{prefix} {text}" if prefix else text


def parse(text: str) -> Content:
    """The claims of a caption of the grammar (raises ValueError otherwise)."""
    words_ = text.lower().split()
    for p in PREFIXES:
        if words_[: len(p.split())] == p.split():
            words_ = words_[len(p.split()):]
            break
    if not words_ or words_[0] not in ("a", "an"):
        raise ValueError(f"not a caption of the shapes world: {text!r}")
    rest = words_[1:]
    got: dict = {}
    if rest and rest[0] in SAID_SIZES:
        got["size"] = rest.pop(0)
    if rest and rest[0] in COLOUR_NAMES:
        got["colour"] = rest.pop(0)
    if rest and rest[0] in SHAPES:
        got["shape"] = rest.pop(0)
    elif rest and rest[0] == "shape":
        rest.pop(0)
    else:
        raise ValueError(f"no shape in caption {text!r}")
    for phrase in POSITIONS:
        if rest[: len(phrase.split())] == phrase.split():
            got["position"] = phrase
            rest = rest[len(phrase.split()):]
            break
    if len(rest) == 4 and rest[0] == "on" and rest[2] in COLOUR_NAMES and rest[3] == "background":
        got["background"] = rest[2]
        rest = []
    if rest:
        raise ValueError(f"unexpected words {' '.join(rest)!r} in caption {text!r}")
    expected = compose(Content(**got))
    if " ".join(words_) != expected:
        raise ValueError(f"wrong article in caption {text!r} (expected {expected!r})")
    return Content(**got)


def content_of(attrs: Attributes, i: int, form: Form) -> Content:
    """What a caption of ``form`` says about image i; the position is left out
    when the image has none, the size when it is medium."""
    size = SIZE_NAMES[int(attrs.size[i])]
    pos = int(attrs.position[i])
    return Content(
        size=size if form.size and size in SAID_SIZES else None,
        colour=COLOUR_NAMES[int(attrs.fg[i])] if form.colour else None,
        shape=SHAPES[int(attrs.shape[i])] if form.shape else None,
        position=POSITIONS[pos] if form.position and pos >= 0 else None,
        background=COLOUR_NAMES[int(attrs.bg[i])] if form.background else None,
    )


def random_form(generator: torch.Generator, p: float = 0.5) -> Form:
    """A random caption form: each optional part said with probability p."""
    u = torch.rand(7, generator=generator).tolist()
    prefix = PREFIXES[int(u[6] * len(PREFIXES))] if u[5] < 0.3 else None
    return Form(prefix=prefix, size=u[0] < p, colour=u[1] < p, shape=u[2] < 0.5 + p / 2,
                position=u[3] < p, background=u[4] < p)


def caption(attrs: Attributes, i: int, form: Optional[Form] = None,
            generator: Optional[torch.Generator] = None) -> str:
    """A caption of image i: the given form, a random one (generator), or the full one."""
    if form is None:
        form = random_form(generator) if generator is not None else FULL
    return compose(content_of(attrs, i, form), form.prefix)


def all_captions(form: Form) -> list[tuple[str, Content]]:
    """Every caption of a form (all values of its parts), with what each says.
    E.g. Form(colour=True, shape=True) gives the 48 colour+shape captions."""
    axes = [
        SAID_SIZES if form.size else [None],
        COLOUR_NAMES if form.colour else [None],
        SHAPES if form.shape else [None],
        POSITIONS if form.position else [None],
        COLOUR_NAMES if form.background else [None],
    ]
    out = []
    for size, colour, shape, pos, bg in itertools.product(*axes):
        if colour is not None and colour == bg:
            continue  # never true: the foreground differs from the background
        c = Content(size=size, colour=colour, shape=shape, position=pos, background=bg)
        out.append((compose(c, form.prefix), c))
    return out


def content_ids(contents: list[Content]) -> torch.Tensor:
    """[n_captions, 5] long: size, colour, shape, position, background indices
    (into SIZE_NAMES, COLOUR_NAMES, SHAPES, POSITIONS, COLOUR_NAMES); -1 = not said."""
    def idx(table, value):
        return table.index(value) if value is not None else -1

    return torch.tensor(
        [[idx(SIZE_NAMES, c.size), idx(COLOUR_NAMES, c.colour), idx(SHAPES, c.shape),
          idx(POSITIONS, c.position), idx(COLOUR_NAMES, c.background)] for c in contents],
        dtype=torch.long,
    ).reshape(-1, 5)


def truth(contents, attrs: Attributes) -> torch.Tensor:
    """[n_images, n_captions] int8: 1 where the caption is true of the image,
    0 where false, -1 where unclear (a position said of an image near a third's
    border, or small/large said of a medium one, the rest being true).
    ``contents`` is a list of Content or the tensor of :func:`content_ids`."""
    ids = contents if isinstance(contents, torch.Tensor) else content_ids(contents)
    said = ids >= 0                                                   # [m, 5]
    image = torch.stack([attrs.size, attrs.fg, attrs.shape, attrs.position, attrs.bg], dim=1)  # [n, 5]
    match = (image[:, None, :] == ids[None, :, :]) | ~said[None]      # [n, m, 5]
    medium = (attrs.size == SIZE_NAMES.index("medium"))[:, None] & said[None, :, 0]
    nopos = (attrs.position < 0)[:, None] & said[None, :, 3]
    match[..., 0] |= medium
    match[..., 3] |= nopos
    ok = match.all(-1)
    out = ok.to(torch.int8)
    return torch.where(ok & (medium | nopos), torch.full_like(out, -1), out)


# --- a grid to look at -----------------------------------------------------

def grid(images: torch.Tensor, captions: list[str], columns: int = 4, scale: int = 3):
    """A PIL image of the samples, each with its caption wrapped underneath."""
    import textwrap

    from PIL import Image, ImageDraw

    n = images.shape[0]
    size = images.shape[-1] * scale
    rows = math.ceil(n / columns)
    text_h = 44
    sheet = Image.new("RGB", (columns * (size + 8) + 8, rows * (size + text_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    pixels = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    for k in range(n):
        x0 = 8 + (k % columns) * (size + 8)
        y0 = 8 + (k // columns) * (size + text_h + 8)
        tile = Image.fromarray(pixels[k]).resize((size, size), Image.NEAREST)
        sheet.paste(tile, (x0, y0))
        lines = textwrap.wrap(captions[k], width=size // 6)
        draw.multiline_text((x0, y0 + size + 2), "\n".join(lines), fill="black", spacing=1)
    return sheet


def main(argv: Optional[list[str]] = None) -> int:
    from .errors import ArgumentParser

    parser = ArgumentParser(prog="pixloom world", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grid", help="write a PNG grid of samples with their captions")
    g.add_argument("out", help="output PNG path")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--n", type=int, default=16)
    g.add_argument("--columns", type=int, default=4)
    g.add_argument("--random-forms", action="store_true", help="random caption forms instead of full captions")
    args = parser.parse_args(argv)
    out, image_format = _grid_target(args.out)
    if args.n < 1 or args.columns < 1:
        g.error(f"--n and --columns must be at least 1 (got {args.n} and {args.columns})")
    gen = torch.Generator().manual_seed(args.seed)
    images, attrs = sample(args.n, gen)
    if args.random_forms:
        caps = [caption(attrs, i, generator=gen) for i in range(args.n)]
    else:
        caps = [caption(attrs, i) for i in range(args.n)]
    picture = grid(images, caps, columns=args.columns)
    atomic_write(out, lambda tmp: picture.save(tmp, format=image_format))
    print(f"wrote {out} ({args.n} samples, seed {args.seed})")
    return 0


def _grid_target(text: str) -> tuple:
    """The grid's output path (its folder created) and the image format its extension names."""
    from PIL import Image

    from .errors import OutputError, PixloomError

    out = Path(text).expanduser()
    if out.is_dir():
        raise PixloomError(f"world grid {out}: is a directory; give an image file name such as grid.png")
    image_format = Image.registered_extensions().get(out.suffix.lower())
    if image_format is None:
        raise PixloomError(f"world grid {out}: unknown image extension {out.suffix or '(none)'!r} "
                           f"(use .png, .jpg or .webp)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"world grid {out}: cannot create its folder ({exc.strerror})") from exc
    return out, image_format


def iter_batches(batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, Attributes]]:
    """An endless stream of (images, attributes) batches."""
    while True:
        yield sample(batch, generator)


if __name__ == "__main__":  # the same as ``pixloom world``: one-line errors, exit codes
    from pixloom.cli import main as _cli

    sys.exit(_cli(["world", *sys.argv[1:]]))
