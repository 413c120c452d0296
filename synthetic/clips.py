"""Synthetic signers and their clips: how a person performs the made-up signs of lexicon.py.

Signers differ in body size and place in the frame, handedness (mirrored), speed, amplitude,
tremor and their own version of each sign; clips in length, timing and missing landmarks (NaN,
as MediaPipe leaves them). `make_signer` draws a signer, `signer_clips` draws their clips, all
frames of all clips at once; synth.py writes them to files.

Geometry is built in body units (origin between the shoulders, x toward the image's right,
which is the person's left in an unmirrored video, y down, 1 = shoulder width) for a
right-handed signer, mirrored for left-handed ones, then placed in the image per clip.
"""

from dataclasses import dataclass

import numpy as np

from landmarks import FACE, LEFT_HAND, NUM_LANDMARKS, PART_SIZES, POSE, RIGHT_HAND
from synthetic.lexicon import Sign
from synthetic.skeleton import DEG, FACE_TEMPLATE, HANDSHAPES, POSE_TEMPLATE, hand_points

# Landmark jitter, (3, 543) standard deviations in body units (of uniform noise, hence the
# sqrt(12) width): the pose shakes most, its z far more; a hand's z is relative to its wrist,
# so exactly 0 there.
NOISE = np.repeat(
    [[0.004, 0.006, 0.012, 0.006]] * 2 + [[0.003, 0.004, 0.1, 0.004]], PART_SIZES, 1
).astype(np.float32) * np.float32(12**0.5)
NOISE[2, [LEFT_HAND, RIGHT_HAND]] = 0


# ---------------------------------------------------------------------------------------------
# Signs and signers


def _path(kind: str, s: np.ndarray) -> np.ndarray:
    """Sign phase (F,) 0..1 -> offset (F, 2) of the contact point from the location."""
    if kind == "tap":  # away from the ear and back, twice; starts and ends away
        return np.outer(0.5 + 0.5 * np.cos(4 * np.pi * s), (-0.12, 0.02))
    if kind == "outward":  # from the eye down and away from the face
        return np.outer(s, (-0.26, 0.32))
    if kind == "arc_up":  # from below the chin up to the lips, bulging outward
        return np.outer(1 - s, (-0.04, 0.24)) + np.outer(np.sin(np.pi * s), (-0.07, 0))
    if kind == "circle":  # one turn around the location, from the top
        return 0.07 * np.stack([np.sin(2 * np.pi * s), -np.cos(2 * np.pi * s)], -1)
    return np.zeros((len(s), 2))


@dataclass(frozen=True)
class Signer:
    """What stays the same over one person's clips."""

    participant_id: str
    left_handed: bool  # the person's left hand signs: every movement mirrored
    center: tuple[float, float]  # image position of the point between the shoulders
    scale: float  # shoulder width in image units (distance to the camera)
    roll: float  # radians: a lean, or a tilted camera
    speed: float  # > 1 signs faster, so fewer frames per sign
    amplitude: float  # size of every path
    tremor: float  # body units: a shake of the signing hand
    hand_size: float  # wrist to middle-finger base, body units
    dropout: float  # scales how often the tracker loses the signing hand
    accent: np.ndarray  # (signs, 8) this person's version of each sign: place, angle, curl


def make_signer(
    rng: np.random.Generator, participant_id: str, left_handed: bool, num_signs: int = 10
) -> Signer:
    return Signer(
        participant_id,
        left_handed,
        center=(rng.uniform(0.36, 0.62), rng.uniform(0.52, 0.76)),
        scale=rng.uniform(0.4, 0.72),
        roll=rng.normal(0, 4) * DEG,
        speed=rng.uniform(0.7, 1.4),
        amplitude=rng.uniform(0.65, 1.35),
        tremor=rng.uniform(0, 0.012),
        hand_size=rng.uniform(0.26, 0.32),
        dropout=rng.uniform(0.5, 2.5),
        accent=rng.normal(0, 1, (num_signs, 8)),
    )


# Clip lengths past the short ones: log-normal (median frames at speed 1, sigma, longest).
# "top10": the synthetic top-10 set's (over all clips: median 19, mean 23.7 frames). "real":
# fitted to the real hello/thankyou clips (over all clips: median 20, mean 33.3, 90th percentile
# 82, longest 272); it gives median 20, mean 33, 90th percentile 76, longest 272.
LENGTHS = {"top10": (24, 0.6, 100), "real": (26, 0.9, 272)}


def _lengths(rng: np.random.Generator, n: int, speed: float, model: str = "top10") -> np.ndarray:
    """Frames per clip: one in five short (mostly exactly 6, as in the real data), else
    log-normal as LENGTHS[model] says."""
    median, sigma, longest = LENGTHS[model]
    long = np.clip(np.round(np.exp(rng.normal(np.log(median / speed), sigma, n))), 7, longest)
    short = np.where(rng.random(n) < 0.8, 6, rng.integers(2, 6, n))
    return np.where(rng.random(n) < 0.18, short, long).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Clips: every frame of one signer at once (F = all frames of all their clips)

REST = np.array([-0.72, 0.95])  # the right wrist hanging at the side, below most frames
RELAXED, RELAXED_SPREAD = HANDSHAPES["relaxed"]


def _timeline(rng: np.random.Generator, lengths: np.ndarray):
    """Per frame: clip index, frame index, sign phase 0..1, and how far the hand is at rest."""
    num = len(lengths)
    clip = np.repeat(np.arange(num), lengths)  # (F,)
    frame = np.arange(len(clip)) - (np.cumsum(lengths) - lengths)[clip]
    tau = frame / np.maximum(lengths[clip] - 1, 1)  # 0..1 through the clip
    # Timing jitter, a monotone warp toward either end at random: a sign and its time
    # reversal stay mirror images in distribution.
    t = tau + rng.uniform(-0.3, 0.3, num)[clip] * np.sin(2 * np.pi * tau) / (2 * np.pi)
    # Longer clips catch the hand rising from rest before the sign and dropping after it;
    # short ones only a stretch of the sign itself.
    rise, drop = rng.uniform(0, 0.2, (2, num)) * (lengths > 6)
    width = np.where(lengths > 6, 1, rng.uniform(0.5, 1, num))
    start = rng.uniform(0, 1, num) * (1 - width)
    rise, drop, start, width = rise[clip], drop[clip], start[clip], width[clip]
    phase = start + width * np.clip((t - rise) / (1 - rise - drop), 0, 1)
    at_rest = np.maximum((rise - t) / (rise + 1e-9), (t + drop - 1) / (drop + 1e-9)).clip(0, 1)
    return clip, frame, phase, 0.85 * at_rest * at_rest * (3 - 2 * at_rest)  # eased


def _arm(shoulder: np.ndarray, hand: np.ndarray, outward: float) -> np.ndarray:
    """Pose elbow, wrist, pinky, index, thumb (F, 5, 2) for one hand's points (F, 21, 2)."""
    wrist = hand[:, 0]
    reach = (wrist - shoulder) / (np.linalg.norm(wrist - shoulder, axis=-1, keepdims=True) + 1e-9)
    # No inverse kinematics: the forearm is foreshortened toward the camera, so the elbow
    # hangs below the shoulder, pulled a little toward the hand.
    bend = 0.5 * reach + (0.35 * outward, 0.9)
    elbow = shoulder + 0.6 * bend / np.linalg.norm(bend, axis=-1, keepdims=True)
    fingers = wrist[:, None] + 0.45 * (hand[:, [17, 5, 2]] - wrist[:, None])
    return np.concatenate([elbow[:, None], wrist[:, None], fingers], 1)


def signer_clips(
    rng: np.random.Generator,
    signer: Signer,
    labels: np.ndarray,
    signs: list[Sign],
    lengths_model: str = "top10",
) -> list[np.ndarray]:
    """One float32 (3, T, 543) array per label (an index into `signs`), NaN where a landmark
    is missing; clip lengths as LENGTHS[lengths_model]."""
    num = len(labels)
    lengths = _lengths(rng, num, signer.speed, lengths_model)
    clip, frame, phase, at_rest = _timeline(rng, lengths)
    wrist, shape, two_handed = _signing_hand(
        rng, signer, labels, signs, clip, frame, phase, at_rest
    )
    other_wrist, other_shape = _other_hand(rng, num, clip, wrist, shape, two_handed)
    left, right = _hands(signer, (wrist, *shape), (other_wrist, *other_shape))
    body = _body(rng, num, clip, frame, left, right)
    image = _into_image(rng, signer, num, clip, body)
    _lose_landmarks(rng, signer, num, clip, image)
    # Rounded to 2**-16 (0.03 pixel across a 1920-pixel frame), far below MediaPipe's jitter:
    # the zeroed low bits make the files a third smaller.
    image = np.round(image * 65536) / 65536
    return np.split(image, np.cumsum(lengths)[:-1], axis=1)


def _signing_hand(
    rng: np.random.Generator,
    signer: Signer,
    labels: np.ndarray,
    signs: list[Sign],
    clip: np.ndarray,
    frame: np.ndarray,
    phase: np.ndarray,
    at_rest: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """The signing hand per frame, in body units: (wrist (F, 2), its shape (curl (F, 5),
    spread, angle, twist (F,)), whether the frame's sign is two-handed (F,))."""
    num, num_frames, at_rest = len(labels), len(clip), at_rest[:, None]
    # Its contact point on the sign's path and its shape, per frame.
    contact, curl = np.zeros((num_frames, 2)), np.zeros((num_frames, 5))
    spread, angle, twist, tip = np.zeros((4, num_frames))
    two_handed = np.zeros(num_frames, bool)
    amplitude = signer.amplitude * rng.uniform(0.8, 1.2, num)[clip, None]
    for index, sign in enumerate(signs):
        mine, accent = labels[clip] == index, signer.accent[index]
        s = 1 - phase[mine] if sign.reverse else phase[mine]
        twice = 0.5 - 0.5 * np.cos(4 * np.pi * s)  # 0 -> 1 -> 0, two times
        shape, spread[mine] = HANDSHAPES[sign.handshape]
        closed = HANDSHAPES[sign.closes_to][0] if sign.closes_to else shape
        curl[mine] = shape + twice[:, None] * np.subtract(closed, shape) + 0.15 * accent[3:]
        contact[mine] = sign.location + 0.08 * accent[:2] + amplitude[mine] * _path(sign.path, s)
        angle[mine] = (sign.angle + 15 * accent[2] + sign.turn * s) * DEG
        twist[mine] = sign.twist * DEG * twice
        tip[mine], two_handed[mine] = sign.contact, sign.two_handed
    contact += rng.normal(0, 0.03, (num, 2))[clip]
    curl = np.clip(curl + rng.normal(0, 0.06, (num, 5))[clip], 0, 1)
    angle += rng.normal(0, 8 * DEG, num)[clip]
    xy, _ = hand_points(curl, spread, angle, twist)
    wrist = contact - signer.hand_size * xy[np.arange(num_frames), tip.astype(int)]
    # Before and after the sign the hand is on its way from or to rest, relaxed.
    wrist += at_rest * (REST + rng.normal(0, 0.05, (num, 2))[clip] - wrist)
    curl += at_rest * (RELAXED - curl)
    spread += at_rest[:, 0] * (RELAXED_SPREAD - spread)
    angle += at_rest[:, 0] * (170 * DEG - angle)
    twist *= 1 - at_rest[:, 0]
    shake = 2 * np.pi * rng.uniform(0.15, 0.35, num)[clip] * frame + rng.uniform(0, 7, num)[clip]
    wrist += signer.tremor * np.stack([np.sin(shake), np.cos(shake)], -1)
    wrist += rng.normal(0, 0.3 * signer.tremor, (num_frames, 2))
    return wrist, (curl, spread, angle, twist), two_handed


def _other_hand(
    rng: np.random.Generator,
    num: int,
    clip: np.ndarray,
    wrist: np.ndarray,
    shape: tuple[np.ndarray, ...],
    two_handed: np.ndarray,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """(wrist, shape) of the other hand: it hangs at its side (now and then raised to the
    waist, into view) or, in two-handed signs, mirrors the signing one. Built as a right hand
    (mirrored by `_hands`)."""
    curl, spread, angle, twist = shape
    num_frames = len(clip)
    raised = (rng.random(num) < 0.15)[clip]
    both = two_handed[:, None]
    hanging = np.stack([np.full(num_frames, REST[0]), np.where(raised, 0.5, REST[1])], -1)
    other_wrist = np.where(both, wrist, hanging) + rng.normal(0, 0.03, (num, 2))[clip]
    other_shape = (
        np.where(both, curl, RELAXED),
        np.where(two_handed, spread, RELAXED_SPREAD),
        np.where(two_handed, angle, np.where(raised, 120, 170) * DEG),
        np.where(two_handed, twist, 0),
    )
    return other_wrist, other_shape


def _hands(
    signer: Signer, signing: tuple[np.ndarray, ...], other: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) hand points (F, 21, 3) in body units from the (wrist, *shape) of the
    signing and the other hand; a left-handed signer is the same person in a mirror."""

    def place(wrist: np.ndarray, *shape: np.ndarray) -> np.ndarray:  # (F, 21, 3) body units
        xy, depth = hand_points(*shape)
        size = signer.hand_size
        return np.concatenate([wrist[:, None] + size * xy, -size * depth[..., None]], -1)

    signing, other = place(*signing), place(*other)
    other[..., 0] *= -1
    if signer.left_handed:  # the same person in a mirror: the left hand signs
        signing[..., 0] *= -1
        other[..., 0] *= -1
    return (signing, other) if signer.left_handed else (other, signing)


def _body(
    rng: np.random.Generator,
    num: int,
    clip: np.ndarray,
    frame: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """All landmarks (3, F, 543) float32 in body units, jittered: face and pose templates that
    sway a little with the head, arms following the hands (whose z becomes wrist-relative)."""
    num_frames = len(clip)
    sway = rng.normal(0, 0.01, (num, 2))[clip]
    sway += 0.008 * np.sin(frame / rng.uniform(3, 8, num)[clip])[:, None]
    tilt = rng.normal(0, 2 * DEG, num)[clip, None]  # (F, 1) small head roll per clip
    pose = np.broadcast_to(POSE_TEMPLATE, (num_frames, 33, 3)).copy()
    pose[:, :11, :2] += sway[:, None]  # the head
    for hand, first, outward in ((left, 13, 1.0), (right, 14, -1.0)):
        arm = _arm(POSE_TEMPLATE[first - 2, :2], hand[..., :2], outward)  # from the shoulder
        pose[:, first:23:2, :2] = arm
        reach = -2.3 + 1.6 * np.clip(arm[:, 1, 1] + 0.5, 0, 1.5)  # a raised hand is nearer
        pose[:, first:23:2, 2] = np.stack([0.5 * reach - 0.3, *[reach] * 4], -1)
        hand[..., 2] -= hand[:, :1, 2]  # MediaPipe's hand z is relative to the wrist
    body = np.empty((3, num_frames, NUM_LANDMARKS), np.float32)  # channel first, as stored
    fx, fy, fz = FACE_TEMPLATE.T  # float32, as the rest of the big arrays: half the time
    sway, tilt = sway.astype(np.float32), tilt.astype(np.float32)
    body[0, :, :LEFT_HAND] = fx - tilt * (fy + 0.42) + sway[:, :1]  # tilted about the face's
    body[1, :, :LEFT_HAND] = fy + tilt * fx + sway[:, 1:]  # center, 0.42 above the shoulders
    body[2, :, :LEFT_HAND] = fz
    for part, first in ((left, LEFT_HAND), (pose, POSE), (right, RIGHT_HAND)):
        body[:, :, first : first + part.shape[1]] = np.moveaxis(part, -1, 0)
    noise = rng.random(body.shape, np.float32) - np.float32(0.5)
    body += noise * NOISE[:, None]
    return body


def _into_image(
    rng: np.random.Generator, signer: Signer, num: int, clip: np.ndarray, body: np.ndarray
) -> np.ndarray:
    """Body units (3, F, 543) into the image: each clip framed a little differently around the
    signer's place."""
    cx, cy = (signer.center + rng.normal(0, 0.03, (num, 2)))[clip].T[..., None]  # (F, 1)
    scale = (signer.scale * (1 + rng.normal(0, 0.05, num)))[clip, None]
    roll = signer.roll + rng.normal(0, 1.5 * DEG, num)[clip, None]
    cos, sin = scale * np.cos(roll), scale * np.sin(roll)
    cx, cy, scale, cos, sin = (v.astype(np.float32) for v in (cx, cy, scale, cos, sin))
    x, y, z = body
    return np.stack([cos * x - sin * y + cx, sin * x + cos * y + cy, scale * z])


def _lose_landmarks(
    rng: np.random.Generator, signer: Signer, num: int, clip: np.ndarray, image: np.ndarray
) -> None:
    """Set to NaN in place what MediaPipe misses: a hand out of the frame or not found (the
    other hand most of the time), the face now and then, rarely a whole frame."""
    num_frames = len(clip)
    for first, signs_here in (
        (LEFT_HAND, signer.left_handed),
        (RIGHT_HAND, not signer.left_handed),
    ):
        rate = signer.dropout * rng.beta(1.5, 4, num) if signs_here else rng.beta(1.5, 3, num)
        rate = np.minimum(rate, 0.9)  # the tracker finds a hand in view now and then
        palm = image[:2, :, first + 9]
        lost = (rng.random(num_frames) < rate[clip]) | ((palm < 0) | (palm > 1)).any(0)
        image[:, lost, first : first + 21] = np.nan
    image[:, rng.random(num_frames) < 0.005, FACE:LEFT_HAND] = np.nan
    image[:, rng.random(num_frames) < 0.004] = np.nan
