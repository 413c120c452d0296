"""The synthetic signer's body: a face mesh, the 33 pose points and a hand model.

Points come in MediaPipe's order and in body units (origin between the shoulders, x toward
the image's right, y down, 1 = shoulder width); synth.py moves and poses them per frame.

    from synthetic import skeleton
    skeleton.FACE_TEMPLATE                       # (468, 3) float32
    xy, depth = skeleton.hand_points(curl, spread, angle, twist)
"""

import numpy as np

from landmarks import FACE_OVAL

DEG = np.pi / 180


# ---------------------------------------------------------------------------------------------
# Body: a face mesh and the 33 pose points, (x, y, z) in body units, z < 0 toward the camera


def _contour(center, size, start: float, lower: int, upper: int) -> np.ndarray:
    """An eye or lip contour in MediaPipe's order: corner, lower lid or lip, corner, upper."""
    turn = -1 if start else 1  # the contour on the person's right (image left) runs back
    angles = (
        start
        + turn
        * np.pi
        * np.r_[np.arange(lower + 1) / lower, 1 + np.arange(1, upper + 1) / (upper + 1)]
    )
    return np.add(center, np.multiply(size, np.stack([np.cos(angles), np.sin(angles)], -1)))


def _face_template() -> np.ndarray:
    """(468, 3): the points of the `fullbody` preset sit at the lips, nose and eyes."""
    points = np.full((468, 2), np.nan)
    points[
        [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185]
    ] = _contour((0, -0.305), (0.09, 0.032), np.pi, 10, 9)  # outer lips
    points[
        [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191]
    ] = _contour((0, -0.31), (0.075, 0.006), np.pi, 10, 9)  # inner lips
    points[[33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]] = (
        _contour((-0.118, -0.5), (0.052, 0.013), np.pi, 8, 7)
    )  # right eye
    points[[263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]] = (
        _contour((0.118, -0.5), (0.052, 0.013), 0, 8, 7)
    )  # left eye
    points[[1, 2, 98, 327]] = [(0, -0.41), (0, -0.385), (-0.06, -0.385), (0.06, -0.385)]
    center, size = np.array([0, -0.42]), np.array([0.26, 0.24])
    silhouette = np.array(FACE_OVAL)  # clockwise
    angles = 2 * np.pi * (np.arange(36) / 36 - 0.25)  # clockwise on screen from the top
    points[silhouette] = center + size * np.stack([np.cos(angles), np.sin(angles)], -1)
    # The rest of the mesh scattered over the oval, the same for every seed.
    rest, fixed = np.isnan(points[:, 0]), np.random.default_rng(468)
    radius, angle = 0.95 * np.sqrt(fixed.random(rest.sum())), fixed.uniform(0, 7, rest.sum())
    points[rest] = center + size * radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    # Depth: the middle of the face is nearest the camera, the nose most of all.
    depth = -0.12 + 0.3 * (((points - center) / size) ** 2).sum(-1)
    depth[[1, 2]] -= 0.05
    return np.concatenate([points, depth[:, None]], -1)


FACE_TEMPLATE = _face_template().astype(np.float32)
# Pose: nose, eyes, ears, mouth, shoulders, arms (filled per frame), hips, legs. The person's
# left, on the image's right, is 1-3, 7, 9 and the odd indices from 11 on. z is MediaPipe's pose depth (about x's scale,
# relative to the hips; the legs below the frame are still estimated, as in real tracks).
POSE_TEMPLATE = np.array(
    [
        (0, -0.41, -2.2),
        (0.065, -0.49, -2.08),
        (0.11, -0.49, -2.08),
        (0.15, -0.49, -2.08),
        (-0.065, -0.49, -2.08),
        (-0.11, -0.49, -2.08),
        (-0.15, -0.49, -2.08),
        (0.22, -0.445, -1.1),
        (-0.22, -0.445, -1.1),
        (0.05, -0.31, -1.85),
        (-0.05, -0.31, -1.85),
        (0.5, 0, -0.6),
        (-0.5, 0, -0.5),
        *[(0, 0, 0)] * 10,
        (0.35, 1.07, -0.2),
        (-0.35, 1.07, 0.2),
        (0.34, 1.95, -0.1),
        (-0.34, 1.95, 0.4),
        (0.33, 2.73, 1.5),
        (-0.33, 2.73, 1.7),
        (0.35, 2.84, 1.55),
        (-0.35, 2.84, 1.8),
        (0.22, 2.98, 0.1),
        (-0.22, 2.98, 0.3),
    ]
)

# ---------------------------------------------------------------------------------------------
# Hand: 21 points in MediaPipe order (wrist; thumb, index, middle, ring, pinky: 4 each), built
# as a right hand, palm to the camera, in hand units (wrist to middle-finger base = 1).

_BASES = np.array([[0.2, 0.18], [0.33, 0.92], [0.08, 1.0], [-0.15, 0.95], [-0.35, 0.82]])
_SEGMENTS = np.array(
    [
        [0.38, 0.32, 0.27],
        [0.45, 0.27, 0.22],
        [0.5, 0.3, 0.23],
        [0.46, 0.28, 0.22],
        [0.36, 0.22, 0.2],
    ]
)
_SPLAY = np.array([50, 6, 0, -6, -14]) * DEG  # finger directions at rest, toward the thumb
_BEND = np.array([[20, 35, 35]] + [[80, 100, 70]] * 4) * DEG  # per joint, at full curl
# Curl per finger (thumb, index, middle, ring, pinky; 0 straight, 1 a fist) and V-spread.
HANDSHAPES = {
    "relaxed": ((0.3, 0.3, 0.35, 0.4, 0.45), 0.2),
    "cupped": ((0.25, 0.5, 0.5, 0.5, 0.5), 0.0),
    "index": ((0.9, 0.0, 0.95, 0.95, 0.95), 0.0),
    "U": ((0.9, 0.0, 0.0, 0.95, 0.95), 0.0),
    "V": ((0.9, 0.0, 0.0, 0.95, 0.95), 1.0),
    "Y": ((0.0, 0.95, 0.95, 0.95, 0.0), 0.5),
    "beak_open": ((0.15, 0.15, 0.15, 0.95, 0.95), 0.0),
    "beak_closed": ((0.65, 0.55, 0.55, 0.95, 0.95), 0.0),
}


def hand_points(curl, spread, angle, twist) -> tuple[np.ndarray, np.ndarray]:
    """A right hand per frame from curl (F, 5) and spread, angle, twist (F,) in radians.

    angle turns the fingers in the image plane (0 up, > 0 toward the body's midline), twist
    about their own axis. Returns xy (F, 21, 2) from the wrist and depth (F, 21), hand units.
    """
    splay = _SPLAY + spread[:, None] * np.array([0, 12, -8, 0, 0]) * DEG
    splay[:, 0] -= 60 * DEG * curl[:, 0]  # the thumb folds across the palm
    bend = np.cumsum(curl[:, :, None] * _BEND, -1)[..., None]  # (F, 5, 3, 1) per joint
    splay = splay[..., None, None]
    direction = np.concatenate(
        [np.cos(bend) * np.sin(splay), np.cos(bend) * np.cos(splay), np.sin(bend)], -1
    )
    base = np.concatenate(
        [np.broadcast_to(_BASES, (len(curl), 5, 2)), np.zeros((len(curl), 5, 1))], -1
    )
    joints = base[:, :, None] + np.cumsum(_SEGMENTS[..., None] * direction, 2)  # (F, 5, 3, 3)
    points = np.concatenate([base[:, :, None], joints], 2).reshape(-1, 20, 3)
    v, u, n = np.moveaxis(np.concatenate([np.zeros((len(curl), 1, 3)), points], 1), -1, 0)
    n = n + 0.25 * u  # fingers lean toward the camera a little, as in real tracks
    cos, sin = np.cos(twist)[:, None], np.sin(twist)[:, None]
    v, n = v * cos - n * sin, v * sin + n * cos
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([v * cos + u * sin, v * sin - u * cos], -1), n
