"""Synthetic sets of any size: a vocabulary past the ten signs, and the raw Kaggle layout.

synth.py makes the signers and their clips; this module adds
- `vocabulary(num_signs)`: the ten signs of the top-10 set first, then made-up ones
  ("sign-011", ...) drawn from the same building blocks (a place on the body, a path, a
  handshape, a contact point, a turn, one or two hands, some played backwards), from a fixed
  seed, so a 250-sign set has the same signs whatever `--seed` says;
- `write_kaggle_signer` / `train_csv`: the raw asl-signs layout that
  `python islr.py prepare` converts: RAW/train.csv (path, participant_id, sequence_id, sign),
  RAW/train_landmark_files/<pid>/<sequence_id>.parquet (one row per frame and landmark:
  frame, type, landmark_index, x, y, z; the real files' row_id column, which nothing reads,
  is left out), RAW/sign_to_prediction_index_map.json.

    python islr.py synth /work/data-scale --signs 250 --signers 21 --per-sign 18
    python islr.py synth RAW --signs 250 --per-sign 18 --layout kaggle
"""

import csv
import io
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from landmarks import NUM_LANDMARKS, PART_SIZES, PARTS

SIGN_SEED = 250  # the made-up signs are the same in every set
PLACES = {  # body units, as synth.SIGNS: ear, eye, temple, lips, chin, chest, shoulder, ...
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
PATHS = ("tap", "outward", "arc_up", "circle", "hold")
CONTACTS = (8, 9, 4)  # index tip, palm, thumb tip


def vocabulary(num_signs: int) -> tuple[dict[str, int], list]:
    """(sign name -> index, the Sign of each index) for a set of `num_signs` signs."""
    import synth
    from skeleton import HANDSHAPES

    if num_signs < 2:
        raise ValueError("a set needs at least 2 signs")
    names = list(synth.VOCABULARY)[:num_signs]
    signs = [synth.SIGNS[name] for name in names]
    rng = np.random.default_rng(SIGN_SEED)
    shapes = sorted(HANDSHAPES)
    for index in range(len(names), num_signs):
        shape = shapes[rng.integers(len(shapes))]
        signs.append(
            synth.Sign(
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


_TYPES = np.repeat(np.arange(len(PARTS), dtype=np.int8), PART_SIZES)  # (543,) part code
_INDEX = np.concatenate([np.arange(n, dtype=np.int16) for n in PART_SIZES])  # (543,)


def write_kaggle_signer(
    raw_dir: Path, participant: str, parts: Iterable[tuple], names: list[str]
) -> list[tuple[str, str, str, str]]:
    """Write one signer's parquet files, all at once into place (a hidden folder renamed),
    from parts of (sequence ids, clips, labels); return their train.csv rows
    (path, participant_id, sequence_id, sign)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    top = raw_dir / "train_landmark_files"
    final, partial = top / participant, top / f".{participant}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    dictionary = pa.array(PARTS)
    rows = []
    for ids, clips, labels in parts:
        for sequence_id, clip, label in zip(ids, clips, labels, strict=True):
            T = clip.shape[1]
            columns = {
                "frame": np.repeat(np.arange(T, dtype=np.int16), NUM_LANDMARKS),
                "type": pa.DictionaryArray.from_arrays(np.tile(_TYPES, T), dictionary),
                "landmark_index": np.tile(_INDEX, T),
            }
            for c, axis in enumerate("xyz"):  # float64 as the real files; NaN where missing
                columns[axis] = clip[c].reshape(-1).astype(np.float64)
            pq.write_table(pa.table(columns), partial / f"{sequence_id}.parquet")
            path = f"train_landmark_files/{participant}/{sequence_id}.parquet"
            rows.append((path, participant, str(sequence_id), names[label]))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return rows


def train_csv(rows: list[tuple[str, str, str, str]]) -> str:
    """The text of train.csv for these rows (the caller writes it atomically)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("path", "participant_id", "sequence_id", "sign"))
    writer.writerows(rows)
    return text.getvalue()
