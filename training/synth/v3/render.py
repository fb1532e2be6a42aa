"""Generator v3: v3.scenes' scenes rendered by Mitsuba 3 under VIDIT's point light, North/6500 K and East/4500 K.

VIDIT's light (El Helou et al., "VIDIT: Virtual Image Dataset for Illumination Transfer", 2020):
an omnidirectional point light with inverse-square falloff, at one of 8 azimuths on a horizontal
circle centred above the point where the camera's central ray hits the scene, at a fixed
height over it; radius and height scale with the camera's distance to that point. Azimuths
are relative to the camera: North on the far side, East to the right. VIDIT does not publish
the two ratios; ours (LightModel) put the light about 39 degrees above the centre point.

Both renders of a pair share one scene, one exposure (the light's intensity is set once from
the geometry, never from the image) and one sampler seed. There is no ambient light and no
environment: whatever the light does not reach, directly or through a bounce, is black.
Colours are linear sRGB throughout; the PNGs are 8-bit sRGB.

Mitsuba variants: cuda_ad_rgb where a CUDA device answers, llvm_ad_rgb where Dr.Jit's LLVM
backend compiles a probe render (it aborts the process with LLVM 14/15 on AVX2-only CPUs, so
the probe runs in a child process), scalar_rgb otherwise.
"""

import itertools
import math
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from training.synth.layout import EAST_4500, NORTH_6500, Light
from training.synth.v3.scenes import Material, Scene

VARIANTS = ("cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb")


@dataclass(frozen=True)
class LightModel:
    """VIDIT's point light: each Light's bearing from the centre point, on a circle whose radius and height
    are fractions of the camera's distance to that point, and the range of exposures drawn per scene."""

    source: Light = NORTH_6500
    target: Light = EAST_4500
    radius: float = 0.4  # circle radius / camera's distance to the centre point
    height: float = 0.32  # light's height above the centre point / the same distance
    irradiance: tuple[float, float] = (1.0, 2.2)  # range of the horizontal irradiance at the centre point


@dataclass(frozen=True)
class RenderSettings:
    """spp samples per pixel, taken in `passes` renders whose per-pixel median is the image.

    The median of a few means drops fireflies: light that a glossy or metal surface near the
    lamp throws onto the floor is found by a bounce in one sample of thousands, and lands as a
    white dot in one pass, never in most. (Renderers clamp such samples for the same reason;
    Mitsuba's path tracer cannot.) It costs nothing: the passes share the sample budget.
    """

    spp: int = 32
    max_depth: int = 4  # path vertices: direct light plus two diffuse or glossy bounces
    passes: int = 4


@lru_cache
def blackbody_rgb(kelvin: float) -> tuple[float, float, float]:
    """Linear sRGB of a blackbody at `kelvin`, scaled to luminance Y = 1.

    Planck's law integrated against the CIE 1931 2-degree colour matching functions
    (the CIE's table, 360-830 nm at 1 nm, as Mitsuba ships it: mitsuba.cie1931_xyz), then
    XYZ to linear sRGB with the matrix of IEC 61966-2-1:1999. Channels may exceed 1
    (the colour is a light's, not a surface's); none is negative from 1667 K to 25000 K.
    """
    import mitsuba as mi

    h, c, k = 6.62607015e-34, 2.99792458e8, 1.380649e-23
    wavelengths = np.arange(360.0, 831.0)
    metres = wavelengths * 1e-9
    radiance = 1.0 / (metres**5 * np.expm1(h * c / (metres * k * kelvin)))
    cmf = np.array([list(mi.scalar_rgb.cie1931_xyz(float(w))) for w in wavelengths])
    xyz = radiance @ cmf
    to_srgb = np.array(
        [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
    )  # IEC 61966-2-1
    rgb = to_srgb @ (xyz / xyz[1])
    return tuple(float(v) for v in rgb)


def llvm_works() -> bool:
    """Whether Mitsuba's llvm_ad_rgb renders a small scene, tried in a child process (a bad LLVM aborts it)."""
    probe = (
        "import mitsuba as mi; mi.set_variant('llvm_ad_rgb');"
        "s = mi.load_dict({'type': 'scene', 'integrator': {'type': 'path', 'max_depth': 4},"
        "'sensor': {'type': 'perspective', 'to_world': mi.ScalarTransform4f().look_at("
        "origin=[0, 2, 5], target=[0, 0, 0], up=[0, 1, 0]), 'film': {'type': 'hdrfilm', 'width': 16, 'height': 16}},"
        "'ball': {'type': 'sphere', 'bsdf': {'type': 'roughplastic'}}, 'floor': {'type': 'rectangle'},"
        "'light': {'type': 'point', 'position': [1, 3, 1]}});"
        "mi.render(s, spp=4).numpy()"
    )
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def choose_variant() -> tuple[str, str]:
    """(variant, why): the fastest Mitsuba variant that works on this machine."""
    import drjit as dr
    import mitsuba as mi

    if "cuda_ad_rgb" in mi.variants() and dr.has_backend(dr.JitBackend.CUDA):
        return "cuda_ad_rgb", "a CUDA device answered"
    if "llvm_ad_rgb" in mi.variants() and dr.has_backend(dr.JitBackend.LLVM):
        if llvm_works():
            return "llvm_ad_rgb", "Dr.Jit's LLVM backend compiled and ran a probe render"
        return "scalar_rgb", (
            "the LLVM backend loads but a probe render failed (LLVM older than 16? Debian's "
            "libllvm19 makes llvm_ad_rgb work, 1.3-1.6x faster)"
        )
    return "scalar_rgb", "no CUDA device and no usable LLVM library (install libllvm19 for the faster llvm_ad_rgb)"


def light_positions(camera_origin, centre, model: LightModel) -> dict[str, np.ndarray]:
    """World positions (metres) of model.source and model.target for a camera and its centre point."""
    origin, centre = np.asarray(camera_origin, float), np.asarray(centre, float)
    distance = np.linalg.norm(centre - origin)
    forward = centre - origin
    forward[1] = 0.0
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    positions = {}
    for name, light in (("source", model.source), ("target", model.target)):
        bearing = math.radians(light.azimuth_deg)
        across = math.cos(bearing) * forward + math.sin(bearing) * right
        positions[name] = centre + distance * (model.radius * across + np.array([0.0, model.height, 0.0]))
    return positions


def bsdf(material: Material) -> dict:
    """Mitsuba's BSDF for a Material: diffuse, roughplastic (glossy) or roughconductor (metal), GGX."""
    import mitsuba as mi

    texture = {
        "type": "bitmap",
        "bitmap": mi.Bitmap(material.albedo),
        "raw": True,  # already linear
        "wrap_mode": "mirror",  # hides the photographs' edges where they repeat
        "to_uv": mi.ScalarTransform4f().scale([1 / material.repeat, 1 / material.repeat, 1.0]),
    }
    if material.finish == "glossy":
        surface = {"type": "roughplastic", "diffuse_reflectance": texture, "alpha": material.roughness}
    elif material.finish == "metal":
        surface = {"type": "roughconductor", "material": "none", "specular_reflectance": texture}
        surface |= {"alpha": material.roughness}
    else:
        surface = {"type": "diffuse", "reflectance": texture}
    return {"type": "twosided", "bsdf": surface} if material.two_sided else surface


def mitsuba_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray, surface: dict):
    """A Mitsuba triangle mesh from v3.meshes' arrays, with vertex normals (smooth where vertices are shared)."""
    import mitsuba as mi

    props = mi.Properties()
    props["bsdf"] = mi.load_dict(surface)
    shape = mi.Mesh(name, len(vertices), len(faces), props, has_vertex_normals=True, has_vertex_texcoords=True)
    params = mi.traverse(shape)
    jit = mi.Float is not float  # JIT variants want their own arrays; scalar ones take numpy's
    params["vertex_positions"] = mi.Float(vertices.ravel()) if jit else vertices.ravel()
    params["faces"] = mi.UInt32(faces.ravel()) if jit else faces.ravel()
    params["vertex_texcoords"] = mi.Float(uvs.ravel()) if jit else uvs.ravel()
    params.update()
    shape.recompute_vertex_normals()
    return shape


def mitsuba_scene(scene: Scene, size: int, settings: RenderSettings):
    """The Mitsuba scene: meshes, camera, path tracer and one point light named "light" (placed later)."""
    import mitsuba as mi

    camera = scene.camera
    spec = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": settings.max_depth},
        "sensor": {
            "type": "perspective",
            "fov": camera.fov_deg,
            "fov_axis": "x",
            "to_world": mi.ScalarTransform4f().look_at(origin=camera.origin, target=camera.target, up=[0, 1, 0]),
            "film": {"type": "hdrfilm", "width": size, "height": size, "pixel_format": "rgb"},
            "sampler": {"type": "independent", "sample_count": settings.spp},
        },
        "light": {"type": "point", "position": [0.0, 100.0, 0.0], "intensity": {"type": "rgb", "value": [1.0] * 3}},
    }
    for i, (mesh, material) in enumerate(scene.merged()):
        spec[f"part{i}"] = mitsuba_mesh(f"part{i}", mesh.vertices, mesh.faces, mesh.uvs, bsdf(material))
    return mi.load_dict(spec)


def centre_point(mi_scene, camera) -> np.ndarray:
    """Where the camera's central ray first hits the scene (its look-at point if it hits nothing)."""
    import mitsuba as mi

    origin, target = np.asarray(camera.origin, float), np.asarray(camera.target, float)
    direction = (target - origin) / np.linalg.norm(target - origin)
    hit = mi_scene.ray_intersect(mi.Ray3f(mi.Point3f(*map(float, origin)), mi.Vector3f(*map(float, direction))))
    if not bool(np.all(np.asarray(hit.is_valid()))):
        return target
    return np.asarray(hit.p, dtype=float).reshape(3)


class LightBlocked(ValueError):
    """A light position inside a closed shape (its render would be black) or close to a surface.

    A surface a few centimetres from a point light gets a hundredfold irradiance; the path
    tracer finds that spot only now and then through a bounce, and every time it does, a
    pixel nearby turns white: fireflies no sample count cures.
    """


CLEARANCE = 0.35  # the least distance from a light to any surface, over the light's distance to the centre point
# Towards the faces, edges and corners of a cube around the light.
DIRECTIONS = [np.array(d) / np.linalg.norm(d) for d in itertools.product((-1, 0, 1), repeat=3) if any(d)]


def first_hits(mi_scene, position: np.ndarray) -> list[tuple[np.ndarray, float, np.ndarray] | None]:
    """For each of DIRECTIONS from `position`: (direction, distance, geometric normal) of the first hit, or None."""
    import mitsuba as mi

    hits = []
    for direction in DIRECTIONS:
        hit = mi_scene.ray_intersect(mi.Ray3f(mi.Point3f(*map(float, position)), mi.Vector3f(*map(float, direction))))
        if bool(np.all(np.asarray(hit.is_valid()))):
            hits.append((direction, float(np.asarray(hit.t).reshape(-1)[0]), np.asarray(hit.n, float).reshape(3)))
        else:
            hits.append(None)
    return hits


def blocked(mi_scene, position: np.ndarray, clearance: float) -> bool:
    """Whether a light at `position` is inside a closed mesh (every ray meets the back of a surface first)
    or has a surface nearer than `clearance` metres along any ray."""
    hits = first_hits(mi_scene, position)
    inside = all(hit is not None and hit[0] @ hit[2] > 0 for hit in hits)
    return inside or any(hit is not None and hit[1] < clearance for hit in hits)


def linear_to_srgb8(linear: np.ndarray) -> np.ndarray:
    """uint8 sRGB (IEC 61966-2-1) of linear values, clipped to [0, 1]."""
    c = np.clip(linear, 0.0, 1.0)
    return np.round(255 * np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)).astype(np.uint8)


def render_pair(
    scene: Scene, size: int, exposure: float = 1.0, model: LightModel = LightModel(),
    settings: RenderSettings = RenderSettings(), seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(input, target) uint8 (size, size, 3) sRGB renders of `scene` under model.source and model.target.

    The light's intensity makes the horizontal irradiance at the centre point `exposure` (W/m^2,
    so a white Lambertian floor there has radiance exposure / pi): the same for both lights,
    whose distances to the centre point are equal. A Mitsuba variant must be set. Raises
    LightBlocked where a light would sit inside a shape or close to one.
    """
    import mitsuba as mi

    mi_scene = mitsuba_scene(scene, size, settings)
    centre = centre_point(mi_scene, scene.camera)
    positions = light_positions(scene.camera.origin, centre, model)
    clearance = CLEARANCE * float(np.linalg.norm(positions["source"] - centre))
    if any(blocked(mi_scene, position, clearance) for position in positions.values()):
        raise LightBlocked(f"a light at {positions} is inside a shape or within {clearance:.2f} m of one")
    offset = positions["source"] - centre
    # Point light irradiance on a horizontal surface: I * cos(theta) / d^2, cos(theta) = height / d.
    intensity = float(exposure * (offset @ offset) ** 1.5 / offset[1])
    params = mi.traverse(mi_scene)
    images = []
    for name, light in (("source", model.source), ("target", model.target)):
        params["light.position"] = mi.Point3f(*map(float, positions[name]))
        params["light.intensity.value"] = mi.Color3f(*(intensity * c for c in blackbody_rgb(light.kelvin)))
        params.update()
        passes = max(1, min(settings.passes, settings.spp))
        estimates = [
            np.asarray(mi.render(mi_scene, params, seed=seed + i, spp=settings.spp // passes), dtype=np.float32)
            for i in range(passes)
        ]
        images.append(linear_to_srgb8(np.median(estimates, axis=0)))
    return images[0], images[1]
