"""Triangle meshes for generator v3's scenes, built in numpy: boxes, frusta, spheres, rocks, leaves, grass.

Units are metres, y is up, and every builder returns a Mesh standing on or centred at the
origin; `placed` moves it. Texture coordinates are in metres too (a surface's texture is
scaled to its repeat length by the renderer), so a texture keeps its size on big and small
surfaces alike. Vertices are shared only where a surface should look smooth (a sphere, a
cylinder's side); elsewhere every face has its own, so the renderer's vertex normals are the
face normals there.
"""

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mesh:
    vertices: np.ndarray  # float32 (V, 3), metres
    faces: np.ndarray  # uint32 (F, 3), counter-clockwise seen from the front
    uvs: np.ndarray  # float32 (V, 2), metres along the surface


def mesh(vertices, faces, uvs) -> Mesh:
    return Mesh(
        np.asarray(vertices, np.float32).reshape(-1, 3),
        np.asarray(faces, np.uint32).reshape(-1, 3),
        np.asarray(uvs, np.float32).reshape(-1, 2),
    )


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all of `meshes` (so they share one material)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return mesh(
        np.concatenate([m.vertices for m in meshes]),
        np.concatenate([m.faces + offset for m, offset in zip(meshes, offsets, strict=True)]),
        np.concatenate([m.uvs for m in meshes]),
    )


def yaw_matrix(yaw: float) -> np.ndarray:
    """Rotation by `yaw` radians about the vertical axis (x towards -z for positive yaw)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def placed(m: Mesh, position, yaw: float = 0.0, tilt: float = 0.0) -> Mesh:
    """`m` tipped by `tilt` radians about x (a log lying down: pi/2), turned by `yaw`, then moved to `position`."""
    c, s = math.cos(tilt), math.sin(tilt)
    tip = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return mesh(m.vertices @ (yaw_matrix(yaw) @ tip).T + np.asarray(position), m.faces, m.uvs)


def box(half) -> Mesh:
    """An axis-aligned box centred at the origin with half-extents `half` (3,), its own vertices per face."""
    hx, hy, hz = half
    vertices, faces, uvs = [], [], []
    # For each face: its normal axis and sign, and the two axes spanning it (right-handed with the normal).
    for axis, sign in ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)):
        u_axis, v_axis = [(1, 2), (2, 0), (0, 1)][axis]
        if sign < 0:
            u_axis, v_axis = v_axis, u_axis
        start = len(vertices)
        for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            p = np.zeros(3)
            p[axis] = sign * half[axis]
            p[u_axis] = du * half[u_axis]
            p[v_axis] = dv * half[v_axis]
            vertices.append(p)
            uvs.append((p[u_axis] + (hx, hy, hz)[u_axis], p[v_axis] + (hx, hy, hz)[v_axis]))
        faces += [(start, start + 1, start + 2), (start, start + 2, start + 3)]
    return mesh(vertices, faces, uvs)


def frustum(radius_bottom: float, radius_top: float, height: float, segments: int = 24, caps: bool = True) -> Mesh:
    """A cylinder (equal radii) or cone frustum standing on y=0; smooth side, flat caps."""
    angles = np.linspace(0, 2 * math.pi, segments + 1)
    ring = np.stack([np.sin(angles), np.zeros_like(angles), np.cos(angles)], -1)
    bottom, top = ring * radius_bottom, ring * radius_top + (0.0, height, 0.0)
    side_u = angles * max(radius_bottom, radius_top)
    vertices = [bottom, top]
    uvs = [np.stack([side_u, np.zeros_like(angles)], -1), np.stack([side_u, np.full_like(angles, height)], -1)]
    n = segments + 1
    faces = [(i, i + 1, n + i + 1) for i in range(segments)] + [(i, n + i + 1, n + i) for i in range(segments)]
    if caps:
        for y, radius, flip in ((0.0, radius_bottom, True), (height, radius_top, False)):
            if radius == 0:
                continue
            start = sum(len(v) for v in vertices)
            rim = ring[:-1] * radius + (0.0, y, 0.0)
            vertices.append(np.concatenate([[(0.0, y, 0.0)], rim]))
            uvs.append(np.concatenate([[(0.0, 0.0)], rim[:, [0, 2]]]))
            for i in range(segments):
                a, b = start + 1 + i, start + 1 + (i + 1) % segments
                faces.append((start, b, a) if flip else (start, a, b))
    return mesh(np.concatenate(vertices), faces, np.concatenate(uvs))


def sphere(radius: float = 1.0, rows: int = 24, columns: int = 48) -> Mesh:
    """A UV sphere centred at the origin with shared (smooth) vertices."""
    theta = np.linspace(0, math.pi, rows + 1)[:, None]
    phi = np.linspace(0, 2 * math.pi, columns + 1)[None, :]
    points = np.stack(
        np.broadcast_arrays(np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)), -1
    ).reshape(-1, 3)
    uvs = np.stack(np.broadcast_arrays(phi * radius, theta * radius), -1).reshape(-1, 2)
    index = np.arange((rows + 1) * (columns + 1)).reshape(rows + 1, columns + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
    faces = np.concatenate([np.stack([a, d, c], -1).reshape(-1, 3), np.stack([a, c, b], -1).reshape(-1, 3)])
    return mesh(points * radius, faces, uvs)


def lumpy(rng: np.random.Generator, m: Mesh, amount: float, bumps: int = 24) -> Mesh:
    """`m` pushed in and out along its radius by random smooth bumps (a rock, a bush's mass).

    Each bump is a Gaussian lobe around a random direction; sharp and broad lobes mix so the
    surface has both facets and a rough silhouette. `amount` is the relative depth.
    """
    lengths = np.linalg.norm(m.vertices, axis=1, keepdims=True)
    directions = m.vertices / np.maximum(lengths, 1e-9)
    centres = rng.normal(size=(bumps, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    widths = rng.uniform(0.05, 0.6, bumps)
    heights = rng.uniform(-1, 1, bumps) * amount
    closeness = directions @ centres.T
    offset = (heights * np.exp((closeness - 1) / widths)).sum(-1, keepdims=True)
    return mesh(m.vertices * (1 + offset), m.faces, m.uvs)


def rock(rng: np.random.Generator, size: float) -> Mesh:
    """A boulder about `size` metres across, flattened and sunk a little into the ground."""
    stretch = np.array([rng.uniform(0.8, 1.3), rng.uniform(0.4, 0.9), rng.uniform(0.8, 1.3)]) * size / 2
    m = lumpy(rng, sphere(1.0, 16, 32), amount=0.3)
    vertices = m.vertices * stretch
    vertices[:, 1] += stretch[1] * 0.6
    return mesh(vertices, m.faces, m.uvs)


def leaves(rng: np.random.Generator, radii, count: int, leaf: float) -> Mesh:
    """`count` leaves (triangles about `leaf` metres long, random facing) filling an ellipsoid of `radii`.

    Leaves crowd towards the surface, as on a real crown, so the crown shades its own inside
    and lets light through in gaps: dappled light and shadow, not a solid ball.
    """
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    centres = directions * rng.uniform(0.55, 1.0, (count, 1)) ** 0.5 * np.asarray(radii)
    normals = rng.normal(size=(count, 3)) + directions
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    side = np.cross(normals, rng.normal(size=(count, 3)))
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    other = np.cross(normals, side)
    corners = np.stack([centres + side * leaf / 2, centres + other * leaf * 0.35, centres - side * leaf / 2], 1)
    spot = rng.uniform(0, 4, (count, 1, 2))
    uvs = spot + np.array([[0.0, 0.0], [0.5, 1.0], [1.0, 0.0]]) * leaf
    return mesh(corners, np.arange(3 * count).reshape(-1, 3), uvs)


def blades(rng: np.random.Generator, half_x: float, half_z: float, count: int, height: float) -> Mesh:
    """`count` grass blades (thin leaning triangles up to `height` metres) over a patch of the ground."""
    roots = np.stack([rng.uniform(-half_x, half_x, count), np.zeros(count), rng.uniform(-half_z, half_z, count)], -1)
    facing = rng.uniform(0, 2 * math.pi, count)
    across = np.stack([np.cos(facing), np.zeros(count), np.sin(facing)], -1) * rng.uniform(0.01, 0.025, (count, 1))
    lean = rng.normal(0, 0.25, (count, 3)) * (1, 0, 1) + np.array([0.0, 1.0, 0.0])
    tip = roots + lean * height * rng.uniform(0.4, 1.0, (count, 1))
    corners = np.stack([roots - across, roots + across, tip], 1)
    spot = rng.uniform(0, 4, (count, 1, 2))
    uvs = spot + np.array([[0.0, 0.0], [0.05, 0.0], [0.02, 0.3]])
    return mesh(corners, np.arange(3 * count).reshape(-1, 3), uvs)


def terrain(rng: np.random.Generator, half: float, cells: int, relief: float) -> Mesh:
    """A square of ground 2*half metres across, gently rolling by up to `relief` metres, shared vertices.

    The middle stays near y=0 (objects stand there); the relief grows towards the edges.
    """
    steps = np.linspace(-half, half, cells + 1)
    x, z = np.meshgrid(steps, steps)
    waves = sum(
        rng.uniform(0.2, 1) * np.sin(x * f[0] + z * f[1] + rng.uniform(0, 2 * math.pi))
        for f in rng.normal(0, 2.5 / half, (4, 2))
    )
    y = relief * waves / 4 * np.clip(np.hypot(x, z) / half, 0, 1) ** 2
    index = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, 1:], index[1:, :-1]
    faces = np.concatenate([np.stack([a, d, c], -1).reshape(-1, 3), np.stack([a, c, b], -1).reshape(-1, 3)])
    return mesh(np.stack([x, y, z], -1), faces, np.stack([x, z], -1))
