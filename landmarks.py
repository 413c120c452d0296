"""The 543 MediaPipe Holistic landmarks of the Kaggle data: parts, selections, mirror pairs.

Every frame holds 543 points in Kaggle order: face mesh 0-467, left hand 468-488, pose
489-521, right hand 522-542 (each hand: wrist 0, then four points per finger from the thumb).
"Left" and "right" are MediaPipe's: the signer's own hands. Plain Python (no torch), so the
synthetic generator and the Kaggle reader share these tables with the model code.

    import landmarks
    landmarks.SELECTIONS["fullbody"]       # the 130 points the series feeds its models
    landmarks.mirror_permutation(points)   # where each point goes in a mirror image
"""

from functools import cache

NUM_LANDMARKS = 543
MAP_FILE = "sign_to_prediction_index_map.json"  # sign -> class index: both data layouts have it
FACE, LEFT_HAND, POSE, RIGHT_HAND = 0, 468, 489, 522
PARTS = ("face", "left_hand", "pose", "right_hand")
PART_SIZES = (468, 21, 33, 21)  # points of each part, in Kaggle row order
LEFT_WRIST, RIGHT_WRIST = LEFT_HAND, RIGHT_HAND  # hand point 0 is the wrist
PART_RANGES = (
    (FACE, LEFT_HAND),
    (LEFT_HAND, POSE),
    (POSE, RIGHT_HAND),
    (RIGHT_HAND, NUM_LANDMARKS),
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(word) for word in text.split())


def _pairs(text: str) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in (word.split("-") for word in text.split()))


# The 76 face points of the series' "full body" preset: lips, nose, both eyes.
FACE_OVAL = _ints("""
    10 338 297 332 284 251 389 356 454 323 361 288 397 365 379 378 400 377
    152 148 176 149 150 136 172 58 132 93 234 127 162 21 54 103 67 109
""")  # the face mesh's outline, clockwise on screen from the top of the forehead
FULLBODY_FACE = _ints("""
    0 1 2 7 13 14 17 33 37 39 40 61 78 80 81 82 84 87 88 91 95 98 133 144 145 146 153 154 155
    157 158 159 160 161 163 173 178 181 185 191 246 249 263 267 269 270 291 308 310 311 312 314
    317 318 321 324 327 362 373 374 375 380 381 382 384 385 386 387 388 390 398 402 405 409 415
    466
""")
_FULLBODY = (
    FULLBODY_FACE
    + tuple(range(LEFT_HAND, POSE))
    + tuple(POSE + i for i in range(11, 23))  # shoulders, elbows, wrists, pose hand points
    + tuple(range(RIGHT_HAND, NUM_LANDMARKS))
)
SELECTIONS: dict[str, tuple[int, ...]] = {
    # 130 points: face (76), left hand (21), pose 11-22 (12), right hand (21).
    "fullbody": _FULLBODY,
    # 141: the same plus pose 0-10 (nose, eyes, ears, mouth corners). Parts-based
    # normalisation centres the face on itself, so without these the model cannot see where
    # the head is relative to the shoulders, and so neither where a hand is relative to the
    # face.
    "fullbody-head": _FULLBODY + tuple(POSE + i for i in range(11)),
    "all": tuple(range(NUM_LANDMARKS)),
}

# Reference points of each part: the origin is the mean of `origin`, the unit length the
# distance between the means of `unit_from` and `unit_to`. Both hands use the same points
# (the wrist and the base joint of each finger: the thumb's CMC, 1, and the other fingers'
# MCPs; the series' code takes the thumb's MCP, 2), so they are normalised mirror-alike.
_HAND_BASES = (1, 5, 9, 13, 17)
REFERENCE_POINTS = {
    "face": dict(origin=(0, 2), unit_from=(33,), unit_to=(263,)),
    "left_hand": dict(
        origin=tuple(LEFT_HAND + i for i in (0, *_HAND_BASES)),
        unit_from=(LEFT_WRIST,),
        unit_to=tuple(LEFT_HAND + i for i in _HAND_BASES),
    ),
    "pose": dict(origin=(POSE + 11, POSE + 12), unit_from=(POSE + 11,), unit_to=(POSE + 12,)),
    "right_hand": dict(
        origin=tuple(RIGHT_HAND + i for i in (0, *_HAND_BASES)),
        unit_from=(RIGHT_WRIST,),
        unit_to=tuple(RIGHT_HAND + i for i in _HAND_BASES),
    ),
}

# Mirror pairs. Face: the fullbody points (lips, nose, the two eye contours in matching
# order); points on the midline (0, 1, 2, 13, 14, 17) map to themselves. Pose: eyes (inner,
# centre, outer), ears and mouth corners, then shoulders to thumbs; the nose (0) is central.
FACE_PAIRS = _pairs("""
    61-291 78-308 37-267 39-269 40-270 80-310 81-311 82-312 84-314 87-317 88-318 91-321 95-324
    146-375 178-402 181-405 185-409 191-415 98-327 33-263 7-249 163-390 144-373 145-374 153-380
    154-381 155-382 133-362 246-466 161-388 160-387 159-386 158-385 157-384 173-398
""")
_FACE_MIDLINE = (0, 1, 2, 13, 14, 17)
POSE_PAIRS = tuple(
    (POSE + a, POSE + b) for a, b in ((1, 4), (2, 5), (3, 6), (7, 8), (9, 10))
) + tuple((POSE + i, POSE + i + 1) for i in range(11, 23, 2))
HAND_PAIRS = tuple((LEFT_HAND + i, RIGHT_HAND + i) for i in range(21))


@cache
def mirror_permutation(points: tuple[int, ...]) -> tuple[int, ...]:
    """For each selected point, the position of its mirror image in the same selection."""
    partner = {}
    for a, b in FACE_PAIRS + POSE_PAIRS + HAND_PAIRS:
        partner[a], partner[b] = b, a
    position = {point: i for i, point in enumerate(points)}
    central = set(_FACE_MIDLINE) | {POSE}
    unknown = [p for p in points if p < RIGHT_HAND and p not in partner and p not in central]
    if unknown:
        raise ValueError(f"no mirror pair is known for landmark {unknown[0]}")
    missing = [p for p in points if partner.get(p, p) not in position]
    if missing:
        raise ValueError(f"landmark {missing[0]} is selected but its mirror image is not")
    return tuple(position[partner.get(p, p)] for p in points)


@cache
def part_of(points: tuple[int, ...]) -> tuple[int, ...]:
    """The index in PARTS of each selected point."""
    return tuple(next(i for i, (_, end) in enumerate(PART_RANGES) if p < end) for p in points)
