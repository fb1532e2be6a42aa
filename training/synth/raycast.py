"""Generators v1 and v2: random spheres, boxes and cylinders, ray cast with torch and shaded under a distant sun.

Each scene is ray cast once from its camera; the same hits are then shaded by a directional
light from the North at 6500 K (input) and from the East at 4500 K (target), both at one
elevation, with cast shadows, Lambertian and Blinn-Phong shading, and an ambient term, all
in linear light, then written as 8-bit sRGB.

Version 1: a textured ground, boxes, spheres, cylinders and sometimes walls; the light at
35 degrees, a bright ambient term, stripes, checkers and noise.
Version 2, closer to VIDIT's renders: the light low (18 degrees) so shadows are long, a dark
ambient term, buildings, walls, clutter and overhangs on pillars, natural textures (fractal
noise, wood, stone) and both glossy and matte materials.
"""

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.synth.layout import (
    EAST_4500,
    NORTH_6500,
    Light,
    check_same_set,
    make_layout,
    pair_done,
    save_pair,
    scene_number,
    scene_rng,
    set_meta,
    write_meta,
)

EPS = 1e-3
NO_HIT = float("inf")


@dataclass(frozen=True)
class LightSetup:
    """The sun of generators v1/v2: its two bearings and colours, its elevation (degrees), strength (linear
    irradiance on a surface facing it) and the ambient term's, and the half-angle (degrees) of its disc."""

    source: Light = NORTH_6500
    target: Light = EAST_4500
    elevation_deg: float = 35.0
    sun: float = 3.0
    ambient: float = 0.35
    shadow_softness_deg: float = 1.5


LIGHTS = {
    "1": LightSetup(),
    "2": LightSetup(elevation_deg=18.0, sun=3.6, ambient=0.1, shadow_softness_deg=1.0),
}


def planckian_rgb(kelvin: float) -> np.ndarray:
    """Linear sRGB of a blackbody at `kelvin`, unit luminance (Kim et al.'s Planckian-locus fit)."""
    t = kelvin
    if t <= 4000:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    xyz = np.array([x / y, 1.0, (1 - x - y) / y])
    to_srgb = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    return np.clip(to_srgb @ xyz, 0, None)


def light_direction(azimuth_deg: float, elevation_deg: float) -> torch.Tensor:
    """Unit vector towards the light; x is East, y up, -z North."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return torch.tensor([math.sin(az) * math.cos(el), math.sin(el), -math.cos(az) * math.cos(el)])


# Ray-primitive intersections. Each takes origins and directions (N, 3) and returns the
# distance along the ray (inf where missed) and the unit surface normal (N, 3).


def intersect_sphere(o, d, center, radius):
    oc = o - center
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius * radius)
    root = disc.clamp(min=0).sqrt()
    t = torch.where(-b - root > EPS, -b - root, -b + root)
    t = torch.where((disc > 0) & (t > EPS), t, NO_HIT)
    normal = (o + t.clamp(max=1e6)[:, None] * d - center) / radius
    return t, normal


def intersect_box(o, d, center, half, yaw):
    """A box resting on its base, turned by `yaw` about the vertical axis."""
    c, s = math.cos(yaw), math.sin(yaw)
    to_local = torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
    lo = (o - center) @ to_local.T
    ld = d @ to_local.T
    safe = torch.where(ld.abs() < 1e-9, torch.full_like(ld, 1e-9), ld)
    t1 = (-half - lo) / safe
    t2 = (half - lo) / safe
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    t = torch.where(t_near > EPS, t_near, t_far)
    t = torch.where((t_far >= t_near) & (t > EPS), t, NO_HIT)
    local_hit = (lo + t.clamp(max=1e6)[:, None] * ld) / half
    axis = local_hit.abs().argmax(-1)
    local_normal = F.one_hot(axis, 3).float() * local_hit.gather(-1, axis[:, None]).sign()
    return t, local_normal @ to_local


def intersect_cylinder(o, d, center, radius, height):
    """An upright cylinder standing on the ground at center (x, 0, z)."""
    ox, oy, oz = (o - center).unbind(-1)
    dx, dy, dz = d.unbind(-1)
    a = (dx * dx + dz * dz).clamp(min=1e-12)
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - radius * radius)
    root = disc.clamp(min=0).sqrt()
    t_side = torch.where((-b - root) / a > EPS, (-b - root) / a, (-b + root) / a)
    y_side = oy + t_side * dy
    t_side = torch.where((disc > 0) & (t_side > EPS) & (y_side >= 0) & (y_side <= height), t_side, NO_HIT)
    safe_dy = torch.where(dy.abs() < 1e-9, torch.full_like(dy, 1e-9), dy)
    t_cap = (height - oy) / safe_dy
    cx, cz = ox + t_cap * dx, oz + t_cap * dz
    t_cap = torch.where((t_cap > EPS) & (cx * cx + cz * cz <= radius * radius), t_cap, NO_HIT)
    side = t_side < t_cap
    t = torch.minimum(t_side, t_cap)
    p = (o - center) + t.clamp(max=1e6)[:, None] * d
    side_normal = torch.stack([p[:, 0], torch.zeros_like(t), p[:, 2]], -1) / radius
    cap_normal = torch.tensor([0.0, 1.0, 0.0]).expand_as(p)
    return t, torch.where(side[:, None], side_normal, cap_normal)


def intersect_ground(o, d):
    safe_dy = torch.where(d[:, 1].abs() < 1e-9, torch.full_like(d[:, 1], -1e-9), d[:, 1])
    t = -o[:, 1] / safe_dy
    t = torch.where(t > EPS, t, NO_HIT)
    return t, torch.tensor([0.0, 1.0, 0.0]).expand_as(o)


@dataclass
class PatternMaterial:
    """A v1/v2 surface: a procedural albedo pattern between two linear colours, and Blinn-Phong specular."""

    colors: torch.Tensor  # (2, 3) linear albedo pair the pattern mixes between
    pattern: str  # plain | checker | stripes | noise | marble | fbm | wood | stone
    frequency: float
    noise: torch.Tensor  # (1, 1, 8, 8, 8) lattice for value noise
    specular: float
    shininess: float

    def albedo(self, p: torch.Tensor) -> torch.Tensor:
        if self.pattern == "plain":
            mix = torch.zeros(len(p))
        elif self.pattern == "checker":
            mix = (torch.floor(p * self.frequency).sum(-1) % 2).float()
        elif self.pattern == "stripes":
            mix = (torch.sin((p[:, 0] + 0.6 * p[:, 2] + 0.3 * p[:, 1]) * self.frequency * math.pi) > 0).float()
        elif self.pattern in ("noise", "marble"):
            value = self.value_noise(p, self.frequency)
            mix = value if self.pattern == "noise" else 0.5 + 0.5 * torch.sin(6.0 * p[:, 0] + 8.0 * value)
        elif self.pattern == "fbm":
            mix = self.fbm(p)
        elif self.pattern == "wood":
            # Rings around a vertical axis, bent by noise, with fine grain along them.
            radius = p[:, [0, 2]].norm(dim=-1) * self.frequency * 2.0 + 3.0 * self.fbm(p * 0.5)
            mix = (radius - radius.floor()).pow(3) * 0.8 + 0.2 * self.value_noise(p * torch.tensor([1, 8, 1]), 8.0)
        else:
            mix = self.stone(p)
        return self.colors[0] + mix[:, None] * (self.colors[1] - self.colors[0])

    def value_noise(self, p: torch.Tensor, frequency: float) -> torch.Tensor:
        coords = (p * frequency / 8.0).remainder(2.0) - 1.0
        grid = coords[None, :, None, None, :]
        return F.grid_sample(self.noise, grid, mode="bilinear", align_corners=False).flatten()

    def fbm(self, p: torch.Tensor) -> torch.Tensor:
        """Four octaves of value noise: the rough, self-similar look of plaster, rock and dirt."""
        total = sum(0.5**octave * self.value_noise(p, self.frequency * 2.0**octave) for octave in range(4))
        return total / (1 + 0.5 + 0.25 + 0.125)

    def stone(self, p: torch.Tensor) -> torch.Tensor:
        """Irregular cells (distance to the nearest of random sites) with darker mortar between them."""
        cells = p * self.frequency * 0.5
        sites = self.noise.flatten()[:96].reshape(32, 3) * 8.0
        distances = torch.cdist(cells.remainder(8.0), sites).topk(2, largest=False).values
        mortar = ((distances[:, 1] - distances[:, 0]) * 4.0).clamp(0, 1)
        return mortar * (0.6 + 0.4 * self.fbm(p))


def random_material(rng: np.random.Generator, version: str = "1") -> PatternMaterial:
    hue = rng.uniform(0, 1)
    colors = []
    for shift in (0.0, rng.uniform(-0.25, 0.25)):
        h = (hue + shift) % 1.0
        rgb = np.clip(np.abs((h * 6 + np.array([0, 4, 2])) % 6 - 3) - 1, 0, 1)
        saturation, value = rng.uniform(0.1, 0.9), rng.uniform(0.25, 0.95)
        colors.append((value * (1 - saturation + saturation * rgb)) ** 2.2)
    if version == "1":
        return PatternMaterial(
            colors=torch.tensor(np.array(colors), dtype=torch.float32),
            pattern=str(rng.choice(["plain", "checker", "stripes", "noise", "marble"])),
            frequency=float(rng.uniform(1.0, 6.0)),
            noise=torch.tensor(rng.uniform(0, 1, (1, 1, 8, 8, 8)), dtype=torch.float32),
            specular=float(rng.choice([0.0, rng.uniform(0.05, 0.5)])),
            shininess=float(rng.uniform(8, 96)),
        )
    glossy = rng.uniform() < 0.35
    return PatternMaterial(
        colors=torch.tensor(np.array(colors), dtype=torch.float32),
        pattern=str(rng.choice(["plain", "checker", "stripes", "marble", "fbm", "fbm", "wood", "stone", "stone"])),
        frequency=float(rng.uniform(1.0, 6.0)),
        noise=torch.tensor(rng.uniform(0, 1, (1, 1, 8, 8, 8)), dtype=torch.float32),
        specular=float(rng.uniform(0.3, 0.9) if glossy else rng.uniform(0.0, 0.04)),
        shininess=float(rng.uniform(40, 200) if glossy else rng.uniform(4, 16)),
    )


@dataclass
class Shape:
    intersect: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    material: PatternMaterial
    bound_center: torch.Tensor | None = None  # a sphere holding the shape; None for the ground
    bound_radius: float = 0.0

    def may_hit(self, o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Rays that pass through the bounding sphere: the exact test runs on these alone."""
        if self.bound_center is None:
            return torch.ones(len(o), dtype=torch.bool)
        oc = o - self.bound_center
        b = (oc * d).sum(-1)
        c = (oc * oc).sum(-1) - self.bound_radius**2
        return (b * b - c > 0) & ((b < 0) | (c < 0))


# One builder per kind of shape for both generators. Each draws its material after its geometry:
# the seeded scenes of both versions depend on that order.


def sphere_shape(rng, x: float, z: float, radius: float, version: str) -> Shape:
    center = torch.tensor([x, radius, z], dtype=torch.float32)
    return Shape(partial(intersect_sphere, center=center, radius=radius), random_material(rng, version), center, radius)


def box_shape(rng, center: list[float], half: list[float], yaw: float, version: str) -> Shape:
    c, h = torch.tensor(center, dtype=torch.float32), torch.tensor(half, dtype=torch.float32)
    return Shape(partial(intersect_box, center=c, half=h, yaw=yaw), random_material(rng, version), c, float(h.norm()))


def cylinder_shape(rng, x: float, z: float, radius: float, height: float, version: str) -> Shape:
    center = torch.tensor([x, 0.0, z], dtype=torch.float32)
    shape = partial(intersect_cylinder, center=center, radius=radius, height=height)
    bound = center + torch.tensor([0.0, height / 2, 0.0]), math.hypot(radius, height / 2)
    return Shape(shape, random_material(rng, version), *bound)


def random_object(rng, sphere_max: float, cylinder_radii: tuple[float, float], version: str) -> Shape:
    """A sphere, box or cylinder on the ground within 3.5 m of the origin: the objects of both generators.

    Sizes in metres; v2's spheres and cylinders are a little smaller (sphere_max, cylinder_radii).
    """
    x, z = rng.uniform(-3.5, 3.5, 2)
    kind = rng.choice(["sphere", "box", "cylinder"])
    if kind == "sphere":
        return sphere_shape(rng, x, z, rng.uniform(0.3, sphere_max), version)
    if kind == "box":
        half = rng.uniform([0.2, 0.2, 0.2], [1.0, 1.3, 1.0])
        return box_shape(rng, [x, half[1], z], list(half), float(rng.uniform(0, math.pi)), version)
    return cylinder_shape(rng, x, z, rng.uniform(*cylinder_radii), rng.uniform(0.4, 2.5), version)


def random_shapes_v1(rng: np.random.Generator) -> list[Shape]:
    """The ground first, then 4-9 objects and up to two walls, all resting on the ground."""
    shapes = [Shape(intersect_ground, random_material(rng))]
    shapes += [random_object(rng, 1.1, (0.2, 0.8), "1") for _ in range(rng.integers(4, 10))]
    for wall in rng.choice(["north", "west", "east"], size=rng.integers(0, 3), replace=False):
        height = rng.uniform(0.8, 3.0)
        if wall == "north":
            center, half = [0.0, height / 2, -rng.uniform(4, 6)], [7.0, height / 2, 0.15]
        else:
            side = -1 if wall == "west" else 1
            center, half = [side * rng.uniform(4, 6), height / 2, 0.0], [0.15, height / 2, 7.0]
        shapes.append(box_shape(rng, center, half, 0.0, "1"))
    return shapes


def random_shapes_v2(rng: np.random.Generator) -> list[Shape]:
    """Version 2: buildings at the back, walls, the v1 objects, small clutter and slabs on pillars."""
    shapes = [Shape(intersect_ground, random_material(rng, "2"))]
    for _ in range(rng.integers(0, 4)):
        half = rng.uniform([0.6, 0.8, 0.6], [1.6, 2.2, 1.4])
        x, z = rng.uniform(-5, 5), rng.uniform(-6, -2)
        shapes.append(box_shape(rng, [x, half[1], z], list(half), float(rng.uniform(0, math.pi / 2)), "2"))
    for wall in rng.choice(["north", "west", "east"], size=rng.integers(0, 3), replace=False):
        height = rng.uniform(0.5, 2.5)
        side = -1 if wall == "west" else 1
        if wall == "north":
            center, half = [0.0, height / 2, -rng.uniform(4, 7)], [7.0, height / 2, 0.15]
        else:
            center, half = [side * rng.uniform(3.5, 6), height / 2, rng.uniform(-2, 1)], [0.15, height / 2, 4.0]
        shapes.append(box_shape(rng, center, half, 0.0, "2"))
    shapes += [random_object(rng, 1.0, (0.15, 0.7), "2") for _ in range(rng.integers(3, 8))]
    for _ in range(rng.integers(2, 9)):
        x, z = rng.uniform(-4, 4, 2)
        half = rng.uniform([0.08, 0.08, 0.08], [0.3, 0.3, 0.3])
        shapes.append(box_shape(rng, [x, half[1], z], list(half), float(rng.uniform(0, math.pi)), "2"))
    for _ in range(rng.integers(0, 3)):
        # A slab on two pillars: the ground under it stays in shadow under both lights.
        x, z, yaw = rng.uniform(-3, 3), rng.uniform(-3, 2), float(rng.uniform(0, math.pi))
        height, half_x, half_z = rng.uniform(1.0, 2.2), rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.1)
        shapes.append(box_shape(rng, [x, height, z], [half_x, 0.08, half_z], yaw, "2"))
        for end in (-1, 1):
            px, pz = x + end * 0.8 * half_x * math.cos(yaw), z + end * 0.8 * half_x * math.sin(yaw)
            shapes.append(cylinder_shape(rng, px, pz, 0.1, height - 0.08, "2"))
    return shapes


def camera_rays(rng: np.random.Generator, pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A camera south of the scene looking down and North at it, with a random pose."""
    distance, height = rng.uniform(7, 10), rng.uniform(3.5, 7)
    yaw = rng.uniform(-0.35, 0.35)
    eye = torch.tensor([distance * math.sin(yaw), height, distance * math.cos(yaw)], dtype=torch.float32)
    look_at = torch.tensor([rng.uniform(-0.7, 0.7), 0.3, rng.uniform(-0.7, 0.7)], dtype=torch.float32)
    forward = F.normalize(look_at - eye, dim=0)
    right = F.normalize(torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0])), dim=0)
    up = torch.linalg.cross(right, forward)
    half_width = math.tan(math.radians(rng.uniform(45, 60)) / 2)
    steps = (torch.arange(pixels, dtype=torch.float32) + 0.5) / pixels * 2 - 1
    v, u = torch.meshgrid(-steps * half_width, steps * half_width, indexing="ij")
    directions = F.normalize(forward + u.reshape(-1, 1) * right + v.reshape(-1, 1) * up, dim=-1)
    return eye.expand_as(directions), directions


def closest_hit(shapes: list[Shape], o: torch.Tensor, d: torch.Tensor):
    """Distance (inf on a miss), index of the shape hit, and its normal, for each ray."""
    t = torch.full((len(o),), NO_HIT)
    index = torch.zeros(len(o), dtype=torch.long)
    normal = torch.zeros_like(o)
    for i, shape in enumerate(shapes):
        rays = shape.may_hit(o, d).nonzero().squeeze(1)
        t_shape, n_shape = shape.intersect(o[rays], d[rays])
        closer = t_shape < t[rays]
        rays, t_shape, n_shape = rays[closer], t_shape[closer], n_shape[closer]
        t[rays], index[rays], normal[rays] = t_shape, i, n_shape
    return t, index, normal


def visibility(shapes: list[Shape], points, normals, toward_light, softness_deg):
    """Fraction of a small disc of light directions not blocked by any object (soft shadow edges)."""
    spread = math.tan(math.radians(softness_deg))
    helper = torch.tensor([0.0, 1.0, 0.0]) if abs(float(toward_light[1])) < 0.9 else torch.tensor([1.0, 0.0, 0.0])
    side = F.normalize(torch.linalg.cross(toward_light, helper), dim=0)
    other = torch.linalg.cross(toward_light, side)
    offsets = [(0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0)]
    origins = points + normals * 2 * EPS
    lit = torch.zeros(len(points))
    for a, b in offsets:
        direction = F.normalize(toward_light + spread * (a * side + b * other), dim=0).expand_as(points)
        blocked = torch.zeros(len(points), dtype=torch.bool)
        for shape in shapes[1:]:
            rays = shape.may_hit(origins, direction).nonzero().squeeze(1)
            blocked[rays] |= shape.intersect(origins[rays], direction[rays])[0] < NO_HIT
        lit += (~blocked).float()
    return lit / len(offsets)


def linear_to_srgb8(linear: torch.Tensor) -> np.ndarray:
    """uint8 sRGB (IEC 61966-2-1) of float32 linear values, clipped to [0, 1]."""
    # Not v3's numpy encoder (v3/render.py): torch's float32 pow rounds 120 of the 1.07e9 float32
    # values in [0, 1] to another 8-bit level than numpy's, and v1/v2 sets stay byte for byte.
    c = linear.clamp(0, 1)
    srgb = torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.pow(1 / 2.4) - 0.055)
    return (srgb * 255).round().to(torch.uint8).numpy()


@torch.no_grad()
def raycast_pair(rng: np.random.Generator, size: int, lights: LightSetup, supersample: int = 2, version: str = "1"):
    """(input, target) uint8 (size, size, 3) images of the v1 or v2 (`version`) scene drawn from `rng`.

    Each output pixel averages supersample x supersample rays.
    """
    shapes = random_shapes_v1(rng) if version == "1" else random_shapes_v2(rng)
    exposure = rng.uniform(0.55, 0.8)
    o, d = camera_rays(rng, size * supersample)
    t, index, normal = closest_hit(shapes, o, d)
    hit = t < NO_HIT
    points = o + torch.where(hit, t, 0.0)[:, None] * d
    normal = torch.where((normal * d).sum(-1, keepdim=True) > 0, -normal, normal)
    albedo = torch.zeros_like(points)
    specular = torch.zeros(len(points))
    shininess = torch.ones(len(points))
    for i, shape in enumerate(shapes):
        material = shape.material
        mask = hit & (index == i)
        if mask.any():
            albedo[mask] = material.albedo(points[mask])
            specular[mask] = material.specular
            shininess[mask] = material.shininess
    sky = torch.tensor([0.55, 0.6, 0.7]) * (0.6 + 0.4 * d[:, 1:2].clamp(0, 1))
    if version != "1":
        sky = sky * 0.35
    images = []
    for light in (lights.source, lights.target):
        toward = light_direction(light.azimuth_deg, lights.elevation_deg)
        colour = torch.tensor(planckian_rgb(light.kelvin), dtype=torch.float32)
        facing = (normal * toward).sum(-1).clamp(min=0)
        shadow = torch.zeros(len(points))
        front = hit & (facing > 0)
        shadow[front] = visibility(shapes, points[front], normal[front], toward, lights.shadow_softness_deg)
        half_vector = F.normalize(toward - d, dim=-1)
        highlight = specular * (normal * half_vector).sum(-1).clamp(min=0).pow(shininess)
        sky_light = lights.ambient * (0.6 + 0.4 * normal[:, 1:2])
        direct = lights.sun * (shadow * facing)[:, None]
        radiance = colour * (albedo * (sky_light + direct) + (lights.sun * shadow * highlight)[:, None])
        radiance = torch.where(hit[:, None], radiance * exposure, sky)
        image = radiance.reshape(1, size * supersample, size * supersample, 3).permute(0, 3, 1, 2)
        image = F.avg_pool2d(image, supersample)[0].permute(1, 2, 0)
        images.append(linear_to_srgb8(image))
    return images[0], images[1]


def write_dataset(
    out: Path, train: int, val: int, size: int, seed: int, supersample: int = 2, version: str = "1"
) -> float:
    """Render the set in VIDIT track-1 layout; returns seconds taken.

    Resumable as generator v3 is: a pair whose two PNGs exist is done (layout.pair_done), so a killed run started
    again with the same arguments renders only the rest, byte for byte what one run writes.
    Raises ValueError when `out` holds a set made with other arguments.
    """
    start = time.perf_counter()
    lights = LIGHTS[version]
    arguments = {"train": train, "val": val, "size": size, "seed": seed, "supersample": supersample}
    meta = set_meta(version, arguments, lights=asdict(lights))
    check_same_set(out, meta)
    make_layout(out)
    write_meta(out, meta)
    jobs = [
        (split, i)
        for split, i in [("train", i) for i in range(train)] + [("validation", i) for i in range(val)]
        if not pair_done(out, split, scene_number(split, i, train))
    ]
    for split, i in tqdm(jobs, desc="rendering", unit="pair"):
        pair = raycast_pair(scene_rng(seed, split, i), size, lights, supersample, version)
        save_pair(out, split, scene_number(split, i, train), *pair)
    return time.perf_counter() - start
