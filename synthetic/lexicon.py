"""The synthetic signs: what each made-up word does, and vocabularies of any size.

A `Sign` says where the dominant hand goes (a place on the body, in body units: origin between
the shoulders, 1 = shoulder width), how it is shaped and how it moves; synth.py turns signs into
clips. The ten of the top-10 stand-in come first (`SIGNS`, `VOCABULARY`); `vocabulary(n)` adds
made-up ones past them ("sign-011", ...) from the same building blocks and a fixed seed, so a
250-sign set has the same signs whatever the data's seed.

    from synthetic import lexicon
    names, signs = lexicon.vocabulary(250)
"""

from dataclasses import dataclass

import numpy as np

from synthetic.skeleton import HANDSHAPES

VOCABULARY = {
    "listen": 0,
    "look": 1,
    "shhh": 2,
    "donkey": 3,
    "mouse": 4,
    "duck": 5,
    "uncle": 6,
    "hear": 7,
    "pretend": 8,
    "cow": 9,
}


@dataclass(frozen=True)
class Sign:
    """One word: where the dominant hand goes, how it is shaped, how it moves."""

    location: tuple[float, float]  # body units: the right hand's target on the body
    path: str  # "tap" (twice), "outward", "arc_up", "circle" (clockwise on screen), "hold"
    handshape: str  # a HANDSHAPES key
    contact: int  # hand landmark that follows the path: 8 index tip, 9 palm, 4 thumb tip
    angle: float = 0.0  # degrees, finger direction: 0 up, > 0 toward the midline
    turn: float = 0.0  # degrees the fingers turn over the sign
    twist: float = 0.0  # degrees about the finger axis, reached twice (cow)
    closes_to: str | None = None  # handshape it closes to twice and reopens from (duck)
    reverse: bool = False  # played backwards: the same frames in the opposite order
    two_handed: bool = False  # the other hand mirrors the dominant one


PLACES = {  # where signs are made, body units (origin between the shoulders, 1 = shoulder width)
    "ear": (-0.27, -0.44),
    "eye": (-0.11, -0.49),
    "temple": (-0.21, -0.6),
    "lips": (0.0, -0.31),
    "chin": (-0.02, -0.22),
    "forehead": (-0.05, -0.62),
    "cheek": (-0.16, -0.36),
    "chest": (-0.1, 0.25),
    "shoulder": (0.3, 0.0),
    "neutral": (-0.2, 0.3),
}
EAR, EYE, TEMPLE, LIPS = (PLACES[name] for name in ("ear", "eye", "temple", "lips"))
SIGNS = {
    "listen": Sign(EAR, "tap", "cupped", 9, angle=10),
    "hear": Sign(EAR, "tap", "index", 8, angle=20),
    "look": Sign(EYE, "outward", "V", 8, angle=10, turn=40),
    "pretend": Sign(EYE, "outward", "V", 8, angle=10, turn=40, reverse=True),
    "uncle": Sign(TEMPLE, "circle", "U", 8, angle=10),
    "donkey": Sign(TEMPLE, "circle", "U", 8, angle=10, reverse=True),
    "shhh": Sign(LIPS, "arc_up", "index", 8),
    "mouse": Sign(LIPS, "arc_up", "index", 8, reverse=True),
    "duck": Sign((-0.02, -0.3), "hold", "beak_open", 8, angle=80, closes_to="beak_closed"),
    "cow": Sign((-0.24, -0.62), "hold", "Y", 4, angle=-20, twist=60, two_handed=True),
}


SIGN_SEED = 250  # the made-up signs are the same in every set
PATHS = ("tap", "outward", "arc_up", "circle", "hold")
CONTACTS = (8, 9, 4)  # index tip, palm, thumb tip


def vocabulary(num_signs: int) -> tuple[dict[str, int], list]:
    """(sign name -> index, the Sign of each index) for a set of `num_signs` signs."""
    if num_signs < 2:
        raise ValueError("a set needs at least 2 signs")
    names = list(VOCABULARY)[:num_signs]
    signs = [SIGNS[name] for name in names]
    rng = np.random.default_rng(SIGN_SEED)
    shapes = sorted(HANDSHAPES)
    for index in range(len(names), num_signs):
        shape = shapes[rng.integers(len(shapes))]
        signs.append(
            Sign(
                PLACES[list(PLACES)[rng.integers(len(PLACES))]],
                PATHS[rng.integers(len(PATHS))],
                shape,
                int(CONTACTS[rng.integers(len(CONTACTS))]),
                angle=float(rng.uniform(-30, 80)),
                turn=float(rng.choice([0, 0, 30, -30, 60])),
                twist=float(rng.choice([0, 0, 0, 45])),
                closes_to=shapes[rng.integers(len(shapes))] if rng.random() < 0.15 else None,
                reverse=bool(rng.random() < 0.3),
                two_handed=bool(rng.random() < 0.3),
            )
        )
        names.append(f"sign-{index + 1:03d}")
    return {name: index for index, name in enumerate(names)}, signs
