"""Random VIDIT-like scenes for generator v3: what is where, made of what, seen from where.

VIDIT's 390 scenes are Unreal Engine sets: nature (trees, rocks, grass), urban (buildings with
windows, walls, fences, street clutter) and set-like yards. `random_scene` draws one of three
kinds of the same sort: "urban", "nature" or "yard", each a ground with a real-looking surface,
the large things at the back and sides, and the small things in the middle, where the light
will be. A Scene is plain data (numpy meshes and textures); v3.render turns it into Mitsuba's.

Coordinates: metres, y up, the camera south of the scene (+z) looking North (-z) and down at
a point near the origin.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from training.synth.v3 import textures
from training.synth.v3.meshes import Mesh, blades, box, frustum, leaves, lumpy, merge, placed, rock, sphere, terrain

# How many metres of surface one copy of a kind's texture covers.
REPEAT_METRES = {
    "grass": 1.0,
    "gravel": 0.8,
    "brick": 1.6,
    "stone": 2.0,
    "dirt": 3.0,
    "asphalt": 2.5,
    "concrete": 4.0,
    "plaster": 4.0,
    "paving": 1.5,
    "tiles": 1.6,
    "wood": 0.8,
    "bark": 1.0,
    "leaves": 0.6,
    "paint": 3.0,
    "metal": 2.0,
}


@dataclass(frozen=True, eq=False)
class Material:
    """A surface: its albedo texture and how it reflects.

    finish: "matte" (Lambertian), "glossy" (a diffuse base under a clear coat: paint, plastic,
    glass, glazed tiles) or "metal" (a rough conductor tinted by the albedo). roughness is the
    GGX alpha of the coat or metal. two_sided: thin things seen from both sides (leaves, blades).
    """

    albedo: np.ndarray  # float32 (H, W, 3) linear sRGB in [0, 0.9]
    repeat: float  # metres one copy of the texture covers
    finish: str = "matte"
    roughness: float = 0.3
    two_sided: bool = False


@dataclass(frozen=True)
class Camera:
    origin: tuple[float, float, float]  # metres
    target: tuple[float, float, float]  # a point the central ray passes through
    fov_deg: float  # horizontal field of view


@dataclass
class Scene:
    kind: str
    camera: Camera
    parts: list[tuple[Mesh, Material]] = field(default_factory=list)

    def add(self, mesh: Mesh, material: Material) -> None:
        self.parts.append((mesh, material))

    def merged(self) -> list[tuple[Mesh, Material]]:
        """One mesh per material, in order of first use (fewer, larger shapes render faster)."""
        groups: dict[int, tuple[list[Mesh], Material]] = {}
        for mesh, material in self.parts:
            groups.setdefault(id(material), ([], material))[0].append(mesh)
        return [(merge(meshes), material) for meshes, material in groups.values()]


def material(rng: np.random.Generator, kind: str, finish: str = "matte", two_sided: bool = False) -> Material:
    # No smoother than alpha 0.15: sharper coats scatter the light onto nearby walls as fireflies at 32 spp.
    roughness = float(rng.uniform(0.15, 0.4) if finish == "glossy" else rng.uniform(0.2, 0.5))
    return Material(textures.albedo(rng, kind), REPEAT_METRES[kind], finish, roughness, two_sided)


def glass(rng: np.random.Generator) -> Material:
    """Window and windscreen glass: dark, with a sharp reflection of the light."""
    return Material(textures.albedo(rng, "asphalt") * 0.5, 2.0, "glossy", float(rng.uniform(0.15, 0.25)))


class Placer:
    """Footprints (discs on the ground) already taken; draws free spots for new things inside the view.

    Depths are fractions of the camera's distance to its target, measured along the ground;
    `spread` 1 reaches the left and right edges of the view at that depth. Nothing tall stands
    in the near middle of the view, so no wall ever fills the lens.
    """

    def __init__(self, rng: np.random.Generator, camera: "Camera"):
        self.rng = rng
        self.eye_x, self.eye_z = camera.origin[0], camera.origin[2]
        self.distance = math.hypot(camera.target[0] - self.eye_x, camera.target[2] - self.eye_z)
        self.half_view = math.tan(math.radians(camera.fov_deg) / 2)
        self.taken: list[tuple[float, float, float]] = []

    def spot(self, depth, radius: float, tall: bool = False, spread: float = 1.0, tries: int = 30):
        """A free (x, z) at a depth in `depth` (near, far), or None when none was found; the spot is then taken."""
        for _ in range(tries):
            ahead = self.rng.uniform(*depth) * self.distance
            if ahead < 2.0 + 2 * radius:  # a crate an arm's length from the lens would fill the frame
                continue
            across = self.rng.uniform(-spread, spread) * ahead * self.half_view
            if tall and ahead < 0.7 * self.distance and abs(across) < 0.7 * ahead * self.half_view:
                continue
            x, z = self.eye_x + across, self.eye_z - ahead
            if all(math.hypot(x - a, z - b) > radius + r for a, b, r in self.taken):
                self.taken.append((x, z, radius))
                return float(x), float(z)
        return None


NEAR, MIDDLE, BACK = (0.3, 0.75), (0.6, 1.4), (1.3, 2.2)  # depth zones, fractions of the camera's distance


def random_camera(rng: np.random.Generator) -> Camera:
    """A camera 4-10 m from the scene's middle, 0.8-4.5 m up, looking North and a little down at it."""
    distance = rng.uniform(4, 10)
    height = rng.uniform(0.8, min(4.5, 0.5 * distance))
    target = (float(rng.uniform(-0.5, 0.5)), 0.0, float(rng.uniform(-0.5, 0.5)))
    origin = (float(rng.uniform(-1, 1)), float(height), float(distance))
    return Camera(origin, target, float(rng.uniform(50, 70)))


def building(
    rng, scene: Scene, walls: Material, trim: Material, panes_of: Material, position, yaw: float, size
) -> None:
    """A block with rows of framed windows with sills on its faces, a door, and a parapet on its flat roof."""
    width, height, depth = size
    parts = [placed(box((width / 2, height / 2, depth / 2)), (0.0, height / 2, 0.0))]
    parts.append(placed(box((width / 2 + 0.05, 0.15, depth / 2 + 0.05)), (0.0, height + 0.1, 0.0)))
    frames, panes = [], []
    storey = rng.uniform(2.8, 3.5)
    window_w, window_h, sill = rng.uniform(0.7, 1.3), rng.uniform(1.0, 1.7), rng.uniform(0.8, 1.1)
    for face_yaw, face_width, face_depth in (
        (0.0, width, depth),
        (math.pi / 2, depth, width),
        (-math.pi / 2, depth, width),
    ):
        columns = int(face_width // (window_w + rng.uniform(0.8, 1.6)))
        door = int(rng.integers(columns)) if columns and face_yaw == 0.0 else -1
        for floor in range(int((height - 0.5) // storey)):
            for column in range(columns):
                x = -face_width / 2 + (column + 0.5) * face_width / columns
                if floor == 0 and column == door:
                    local = [(placed(box((0.55, 1.05, 0.04)), (x, 1.05, face_depth / 2)), frames)]
                else:
                    y = floor * storey + sill + window_h / 2
                    local = [
                        (placed(box((window_w / 2, window_h / 2, 0.02)), (x, y, face_depth / 2)), panes),
                        (
                            placed(
                                box((window_w / 2 + 0.08, 0.05, 0.12)), (x, y - window_h / 2 - 0.05, face_depth / 2)
                            ),
                            frames,
                        ),
                        (
                            placed(
                                box((window_w / 2 + 0.08, 0.06, 0.05)), (x, y + window_h / 2 + 0.06, face_depth / 2)
                            ),
                            frames,
                        ),
                        (placed(box((0.05, window_h / 2, 0.05)), (x - window_w / 2 - 0.03, y, face_depth / 2)), frames),
                        (placed(box((0.05, window_h / 2, 0.05)), (x + window_w / 2 + 0.03, y, face_depth / 2)), frames),
                    ]
                for part, bucket in local:
                    bucket.append(placed(part, (0.0, 0.0, 0.0), yaw=face_yaw))
    for meshes, surface in ((parts, walls), (frames, trim), (panes, panes_of)):
        if meshes:
            scene.add(placed(merge(meshes), position, yaw), surface)


def wall(scene: Scene, surface: Material, cap: Material, position, yaw: float, length: float, height: float) -> None:
    scene.add(placed(box((length / 2, height / 2, 0.15)), (position[0], height / 2, position[1]), yaw), surface)
    scene.add(placed(box((length / 2 + 0.04, 0.05, 0.2)), (position[0], height + 0.05, position[1]), yaw), cap)


def fence(rng, scene: Scene, surface: Material, position, yaw: float, length: float) -> None:
    """Posts, two rails and pickets (gapped boards): their shadow is a row of stripes."""
    height = rng.uniform(0.8, 1.8)
    gap = rng.uniform(0.04, 0.15)
    board = rng.uniform(0.06, 0.14)
    parts = []
    for x in np.arange(-length / 2, length / 2 + 1e-6, length / max(1, round(length / 2.0))):
        parts.append(placed(box((0.05, height / 2 + 0.05, 0.05)), (x, height / 2 + 0.05, 0.0)))
    for y in (0.25 * height, 0.8 * height):
        parts.append(placed(box((length / 2, 0.04, 0.025)), (0.0, y, -0.07)))
    for x in np.arange(-length / 2 + board, length / 2, board + gap):
        parts.append(placed(box((board / 2, height / 2, 0.012)), (x, height / 2, -0.11)))
    scene.add(placed(merge(parts), (position[0], 0.0, position[1]), yaw), surface)


def tree(rng, scene: Scene, bark: Material, foliage: Material, position, size: float) -> None:
    """A trunk and one to four crowns of leaves; narrow and tall now and then (a conifer)."""
    trunk_height = size * rng.uniform(0.35, 0.6)
    radius = 0.04 * size + 0.05
    scene.add(
        placed(frustum(radius, radius * 0.6, trunk_height + 0.5 * size, 12), (position[0], 0.0, position[1])), bark
    )
    conifer = rng.uniform() < 0.25
    crowns = []
    for _ in range(1 if conifer else int(rng.integers(1, 5))):
        radii = np.array([0.25, 0.6, 0.25]) * size if conifer else rng.uniform(0.2, 0.35, 3) * size
        centre = (
            position[0] + rng.normal(0, 0.1 * size),
            trunk_height + radii[1] * 0.9,
            position[1] + rng.normal(0, 0.1 * size),
        )
        count = int(min(5000, 400 * (radii**2).sum()))
        crowns.append(placed(leaves(rng, radii, count, rng.uniform(0.12, 0.25)), centre))
    scene.add(merge(crowns), foliage)


def bush(rng, scene: Scene, foliage: Material, position, size: float) -> None:
    """A dense core with loose leaves around it, resting on the ground."""
    radii = np.array([rng.uniform(0.8, 1.3), rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.3)]) * size / 2
    core = lumpy(rng, sphere(1.0, 12, 24), 0.25)
    core = Mesh(core.vertices * radii * 0.8 + (position[0], radii[1] * 0.8, position[1]), core.faces, core.uvs)
    loose = placed(
        leaves(rng, radii, int(300 + 900 * size), rng.uniform(0.08, 0.15)), (position[0], radii[1], position[1])
    )
    scene.add(merge([core, loose]), foliage)


def crate(rng, scene: Scene, surface: Material, position, yaw: float) -> None:
    """One to three boxes stacked, each turned a little against the one below."""
    y = 0.0
    for _ in range(int(rng.integers(1, 4))):
        half = rng.uniform(0.2, 0.5)
        scene.add(
            placed(box((half, half, half)), (position[0], y + half, position[1]), yaw + rng.normal(0, 0.2)), surface
        )
        y += 2 * half
        if rng.uniform() < 0.5:
            break


def barrel(rng, scene: Scene, surface: Material, position) -> None:
    radius = rng.uniform(0.25, 0.4)
    scene.add(
        placed(frustum(radius, radius, radius * rng.uniform(2.2, 3.0), 24), (position[0], 0.0, position[1])), surface
    )


def car(rng, scene: Scene, paint: Material, rubber: Material, windscreen: Material, position, yaw: float) -> None:
    """A car-sized block: glossy body, a glass cabin and four wheels."""
    length, width = rng.uniform(3.6, 4.6), rng.uniform(1.6, 1.9)
    scene.add(
        placed(placed(box((length / 2, 0.35, width / 2)), (0.0, 0.65, 0.0)), (position[0], 0, position[1]), yaw), paint
    )
    cabin = placed(box((length * 0.28, 0.3, width / 2 - 0.08)), (-0.1 * length, 1.3, 0.0))
    scene.add(placed(cabin, (position[0], 0.0, position[1]), yaw), windscreen)
    wheels = []
    for x in (-0.33 * length, 0.33 * length):
        for z in (-width / 2 + 0.05, width / 2 - 0.25):
            wheels.append(placed(frustum(0.33, 0.33, 0.2, 20), (x, 0.33, z), tilt=math.pi / 2))
    scene.add(placed(merge(wheels), (position[0], 0.0, position[1]), yaw), rubber)


def lamp_post(rng, scene: Scene, surface: Material, position) -> None:
    height = rng.uniform(2.5, 4.5)
    post = frustum(0.07, 0.05, height, 12)
    head = placed(box((0.15, 0.12, 0.15)), (0.0, height + 0.1, 0.0))
    scene.add(placed(merge([post, head]), (position[0], 0.0, position[1])), surface)


def log(rng, scene: Scene, bark: Material, position, yaw: float) -> None:
    radius, length = rng.uniform(0.12, 0.3), rng.uniform(1.0, 3.0)
    lying = placed(
        placed(frustum(radius, radius * 0.9, length, 16), (0.0, -length / 2, 0.0)), (0.0, 0.0, 0.0), tilt=math.pi / 2
    )
    scene.add(placed(lying, (position[0], radius, position[1]), yaw), bark)


def ornament(rng, scene: Scene, surface: Material, plinth: Material, position) -> None:
    """A ball or vase on a plinth: curved glossy or metal surfaces that catch highlights."""
    height = rng.uniform(0.3, 1.1)
    scene.add(placed(box((0.3, height / 2, 0.3)), (position[0], height / 2, position[1])), plinth)
    if rng.uniform() < 0.5:
        radius = rng.uniform(0.2, 0.35)
        scene.add(placed(sphere(radius), (position[0], height + radius, position[1])), surface)
    else:
        vase = merge([frustum(0.12, 0.25, 0.35, 24, caps=False), placed(frustum(0.25, 0.1, 0.3, 24), (0, 0.35, 0))])
        scene.add(placed(vase, (position[0], height, position[1])), surface)


def ground(rng, scene: Scene, surface: Material, half: float, relief: float) -> None:
    scene.add(terrain(rng, half, 64 if relief > 0 else 1, relief), surface)


def urban(rng: np.random.Generator, scene: Scene, placer: Placer, distance: float) -> None:
    """A street corner: buildings behind and to the sides, walls and fences, parked cars, street clutter."""
    ground(
        rng,
        scene,
        material(rng, str(rng.choice(["asphalt", "paving", "concrete", "brick", "gravel"]))),
        2.0 * distance,
        0.0,
    )
    facades = [material(rng, str(rng.choice(["brick", "plaster", "concrete", "stone"]))) for _ in range(3)]
    trim = material(rng, str(rng.choice(["paint", "wood", "concrete"])), finish=str(rng.choice(["matte", "glossy"])))
    windows = glass(rng)
    for _ in range(int(rng.integers(2, 5))):
        width, depth, height = rng.uniform(4, 12), rng.uniform(4, 8), rng.uniform(3, 12)
        spot = placer.spot(BACK, width / 2, tall=True, spread=1.3)
        if spot:
            facade = facades[int(rng.integers(3))]
            building(
                rng,
                scene,
                facade,
                trim,
                windows,
                (spot[0], 0.0, spot[1] - depth / 2),
                float(rng.normal(0, 0.3)),
                (width, height, depth),
            )
    props(rng, scene, placer, distance, int(rng.integers(6, 16)))
    plants(rng, scene, placer, distance, int(rng.integers(0, 4)))


def nature(rng: np.random.Generator, scene: Scene, placer: Placer, distance: float) -> None:
    """A clearing: rolling ground, trees and bushes around it, rocks, grass, logs, an old fence or wall."""
    floor = str(rng.choice(["grass", "grass", "dirt", "gravel"]))
    ground(rng, scene, material(rng, floor), 2.0 * distance, float(rng.uniform(0.0, 1.5)))
    stone = material(rng, "stone")
    for _ in range(int(rng.integers(4, 14))):
        size = rng.uniform(0.4, 2.5)
        spot = placer.spot((0.3, 1.8), size / 2, tall=size > 1.2)
        if spot:
            scene.add(placed(rock(rng, size), (spot[0], 0.0, spot[1]), float(rng.uniform(0, 2 * math.pi))), stone)
    plants(rng, scene, placer, distance, int(rng.integers(5, 14)))
    grass_blades = material(rng, "grass" if rng.uniform() < 0.5 else "leaves", two_sided=True)
    for _ in range(int(rng.integers(1, 6))):
        half = rng.uniform(0.5, 2.0)
        spot = placer.spot((0.3, 1.6), 0.0)
        if spot:
            patch = blades(rng, half, half * rng.uniform(0.5, 1.0), int(3000 * half * half), rng.uniform(0.15, 0.5))
            scene.add(placed(patch, (spot[0], 0.0, spot[1]), float(rng.uniform(0, math.pi))), grass_blades)
    bark = material(rng, "bark")
    for _ in range(int(rng.integers(0, 3))):
        spot = placer.spot((0.4, 1.4), 1.0)
        if spot:
            log(rng, scene, bark, spot, float(rng.uniform(0, math.pi)))
    if rng.uniform() < 0.5:
        spot = placer.spot(BACK, 3.0, tall=True)
        if spot:
            if rng.uniform() < 0.5:
                fence(rng, scene, material(rng, "wood"), spot, float(rng.normal(0, 0.4)), float(rng.uniform(4, 12)))
            else:
                wall(
                    scene,
                    stone,
                    stone,
                    spot,
                    float(rng.normal(0, 0.4)),
                    float(rng.uniform(3, 10)),
                    float(rng.uniform(0.5, 1.5)),
                )


def yard(rng: np.random.Generator, scene: Scene, placer: Placer, distance: float) -> None:
    """A set-like courtyard: a paved or wooden floor closed by walls with windows, columns, ornaments."""
    ground(rng, scene, material(rng, str(rng.choice(["tiles", "wood", "concrete", "paving"]))), 2.0 * distance, 0.0)
    facade = material(rng, str(rng.choice(["plaster", "brick", "stone", "concrete"])))
    trim = material(rng, str(rng.choice(["paint", "wood"])), finish="glossy")
    windows = glass(rng)
    back = rng.uniform(1.3, 1.9)
    span, depth = 3.0 * distance, 4.0
    back_z = placer.eye_z - back * placer.distance - depth / 2
    building(rng, scene, facade, trim, windows, (placer.eye_x, 0.0, back_z), 0.0, (span, rng.uniform(4, 9), depth))
    for side in (-1, 1):
        if rng.uniform() < 0.5:
            x = placer.eye_x + side * (rng.uniform(0.7, 1.0) * back * placer.distance * placer.half_view + depth / 2)
            size = (span, rng.uniform(4, 9), depth)
            building(rng, scene, facade, trim, windows, (x, 0.0, back_z), -side * math.pi / 2, size)
    column_surface = material(rng, str(rng.choice(["stone", "concrete", "plaster"])))
    for _ in range(int(rng.integers(0, 5))):
        spot = placer.spot((0.6, back - 0.1), 0.5, tall=True)
        if spot:
            height = rng.uniform(2.5, 4.5)
            column = merge([placed(box((0.35, 0.15, 0.35)), (0, 0.15, 0)), frustum(0.25, 0.22, height, 24)])
            scene.add(placed(column, (spot[0], 0.0, spot[1])), column_surface)
    finishes = [str(rng.choice(["glossy", "metal"])) for _ in range(2)]
    shiny = [material(rng, "paint" if finish == "glossy" else "metal", finish=finish) for finish in finishes]
    for _ in range(int(rng.integers(1, 6))):
        spot = placer.spot((0.5, back - 0.1), 0.5)
        if spot:
            ornament(rng, scene, shiny[int(rng.integers(2))], column_surface, spot)
    props(rng, scene, placer, distance, int(rng.integers(3, 10)))
    plants(rng, scene, placer, distance, int(rng.integers(1, 5)))


def props(rng: np.random.Generator, scene: Scene, placer: Placer, distance: float, count: int) -> None:
    """Crates, barrels, cars, lamp posts, low walls and fences in the middle of the scene."""
    crates = material(rng, "wood")
    barrels = material(rng, str(rng.choice(["paint", "metal"])), finish=str(rng.choice(["glossy", "metal"])))
    paint = material(rng, "paint", finish="glossy")
    rubber = Material(textures.albedo(rng, "asphalt") * 0.4, 2.0, "matte")
    windscreens = glass(rng)
    metal = material(rng, "metal", finish="metal")
    low_wall = material(rng, str(rng.choice(["brick", "stone", "concrete"])))
    fencing = material(rng, str(rng.choice(["wood", "paint"])))
    kinds = ["crate", "crate", "barrel", "barrel", "car", "lamp", "wall", "fence"]
    for _ in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        radius = {"car": 2.3, "wall": 2.5, "fence": 2.5}.get(kind, 0.6)
        tall = kind in ("car", "wall", "fence", "lamp")
        spot = placer.spot(MIDDLE if tall else (0.35, 1.4), radius, tall=tall)
        if spot is None:
            continue
        yaw = float(rng.uniform(0, math.pi))
        if kind == "crate":
            crate(rng, scene, crates, spot, yaw)
        elif kind == "barrel":
            barrel(rng, scene, barrels, spot)
        elif kind == "car":
            car(rng, scene, paint, rubber, windscreens, spot, yaw)
        elif kind == "lamp":
            lamp_post(rng, scene, metal, spot)
        elif kind == "wall":
            wall(scene, low_wall, low_wall, spot, yaw, float(rng.uniform(2, 5)), float(rng.uniform(0.4, 1.6)))
        else:
            fence(rng, scene, fencing, spot, yaw, float(rng.uniform(2, 5)))


def plants(rng: np.random.Generator, scene: Scene, placer: Placer, distance: float, count: int) -> None:
    """Trees at the back and sides, bushes anywhere."""
    foliage = material(rng, "leaves", two_sided=True)
    bark = material(rng, "bark")
    for _ in range(count):
        if rng.uniform() < 0.5:
            size = rng.uniform(3, 8)
            spot = placer.spot((0.8, 2.2), 0.6, tall=True, spread=1.2)
            if spot:
                tree(rng, scene, bark, foliage, spot, size)
        else:
            size = rng.uniform(0.5, 1.8)
            spot = placer.spot((0.35, 1.6), size / 2, tall=size > 1.2)
            if spot:
                bush(rng, scene, foliage, spot, size)


KINDS = {"urban": urban, "nature": nature, "yard": yard}


def random_scene(rng: np.random.Generator) -> Scene:
    """A random scene of one of KINDS; the same generator state gives the same scene."""
    camera = random_camera(rng)
    kind = str(rng.choice(list(KINDS), p=[0.4, 0.35, 0.25]))
    scene = Scene(kind, camera)
    distance = math.dist(camera.origin, camera.target)
    KINDS[kind](rng, scene, Placer(rng, camera), distance)
    return scene
