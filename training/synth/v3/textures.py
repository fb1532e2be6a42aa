"""Albedo textures for generator v3: real photographs scikit-image ships, and procedural noise.

Every texture is a float32 (H, W, 3) array of linear-sRGB albedo in [0, 0.9], tileable where
procedural (the photographs are mirrored at their edges by the renderer instead). A texture is
a grey pattern (its detail) times a colour that drifts across the surface (two shades of one colour mixed by
low-frequency noise), the way paint, soil and stone vary in colour over a few metres.

The photographs are the 512x512 greyscale brick wall, grass and gravel that scikit-image keeps
inside its wheel (skimage/data/*.png): nothing is downloaded.
"""

from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage import data

PHOTOGRAPHS = ("brick", "grass", "gravel")
SIZE = 256  # procedural textures: side in texels; surfaces repeat them every `metres` (v3.scenes)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 (sRGB) decoding of values in [0, 1]."""
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


@lru_cache
def photograph(name: str) -> np.ndarray:
    """float32 (512, 512) linear luminance of one of PHOTOGRAPHS, scaled to mean 1."""
    pixels = srgb_to_linear(getattr(data, name)().astype(np.float64) / 255.0)
    if name == "brick":
        pixels = pixels.T  # its courses run down the photograph; on our walls they run along x
    return (pixels / pixels.mean()).astype(np.float32)


def fbm(rng: np.random.Generator, cells: tuple[int, int], octaves: int = 5, gain: float = 0.5) -> np.ndarray:
    """Tileable fractal value noise, float32 (SIZE, SIZE) in [0, 1].

    Octave k is a random lattice of cells * 2**k points, upsampled with cubic splines that wrap
    around the edges (so the texture tiles); amplitudes fall by `gain` per octave.
    `cells` is (rows, columns): unequal counts stretch the noise into grain or streaks.
    """
    total = np.zeros((SIZE, SIZE))
    for octave in range(octaves):
        rows, cols = (min(SIZE, c * 2**octave) for c in cells)
        lattice = rng.uniform(-1, 1, (rows, cols))
        total += gain**octave * ndimage.zoom(
            lattice, (SIZE / rows, SIZE / cols), order=3, mode="grid-wrap", grid_mode=True
        )
    low, high = np.percentile(total, [1, 99])
    return np.clip((total - low) / (high - low), 0, 1).astype(np.float32)


def bricks(rng: np.random.Generator, rows: int, columns: int, mortar: float) -> np.ndarray:
    """Running-bond blocks (bricks, pavers, tiles), each its own shade, with joints `mortar` wide (texture units)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    row = np.floor(y * rows)
    across = x * columns + 0.5 * (row % 2)
    column = np.floor(across) % columns
    fy, fx = y * rows - row, across - np.floor(across)
    joint = (np.minimum(fy, 1 - fy) / rows < mortar) | (np.minimum(fx, 1 - fx) / columns < mortar)
    shade = rng.uniform(0.7, 1.15, (rows, columns))[row.astype(int), column.astype(int)]
    grain = 0.75 + 0.5 * fbm(rng, (16, 16), octaves=4)
    return np.where(joint, 0.45, shade) * grain


def planks(rng: np.random.Generator, count: int) -> np.ndarray:
    """Boards running along the texture's x axis, with grain and a gap between them, (SIZE, SIZE)."""
    y = np.arange(SIZE)[:, None] / SIZE * count
    board = np.floor(y).astype(int) % count
    shade = rng.uniform(0.65, 1.2, count)[board]
    grain = 0.6 + 0.8 * fbm(rng, (48, 3), octaves=4)
    gap = np.abs(y - np.floor(y) - 0.5) > 0.46
    return np.where(gap, 0.25, shade * grain)


# Each kind: the grey detail and how strongly it shows, and the sRGB colours (8-bit) its two
# tints are drawn around. Colours are typical of the material, not measured.
KINDS = {
    "grass": ("grass", 0.9, [(70, 92, 40), (96, 110, 48), (60, 80, 45), (110, 104, 60)]),
    "gravel": ("gravel", 0.8, [(120, 116, 108), (135, 122, 100), (96, 96, 96)]),
    "brick": ("brick", 0.8, [(150, 72, 52), (120, 60, 48), (170, 110, 80), (130, 130, 125)]),
    "stone": ("rock", 0.8, [(130, 126, 118), (110, 100, 88), (150, 145, 135), (95, 90, 85)]),
    "dirt": ("fbm", 0.7, [(105, 80, 58), (90, 72, 55), (125, 100, 72)]),
    "asphalt": ("fine", 0.6, [(52, 52, 54), (64, 62, 60), (40, 40, 42)]),
    "concrete": ("fine", 0.35, [(150, 148, 140), (170, 165, 155), (125, 125, 122)]),
    "plaster": ("fbm", 0.25, [(200, 190, 170), (185, 170, 150), (170, 180, 185), (210, 205, 195), (160, 120, 95)]),
    "paving": ("blocks", 0.6, [(140, 135, 125), (150, 110, 90), (110, 110, 112)]),
    "tiles": ("tiles", 0.6, [(190, 185, 175), (120, 100, 85), (90, 95, 100)]),
    "wood": ("planks", 0.9, [(140, 100, 65), (110, 78, 50), (160, 130, 95), (90, 70, 55)]),
    "bark": ("bark", 1.0, [(80, 65, 50), (95, 85, 75), (65, 55, 45)]),
    "leaves": ("leaves", 1.0, [(55, 85, 35), (80, 100, 40), (45, 70, 40), (110, 100, 40)]),
    "paint": (
        "fbm",
        0.12,
        [(170, 40, 35), (40, 80, 140), (220, 200, 60), (60, 120, 70), (200, 200, 200), (30, 30, 32)],
    ),
    "metal": ("fbm", 0.2, [(160, 160, 165), (120, 110, 100), (180, 170, 150)]),
}


def detail(rng: np.random.Generator, pattern: str) -> np.ndarray:
    """The grey pattern of a kind, float32 (H, W) with mean 1."""
    if pattern in PHOTOGRAPHS:
        return photograph(pattern)
    if pattern == "fbm":
        grey = fbm(rng, (4, 4))
    elif pattern == "rock":
        grey = 0.6 * fbm(rng, (6, 6), gain=0.65) + 0.4 * fbm(rng, (48, 48), octaves=2)
    elif pattern == "fine":
        grey = 0.5 * fbm(rng, (32, 32), octaves=3) + 0.5 * fbm(rng, (4, 4))
    elif pattern == "blocks":
        grey = bricks(rng, rows=int(rng.integers(4, 9)), columns=int(rng.integers(2, 5)), mortar=0.01)
    elif pattern == "tiles":
        grey = bricks(rng, rows=4, columns=4, mortar=0.006)
    elif pattern == "planks":
        grey = planks(rng, int(rng.integers(3, 7)))
    elif pattern == "bark":
        grey = fbm(rng, (2, 24), octaves=4, gain=0.6)
    else:  # leaves: blotches of light and dark foliage
        grey = fbm(rng, (24, 24), octaves=3, gain=0.7) ** 1.5
    return (grey / grey.mean()).astype(np.float32)


def jitter(rng: np.random.Generator, srgb8: tuple[int, int, int]) -> np.ndarray:
    """A linear-sRGB colour near an 8-bit sRGB one: up to 20% brighter or darker, each channel up to 5% off."""
    srgb = np.array(srgb8) / 255.0 * rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, 3)
    return srgb_to_linear(np.clip(srgb, 0, 1))


def albedo(rng: np.random.Generator, kind: str) -> np.ndarray:
    """float32 (H, W, 3) linear-sRGB albedo of a material kind (a key of KINDS), clipped to [0, 0.9]."""
    pattern, contrast, palette = KINDS[kind]
    grey = 1 + contrast * (detail(rng, pattern) - 1)
    colour = palette[int(rng.integers(len(palette)))]
    first, second = jitter(rng, colour), jitter(rng, colour)
    mix = fbm(rng, (2, 2), octaves=3)
    if grey.shape[0] != SIZE:
        mix = ndimage.zoom(mix, grey.shape[0] / SIZE, order=1)
    tint = first + mix[..., None] * (second - first)
    return np.clip(tint * grey[..., None], 0, 0.9).astype(np.float32)
